"""Placeholder: `spiral data mujoco-scenes` (owned by the MuJoCo work)."""
def mujoco_scenes_command() -> None:
    raise NotImplementedError("spiral data mujoco-scenes")
