"""Helpers shared by the transport tests (imported as a plain module: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spiral.config import ServicesConfig, TrainConfig


def services_config(**overrides: Any) -> ServicesConfig:
    """Free ports on loopback, unless overridden."""
    data: dict[str, Any] = {"grpc_port": 0, "metrics_port": 0, "bind_address": "127.0.0.1"}
    data.update(overrides)
    return ServicesConfig.model_validate(data)


def train_config(
    output_dir: Path,
    replay: dict[str, Any] | None = None,
    services: dict[str, Any] | None = None,
    *,
    canvas_size: int = 16,
    conditional: bool = False,
) -> TrainConfig:
    """A discriminator-reward job (the kind that runs a replay buffer) with 1×``canvas_size``² canvases;
    its replay server accepts exactly such images, with targets iff ``conditional``."""
    data: dict[str, Any] = {
        "total_frames": 1000,
        "mode": "conditional" if conditional else "unconditional",
        "reward": {"kind": "discriminator"},
        # Small trajectories: the tests' message limits (down to 64 KiB) must hold one (TrainConfig checks).
        "num_envs": 2,
        "env": {"episode_length": 3, "canvas_size": canvas_size, "grid_size": 8},
        "output_dir": str(output_dir),
        "replay": {"min_size_to_sample": 1, **(replay or {})},
        "services": {"grpc_port": 0, "metrics_port": 0, **(services or {})},
    }
    return TrainConfig.model_validate(data)
