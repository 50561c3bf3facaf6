"""The run's scalar log: one JSON line per record, slash-grouped names, one x-axis (frames).

Written by trainers and learner services; read back by :func:`plot_curves` for the PNG curves.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


class RunLog:
    """Append-only JSONL writer. Not thread-safe: one writer per file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: v for k, v in record.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
        clean.setdefault("time", time.time())
        with self.path.open("a") as fh:
            fh.write(json.dumps(clean, sort_keys=True) + "\n")


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(path: Path, out: Path, keys: tuple[str, ...], x: str = "frames", hlines: dict[str, float] | None = None) -> Path:
    """Plot ``keys`` against ``x`` from a run log into a PNG (one panel per key)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    records = read_log(path)
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.6 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        points = [(r[x], r[key]) for r in records if key in r and x in r]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, label=key)
        for label, value in (hlines or {}).items():
            if key.startswith("eval/"):
                ax.axhline(value, linestyle="--", linewidth=1, label=label, color="gray" if "blank" in label else "red")
        ax.set_xlabel(x)
        ax.set_ylabel(key)
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
