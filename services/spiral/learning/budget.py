"""When a run is over: the one budget rule both trainers (single-process and the policy learner) obey."""

from __future__ import annotations

import time
from typing import NamedTuple

from spiral.config import TrainConfig


class Budget(NamedTuple):
    """The budget a progress bar counts towards: ``total`` in ``unit`` (``updates`` or ``frames``)."""

    total: int
    unit: str


def budget_of(cfg: TrainConfig) -> Budget:
    """The updates budget when set, else the frames budget (the config requires one of them)."""
    if cfg.total_updates is not None:
        return Budget(cfg.total_updates, "updates")
    assert cfg.total_frames is not None
    return Budget(cfg.total_frames, "frames")


def budget_spent(cfg: TrainConfig, frames: int, updates: int, started_monotonic: float) -> bool:
    """True once frames, updates or wall-clock minutes (whichever are set) reach their budget."""
    out_of_time = cfg.max_wall_minutes is not None and time.monotonic() - started_monotonic > 60 * cfg.max_wall_minutes
    return (
        out_of_time
        or (cfg.total_frames is not None and frames >= cfg.total_frames)
        or (cfg.total_updates is not None and updates >= cfg.total_updates)
    )


def budget_fraction(cfg: TrainConfig, frames: int, updates: int, started_monotonic: float) -> float:
    """How much of the budget is spent, in [0, 1]: the most advanced of frames, updates and
    wall-clock minutes (whichever are set), so it reaches 1 exactly when :func:`budget_spent` turns true."""
    fractions = [0.0]
    if cfg.max_wall_minutes is not None:
        fractions.append((time.monotonic() - started_monotonic) / (60 * cfg.max_wall_minutes))
    if cfg.total_frames is not None:
        fractions.append(frames / cfg.total_frames)
    if cfg.total_updates is not None:
        fractions.append(updates / max(cfg.total_updates, 1))
    return min(1.0, max(fractions))
