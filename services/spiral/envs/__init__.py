"""Environments: the painting program (libmypaint, fast batched renderer) and MuJoCo Scenes."""
