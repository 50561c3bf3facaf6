"""Benchmark: frames/s and learner updates/s of the single-process trainer.

Two comparisons, each measured side by side in one run (the machine is shared and noisy):

* default: the `small` against the `paper` agent, default config (shapes, fast renderer), the same
  number of updates after a warm-up update;
* ``--against COMMIT``: this checkout against an earlier implementation (issue #15's baseline),
  checked out in a temporary ``git worktree`` and imported from there (``PYTHONPATH``). The two
  run in alternation, ``--rounds`` times each, in fresh processes; the ratio is of the medians.

With ``--learning-frames N`` each implementation also trains the default preset (100 pretraining
updates, then N RL frames, seed 0) and reports its greedy held-out L2: a speed-up must keep the
learning per frame.

Usage: ``python tests/benchmarks/bench_trainer.py [--updates 10] [--threads 2] [--agent small]
[--against COMMIT [--rounds 3] [--learning-frames 100000]] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[2]


def measure(agent_preset: str, updates: int, out: str) -> tuple[float, float]:
    from spiral.config import load_preset
    from spiral.learning.trainer import SingleProcessTrainer

    cfg = load_preset("default", {"agent.preset": agent_preset, "output_dir": out, "total_updates": updates + 2})
    trainer = SingleProcessTrainer(cfg, resume=False)
    for _ in range(2):  # warm-up: first-call allocations, dataset already loaded
        trainer.train_step()
    start, frames = time.perf_counter(), trainer.counters.frames
    for _ in range(updates):
        trainer.train_step()
    elapsed = time.perf_counter() - start
    return (trainer.counters.frames - frames) / elapsed, updates / elapsed


#: Pretraining updates before the RL frames of :func:`learn`: from scratch the greedy policy paints
#: nothing for the first 100k frames, and two blank canvases compare equal whatever the code.
LEARN_PRETRAIN_UPDATES = 100


def learn(agent_preset: str, frames: int, out: str) -> float:
    """Greedy held-out L2 after a short pretraining and ``frames`` RL frames of the default preset (seed 0)."""
    from spiral.config import load_preset
    from spiral.learning.trainer import SingleProcessTrainer

    overrides = {"agent.preset": agent_preset, "output_dir": out, "total_frames": frames, "pretrain.updates": LEARN_PRETRAIN_UPDATES, "seed": 0}
    trainer = SingleProcessTrainer(load_preset("default", overrides), resume=False)
    trainer.core.pretrain()
    while trainer.counters.frames < frames:
        trainer.train_step()
    return float(trainer.evaluate(write_images=False)["eval/held_out_l2"])


def measure_in_process(source: Path, call: str) -> float:
    """The value of ``call`` (an expression on ``b``, this module: ``b.measure(…)[0]``, ``b.learn(…)``) with the trainer imported from
    ``source`` (a checkout), in a fresh interpreter."""
    code = (
        f"import sys, tempfile; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_trainer as b; "
        f"import spiral; assert spiral.__file__.startswith({str(source)!r}), spiral.__file__; print({call})"
    )
    env = {**os.environ, "PYTHONPATH": f"{source / 'services'}{os.pathsep}{source / 'operator'}"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def against(commit: str, agent_preset: str, updates: int, threads: int, rounds: int, learning_frames: int) -> dict[str, object]:
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(worktree), commit], check=True)
        try:
            figures: dict[str, list[float]] = {"baseline": [], "current": []}
            sources = (("baseline", worktree), ("current", REPO))
            speed = f"(__import__('torch').set_num_threads({threads}), b.measure({agent_preset!r}, {updates}, tempfile.mkdtemp())[0])[1]"
            for round_ in range(rounds):
                for name, source in sources:
                    figures[name].append(measure_in_process(source, speed))
                    console.print(f"round {round_ + 1}/{rounds}: {name} {figures[name][-1]:.0f} frames/s")
            learned: dict[str, float] = {}
            if learning_frames:
                call = f"(__import__('torch').set_num_threads({threads}), b.learn({agent_preset!r}, {learning_frames}, tempfile.mkdtemp()))[1]"
                for name, source in sources:
                    learned[name] = measure_in_process(source, call)
                    console.print(f"{name}: held-out L2 {learned[name]:.4f} after {learning_frames:,} frames")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=False)
    baseline, current = statistics.median(figures["baseline"]), statistics.median(figures["current"])
    table = Table(title=f"single-process trainer, default preset, `{agent_preset}`, {updates} updates × {rounds} rounds, {threads} threads")
    for column in ("implementation", "frames/s (median)", "all rounds"):
        table.add_column(column, justify="right")
    table.add_row(f"baseline {commit[:10]}", f"{baseline:.0f}", ", ".join(f"{v:.0f}" for v in figures["baseline"]))
    table.add_row("this checkout", f"{current:.0f}", ", ".join(f"{v:.0f}" for v in figures["current"]))
    table.add_row("ratio", f"{current / baseline:.2f}×", "")
    console.print(table)
    if learned:
        gap = learned["current"] / learned["baseline"] - 1
        console.print(f"learning per frame: held-out L2 after {learning_frames:,} frames {learned['baseline']:.4f} (baseline) vs "
                      f"{learned['current']:.4f} (this checkout): {100 * gap:+.1f}%")  # fmt: skip
    return {"commit": commit, "agent": agent_preset, "threads": threads, "updates": updates, "rounds": rounds,
            "frames_per_second": figures, "ratio": current / baseline, "learning_frames": learning_frames, "held_out_l2": learned}  # fmt: skip


def small_against_paper(updates: int, threads: int) -> dict[str, object]:
    torch.set_num_threads(threads)
    table = Table(title=f"single-process trainer, default preset, {updates} updates, {threads} threads")
    for column in ("agent preset", "frames/s", "updates/s"):
        table.add_column(column, justify="right")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("small", "paper"):
            results[preset] = measure(preset, updates, f"{tmp}/{preset}")
            table.add_row(preset, f"{results[preset][0]:.0f}", f"{results[preset][1]:.2f}")
    table.add_row("small / paper", f"{results['small'][0] / results['paper'][0]:.1f}×", "")
    Console().print(table)
    return {"threads": threads, "updates": updates, "frames_per_second": {k: v[0] for k, v in results.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--agent", default="small", choices=("small", "paper"), help="the agent of --against")
    parser.add_argument("--against", metavar="COMMIT", help="compare with this commit's implementation")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--learning-frames", type=int, default=0, help="with --against: also train each for this many frames and compare held-out L2")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.against:
        summary = against(args.against, args.agent, args.updates, args.threads, args.rounds, args.learning_frames)
    else:
        summary = small_against_paper(args.updates, args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
