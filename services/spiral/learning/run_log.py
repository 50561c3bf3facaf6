"""The run's scalar log: one JSON line per record, slash-grouped names, one x-axis (frames).

Written by trainers and learner services (optionally mirrored to TensorBoard,
:mod:`spiral.learning.tensorboard`); read back by :func:`read_log`, by :mod:`spiral.learning.plots`
for ``curves.png`` and by :class:`RunSummary` for the final lines both ``spiral train`` modes print.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # pragma: no cover - the writer imports torch's TensorBoard support lazily
    from spiral.learning.tensorboard import TensorBoardWriter

#: The policy learner's (and the single-process trainer's) log, in the run folder.
METRICS_FILE = "metrics.jsonl"
#: The discriminator learner's log (its records carry the policy learner's frames too).
DISCRIMINATOR_METRICS_FILE = "metrics-discriminator.jsonl"


class RunLog:
    """Append-only JSONL writer. Not thread-safe: one writer per file.

    With ``tensorboard``, every record that carries ``frames`` is also written there as scalars
    stepped by frames, and :meth:`images` goes there only.
    """

    def __init__(self, path: Path, tensorboard: TensorBoardWriter | None = None) -> None:
        self.path = path
        self.tensorboard = tensorboard
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: Mapping[str, Any]) -> None:
        clean = {k: v for k, v in record.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
        clean.setdefault("time", time.time())
        with self.path.open("a") as fh:
            fh.write(json.dumps(clean, sort_keys=True) + "\n")
        if self.tensorboard is not None and "frames" in clean:
            self.tensorboard.scalars(clean, step=int(clean["frames"]))

    def images(self, images: Mapping[str, Any], frames: int) -> None:
        """Pictures of the run (``{tag: [C, H, W] tensor}``) for TensorBoard; no-op without it."""
        if self.tensorboard is not None:
            self.tensorboard.images(images, step=frames)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every record of a run log (a line cut short by a crash is skipped); [] when there is none."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


class RunSummary(NamedTuple):
    """Where a run stands, from its log: counters, the last evaluation and its baselines."""

    updates: int
    frames: int
    held_out_l2: float | None = None
    blank_l2: float | None = None
    random_l2: float | None = None
    finished: bool = False  # the last record is the learner's ``done`` (its budget was spent)

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> RunSummary:
        last: Mapping[str, Any] = next((r for r in reversed(records) if "updates" in r), {})
        evaluation: Mapping[str, Any] = next((r for r in reversed(records) if "eval/held_out_l2" in r), {})
        finished = bool(records) and records[-1].get("event") == "done"
        return cls(
            updates=int(last.get("updates", 0)),
            frames=int(last.get("frames", 0)),
            held_out_l2=evaluation.get("eval/held_out_l2"),
            blank_l2=evaluation.get("eval/blank_l2"),
            random_l2=evaluation.get("eval/random_l2"),
            finished=finished,
        )

    @classmethod
    def of_run(cls, output_dir: Path) -> RunSummary:
        return cls.from_records(read_log(Path(output_dir) / METRICS_FILE))

    @property
    def percent_of_blank(self) -> float | None:
        if self.held_out_l2 is None or not self.blank_l2:
            return None
        return 100.0 * self.held_out_l2 / self.blank_l2

    def lines(self, output_dir: Path) -> list[str]:
        """The final lines of ``spiral train`` (both modes): counters, quality, where things are."""
        out = Path(output_dir)
        lines = [f"trained {self.updates} updates, {self.frames} frames → {out}"]
        if self.held_out_l2 is not None and self.blank_l2 is not None:
            random = "" if self.random_l2 is None else f" · random policy {self.random_l2:.4f}"
            lines.append(
                f"held-out L2 {self.held_out_l2:.4f} · blank canvas {self.blank_l2:.4f} ({self.percent_of_blank:.0f}% of blank){random}"
            )
        lines.append(f"curves: {out / 'curves.png'} · images: {out / 'images'} · checkpoints: {out / 'checkpoints'}")
        lines.append(f"log: {out / 'train.log'} · TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
        return lines
