"""When a run is over: the one budget rule both trainers (single-process and the policy learner) obey."""

from __future__ import annotations

import time

from spiral.config import TrainConfig


def budget_spent(cfg: TrainConfig, frames: int, updates: int, started_monotonic: float) -> bool:
    """True once frames, updates or wall-clock minutes (whichever are set) reach their budget."""
    out_of_time = cfg.max_wall_minutes is not None and time.monotonic() - started_monotonic > 60 * cfg.max_wall_minutes
    return (
        out_of_time
        or (cfg.total_frames is not None and frames >= cfg.total_frames)
        or (cfg.total_updates is not None and updates >= cfg.total_updates)
    )
