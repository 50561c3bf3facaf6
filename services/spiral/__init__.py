"""SPIRAL: an RL agent that paints through a real graphics program (Ganin et al., ICML 2018).

The public API (loaded on first use, so ``import spiral`` and ``spiral --help`` stay fast)::

    import spiral
    agent = spiral.load_agent("runs/default/checkpoints")       # a run's checkpoints, or a .pt file
    canvases, programs = agent.paint(agent.load_targets(["drawing.png"]))
    spiral.save_grid(canvases, "painted.png")

``load_agent`` → :class:`~spiral.api.Agent` (``paint``, ``paint_steps``, ``load_targets``,
``save_svg``), ``make_env``, ``load_config``, ``load_checkpoint``, ``save_grid``, ``save_gif``.

Subpackages: ``envs`` (painting and MuJoCo environments), ``agents`` (policy and discriminator
networks), ``learning`` (losses, V-trace, rewards, trainers), ``data`` (datasets), ``services``
(the four gRPC services) and ``launch`` (the local multi-process launcher).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name → the module that defines it (imported on first access: most pull in torch).
_EXPORTS = {
    "Agent": "spiral.api",
    "Painting": "spiral.api",
    "load_agent": "spiral.api",
    "make_env": "spiral.api",
    "load_config": "spiral.api",
    "load_checkpoint": "spiral.learning.checkpoint",
    "save_grid": "spiral.images",
    "save_gif": "spiral.images",
    "TrainConfig": "spiral.config",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spiral' has no attribute {name!r}; the public API is {', '.join(sorted(_EXPORTS))}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
