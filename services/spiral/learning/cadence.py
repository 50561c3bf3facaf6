"""When a learner logs, evaluates and checkpoints: one rule set for every driver.

Every ``log_every_updates`` / ``eval_every_updates`` / ``checkpoint_every_updates`` updates, and all
three on the way out — the update that spends the budget, and after a stop (SIGTERM, Ctrl-C) — so a
run never ends with progress it has not logged, evaluated and saved.
"""

from __future__ import annotations

from typing import NamedTuple

from spiral.config import TrainConfig


class Due(NamedTuple):
    """What is due after an update."""

    log: bool
    evaluate: bool
    checkpoint: bool


#: Everything, on the way out.
ALL_DUE = Due(log=True, evaluate=True, checkpoint=True)


class Cadence(NamedTuple):
    """Intervals in updates (policy updates, or critic updates for the discriminator learner)."""

    log_every: int
    eval_every: int
    checkpoint_every: int

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> Cadence:
        return cls(cfg.log_every_updates, cfg.eval_every_updates, cfg.checkpoint_every_updates)

    def due(self, updates: int, *, final: bool) -> Due:
        """What is due once ``updates`` updates are done; ``final``: this is the last one."""
        if final:
            return ALL_DUE
        return Due(updates % self.log_every == 0, updates % self.eval_every == 0, updates % self.checkpoint_every == 0)
