"""Helpers shared by the user-experience tests (imported as a plain module)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from spiral.config import TrainConfig, load_config_dict

#: The smallest run: 32×32 canvases, an 8×8 grid, 2 actions per episode, a few updates.
TINY_SETS: dict[str, Any] = {
    "num_envs": 8,
    "env.canvas_size": 32,
    "env.grid_size": 8,
    "env.episode_length": 3,
    "data.num_shapes": 200,
    "pretrain.updates": 0,  # the presets pretrain first; these tests exercise RL
    "total_frames": None,
    "total_updates": 6,
    "eval_every_updates": 3,
    "checkpoint_every_updates": 1000,
    "log_every_updates": 1,
}


def set_args(**overrides: Any) -> list[str]:
    """``--set`` arguments for the tiny run with ``overrides`` (dotted keys as ``a__b``)."""
    args = []
    for key, value in {**TINY_SETS, **{k.replace("__", "."): v for k, v in overrides.items()}}.items():
        args += ["--set", f"{key}={'null' if value is None else value}"]
    return args


def tiny_config(output_dir: Path, **extra: Any) -> TrainConfig:
    raw: dict[str, Any] = {
        "env": {"renderer": "fast", "canvas_size": 32, "grid_size": 8, "episode_length": 3, "brush_sizes": [2.0], "use_pressure": False},
        "data": {"num_shapes": 200},
        "num_envs": 8,
        "total_updates": 4,
        "output_dir": str(output_dir),
        "log_every_updates": 1,
        "eval_every_updates": 2,
        "checkpoint_every_updates": 1000,
    }
    for key, value in extra.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return load_config_dict(raw)


def spiral(*args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m spiral ARGS`` with stdout and stderr captured (not a terminal)."""
    return subprocess.run([sys.executable, "-m", "spiral", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)
