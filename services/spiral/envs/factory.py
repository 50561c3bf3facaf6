"""Build the environment an :class:`~spiral.config.EnvConfig` asks for.

The one place that maps ``cfg.renderer`` to a class; actors, ``spiral paint`` and tests call
:func:`make_env`. Backends are imported lazily so choosing ``fast`` never loads libmypaint or MuJoCo.
"""

from __future__ import annotations

import torch

from spiral.config import EnvConfig, Renderer
from spiral.envs.base import BatchedEnv


def make_env(cfg: EnvConfig, device: torch.device | str | None = None, *, seed: int = 0) -> BatchedEnv:
    """The batched environment for ``cfg``.

    ``device`` overrides ``cfg.device`` for the fast renderer (libmypaint and MuJoCo render on the
    CPU). ``seed`` seeds libmypaint's per-canvas brush randomness (the fast renderer is
    deterministic).

    Raises:
        ValueError: an unknown renderer or device, or a brush that does not exist.
        RuntimeError: the chosen backend's library cannot be loaded.
    """
    if cfg.renderer == Renderer.FAST:
        from spiral.envs.fast_backend import FastPaintEnv

        return FastPaintEnv(cfg, device=device)
    if cfg.renderer == Renderer.LIBMYPAINT:
        from spiral.envs.libmypaint_backend import LibMyPaintEnv

        return LibMyPaintEnv(cfg, seed=seed)
    if cfg.renderer == Renderer.MUJOCO:
        from spiral.envs.mujoco_scenes import MujocoScenesEnv

        return MujocoScenesEnv(cfg)
    raise ValueError(f"env.renderer {cfg.renderer!r} is unknown; valid: {[r.value for r in Renderer]}")
