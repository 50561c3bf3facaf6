"""One ``spiral train`` per run folder, and what a run folder says about itself.

:class:`RunFolderLock` makes a second ``spiral train`` on the same ``-o`` folder fail at once
(two would interleave ``metrics.jsonl`` and overwrite each other's checkpoints). It is an
advisory ``flock`` on ``<output_dir>/spiral-train.lock``: the kernel drops it when the holder
dies, however it dies, so a stale lock never needs cleaning up. The file says who holds it.

:func:`finished_run` tells whether resuming would have nothing to do: the run's log ends with the
learner's ``done`` record and its counters already reach this config's budget.

Both trainers' CLI (:mod:`spiral.launch.train_cli`) use them; nothing here imports torch.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from spiral.config import TrainConfig
from spiral.learning.run_log import RunSummary

LOCK_FILE = "spiral-train.lock"


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock; the message names it and what to do."""


class RunFolderLock:
    """Holds ``<output_dir>/spiral-train.lock`` while a run trains there. Not thread-safe."""

    def __init__(self, output_dir: Path, command: str = "spiral train") -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_FILE
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> RunFolderLock:
        """Take the lock, or fail at once.

        Raises:
            RunFolderBusy: another process holds it (names its pid, command and start time).
            OSError: the folder cannot be created.
        """
        self.output_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderBusy(
                f"{self.output_dir} is in use by {holder}; wait for that run to finish (or stop it), "
                f"or train into another folder with -o"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({self.command}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def budget_reached(cfg: TrainConfig, summary: RunSummary) -> bool:
    """True when ``summary``'s counters reach ``cfg``'s frames or updates budget."""
    return (cfg.total_updates is not None and summary.updates >= cfg.total_updates) or (
        cfg.total_frames is not None and summary.frames >= cfg.total_frames
    )


def has_checkpoint(output_dir: Path) -> bool:
    folder = Path(output_dir) / "checkpoints"
    return folder.is_dir() and any(folder.glob("*.pt"))


def finished_run(cfg: TrainConfig) -> RunSummary | None:
    """The summary of ``cfg.output_dir``'s run when resuming it would have nothing left to do
    (the learner logged ``done``, a checkpoint exists and the counters reach ``cfg``'s budget);
    else None."""
    out = Path(cfg.output_dir)
    summary = RunSummary.of_run(out)
    if summary.finished and has_checkpoint(out) and budget_reached(cfg, summary):
        return summary
    return None
