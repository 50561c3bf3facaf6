"""Benchmark: frames/s and learner updates/s of the single-process trainer, `small` vs `paper` agent.

Both presets run the default config (shapes, fast renderer) for the same number of updates after a
warm-up update; the `small`/`paper` ratio is measured in the same run (the machine is shared).

Usage: ``python tests/benchmarks/bench_trainer.py [--updates 10] [--threads 2]``
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from rich.console import Console
from rich.table import Table

from spiral.config import load_preset
from spiral.learning.trainer import SingleProcessTrainer


def measure(agent_preset: str, updates: int, out: str) -> tuple[float, float]:
    cfg = load_preset("default", {"agent.preset": agent_preset, "output_dir": out, "total_updates": updates + 1})
    trainer = SingleProcessTrainer(cfg, resume=False)
    trainer.train_step()  # warm-up: first-call allocations, dataset already loaded
    start, frames = time.perf_counter(), trainer.counters.frames
    for _ in range(updates):
        trainer.train_step()
    elapsed = time.perf_counter() - start
    return (trainer.counters.frames - frames) / elapsed, updates / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = Table(title=f"single-process trainer, default preset, {args.updates} updates, {args.threads} threads")
    for column in ("agent preset", "frames/s", "updates/s"):
        table.add_column(column, justify="right")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("small", "paper"):
            results[preset] = measure(preset, args.updates, f"{tmp}/{preset}")
            table.add_row(preset, f"{results[preset][0]:.0f}", f"{results[preset][1]:.2f}")
    table.add_row("small / paper", f"{results['small'][0] / results['paper'][0]:.1f}×", "")
    Console().print(table)


if __name__ == "__main__":
    main()
