"""Benchmark: where the single-process trainer's time goes (issue #15: profile before changing anything).

Runs the default preset's RL iterations (``SingleProcessTrainer.train_step``: one episode per
environment, one policy update) and splits their wall time into

* **acting**: rendering (``env.step``/``reset``) and policy inference, the latter by network part;
* **learning**: the policy's forward pass by network part, V-trace, the backward pass and the
  optimiser step;
* **other**: the rest (Python between the parts, losses, tensor bookkeeping).

Network parts are the ``SpiralPolicy`` children, grouped as ``encoder`` (the convolutions, action
embeddings and projection), ``lstm`` (the LSTM core), ``decoders`` (the spatial deconvolution
decoders of the location arguments), ``head`` (the autoregressive head's embeddings and folds) and
``value``. Each part is timed with ``time.perf_counter`` in forward pre/post hooks (CPU ops run
synchronously, so the time between the hooks is the part's), so the breakdown costs a few percent;
the frames/s reported beside it come from a separate run of the same iterations without hooks.

Usage: ``python tests/benchmarks/bench_profile.py [--updates 10] [--threads 2] [--agent small] [--json out.json]``
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

import spiral.learning.losses as losses
from spiral.config import load_preset
from spiral.learning.trainer import SingleProcessTrainer

#: SpiralPolicy children → the part of the network they belong to.
PARTS: dict[str, str] = {
    "first_conv": "encoder", "prev_embeddings": "encoder", "prev_action_mlp": "encoder", "downsample": "encoder",
    "mid_conv": "encoder", "residual": "encoder", "project": "encoder", "skip": "encoder",
    "core": "lstm", "decoders": "decoders", "head_embeddings": "head", "folds": "head", "value": "value",
}  # fmt: skip


class Timers:
    """Seconds per label; a label's time is inclusive of what runs inside it."""

    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()
        self.phase = "acting"

    @contextlib.contextmanager
    def timing(self, label: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[label] += time.perf_counter() - start

    def wrap(self, fn: Callable[..., Any], label: Callable[[], str]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.timing(label()):
                return fn(*args, **kwargs)

        return wrapped


def instrument(trainer: SingleProcessTrainer, timers: Timers) -> Callable[[], None]:
    """Hook the trainer's parts into ``timers``; returns the function that removes the hooks."""
    policy, env = trainer.policy, trainer.env
    handles = []
    starts: dict[str, list[float]] = collections.defaultdict(list)
    for name, module in policy.named_children():
        part = PARTS.get(name, "unlisted")

        def pre(_module: Any, _inputs: Any, part: str = part) -> None:
            starts[part].append(time.perf_counter())

        def post(_module: Any, _inputs: Any, _output: Any, part: str = part) -> None:
            timers.seconds[f"{timers.phase}/{part}"] += time.perf_counter() - starts[part].pop()

        # A ModuleList is never called itself: its members are.
        for target in module.children() if isinstance(module, torch.nn.ModuleList) else [module]:
            handles += [target.register_forward_pre_hook(pre), target.register_forward_hook(post)]
    original_collect, original_update = trainer.collect, trainer.core.update
    original_step, original_reset = env.step, env.reset
    original_vtrace, original_backward = losses.from_importance_weights, torch.Tensor.backward
    optimizer = trainer.state.policy_optimizer
    assert optimizer is not None
    step_started: list[float] = []
    handles.append(optimizer.register_step_pre_hook(lambda *_: step_started.append(time.perf_counter())))
    handles.append(optimizer.register_step_post_hook(lambda *_: timers.seconds.update({"learning/optimiser": time.perf_counter() - step_started.pop()})))

    def collect() -> Any:
        timers.phase = "acting"
        with timers.timing("acting"):
            return original_collect()

    def update(*args: Any, **kwargs: Any) -> Any:
        timers.phase = "learning"
        with timers.timing("learning"):
            return original_update(*args, **kwargs)

    trainer.collect = collect  # type: ignore[method-assign]
    trainer.core.update = update  # type: ignore[method-assign]
    env.step = timers.wrap(original_step, lambda: "acting/render")  # type: ignore[method-assign]
    env.reset = timers.wrap(original_reset, lambda: "acting/render")  # type: ignore[method-assign]
    losses.from_importance_weights = timers.wrap(original_vtrace, lambda: "learning/vtrace")
    torch.Tensor.backward = timers.wrap(original_backward, lambda: "learning/backward")  # type: ignore[method-assign]

    def remove() -> None:
        for handle in handles:
            handle.remove()
        trainer.collect, trainer.core.update = original_collect, original_update  # type: ignore[method-assign]
        env.step, env.reset = original_step, original_reset  # type: ignore[method-assign]
        losses.from_importance_weights, torch.Tensor.backward = original_vtrace, original_backward  # type: ignore[method-assign]

    return remove


def run(trainer: SingleProcessTrainer, updates: int) -> tuple[float, int]:
    """(seconds, frames) of ``updates`` iterations."""
    frames = trainer.counters.frames
    start = time.perf_counter()
    for _ in range(updates):
        trainer.train_step()
    return time.perf_counter() - start, trainer.counters.frames - frames


def breakdown(seconds: collections.Counter[str], wall: float) -> list[tuple[str, float]]:
    """Rows (label, seconds): each phase, its parts, and what no part accounts for."""
    rows: list[tuple[str, float]] = []
    for phase in ("acting", "learning"):
        parts = sorted(((k, v) for k, v in seconds.items() if k.startswith(f"{phase}/")), key=lambda kv: -kv[1])
        rows.append((phase, seconds[phase]))
        rows += parts
        rows.append((f"{phase}/other (Python, losses, bookkeeping)", seconds[phase] - sum(v for _, v in parts)))
    rows.append(("outside acting and learning", wall - seconds["acting"] - seconds["learning"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--agent", default="small", choices=("small", "paper"))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_preset("default", {"agent.preset": args.agent, "output_dir": tmp, "total_updates": 2 * args.updates + 2})
        trainer = SingleProcessTrainer(cfg, resume=False)
        trainer.train_step()  # warm-up: first-call allocations
        plain_wall, plain_frames = run(trainer, args.updates)
        timers = Timers()
        remove = instrument(trainer, timers)
        try:
            wall, frames = run(trainer, args.updates)
        finally:
            remove()
    rows = breakdown(timers.seconds, wall)
    table = Table(title=f"single-process trainer, default preset, `{args.agent}` agent, {args.updates} updates, {args.threads} threads")
    for column in ("where", "ms / update", "share"):
        table.add_column(column, justify="right" if column != "where" else "left")
    for label, seconds in rows:
        indent = "  " if "/" in label and not label.startswith("outside") else ""
        table.add_row(f"{indent}{label}", f"{1000 * seconds / args.updates:.1f}", f"{100 * seconds / wall:.1f}%")
    table.add_row("total (with hooks)", f"{1000 * wall / args.updates:.1f}", "100%")
    console = Console()
    console.print(table)
    summary = {
        "agent": args.agent, "threads": args.threads, "updates": args.updates,
        "frames_per_second": plain_frames / plain_wall, "updates_per_second": args.updates / plain_wall,
        "hooks_overhead": wall / plain_wall - 1,
        "ms_per_update": {label: 1000 * seconds / args.updates for label, seconds in rows},
    }  # fmt: skip
    console.print(f"without hooks: {summary['frames_per_second']:.0f} frames/s, {summary['updates_per_second']:.2f} updates/s; hooks cost {100 * summary['hooks_overhead']:.1f}%")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
