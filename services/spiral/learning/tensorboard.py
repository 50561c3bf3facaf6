"""TensorBoard event files beside ``metrics.jsonl``: what CleanRL's users open first.

Each process that logs scalars (the single-process trainer, the policy learner, the discriminator
learner) writes its own folder ``<output_dir>/tensorboard/<role>/``, so ``tensorboard --logdir
runs`` shows every run, each process as one line colour. Every scalar's step is the run's frames,
the one x-axis of the run log (the discriminator learner takes them from the policy learner's
``GetStatus``), so the curves of different processes line up.

Writes go through ``torch.utils.tensorboard`` (the ``tensorboard`` package is a dependency); if it
is missing the writer logs one warning and does nothing, so training never fails for a dashboard.
Each write is flushed at once: a killed process loses nothing it had logged.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The run-log keys that are not scalars to plot (counters are the axes; the rest is metadata).
NOT_SCALARS = frozenset({"time", "frames", "updates", "version", "discriminator_updates", "event", "role", "restarts", "config"})


class TensorBoardWriter:
    """Scalars and images of one process, stepped by frames. Not thread-safe: one writer thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._writer: Any = None
        self._disabled = False

    def _open(self) -> Any:
        if self._writer is None and not self._disabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # the dependency is declared; a trimmed image may lack it
                log.warning("TensorBoard logging is off: %s (pip install tensorboard)", err)
                self._disabled = True
                return None
            self.directory.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(self.directory), flush_secs=5)
        return self._writer

    def scalars(self, record: Mapping[str, Any], step: int) -> None:
        """Every numeric slash-grouped entry of a run-log record (``losses/total``…) at ``step``."""
        values = {
            k: float(v)
            for k, v in record.items()
            if k not in NOT_SCALARS and "/" in k and isinstance(v, numbers.Real) and not isinstance(v, bool)
        }
        if not values:
            return
        writer = self._open()
        if writer is None:
            return
        for key, value in values.items():
            writer.add_scalar(key, value, global_step=step)
        writer.flush()

    def images(self, images: Mapping[str, Any], step: int) -> None:
        """``{tag: [C, H, W] tensor in [0, 1]}`` at ``step`` (evaluation grids, painting sequences)."""
        if not images:
            return
        writer = self._open()
        if writer is None:
            return
        for tag, image in images.items():
            writer.add_image(tag, image.clamp(0.0, 1.0), global_step=step, dataformats="CHW")
        writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
