"""Benchmark the SPIRAL policy on this CPU: inference steps/s and trained frames/s per preset.

    python tests/benchmarks/bench_networks.py [--threads 2] [--repeats 3] [--unroll 5]

For each preset (``paper``, ``small``) and batch size (32, 64), on the reference setting (64×64
grayscale canvas, grid 32, flag/end/control/size/pressure, conditional):

* inference: one sampled ``forward`` step under ``no_grad`` → steps/s and frames/s (= steps · B);
* training: ``unroll`` over T steps, V-trace A2C loss, backward, gradient clipping and an Adam
  step → trained frames/s (= T · B per update).

Times are the best of ``--repeats`` runs after one warm-up, because the machine is shared and the
minimum is the least noisy estimate of the network's own cost. Finishes in well under 2 minutes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from spiral.agents import SpiralPolicy
from spiral.config import AgentConfig, AgentPreset, LearnerConfig
from spiral.envs.base import Observation
from spiral.envs.spec import ActionSpec, Component, ComponentSpec
from spiral.learning.losses import a2c_vtrace_loss, clip_gradients, make_policy_optimizer

CANVAS, GRID, EPISODE_LENGTH = 64, 32, 20


def reference_spec() -> ActionSpec:
    return ActionSpec(
        (
            ComponentSpec(Component.FLAG, 2),
            ComponentSpec(Component.END, GRID * GRID, GRID),
            ComponentSpec(Component.CONTROL, GRID * GRID, GRID),
            ComponentSpec(Component.SIZE, 6),
            ComponentSpec(Component.PRESSURE, 10),
        )
    )


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocator, oneDNN primitive caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def observation(batch: int, leading: tuple[int, ...] = ()) -> Observation:
    shape = leading + (batch,)
    return Observation(
        canvas=torch.rand(*shape, 1, CANVAS, CANVAS),
        step=torch.ones(shape, dtype=torch.long),
        episode_length=torch.full(shape, EPISODE_LENGTH, dtype=torch.long),
        action_mask=torch.ones(*shape, 5),
    )


def bench_inference(policy: SpiralPolicy, batch: int, repeats: int) -> float:
    obs, target, state = observation(batch), torch.rand(batch, 1, CANVAS, CANVAS), policy.initial_state(batch)

    def step() -> None:
        with torch.no_grad():
            policy(obs, target, None, state)

    return best_seconds(step, repeats)


def bench_training(policy: SpiralPolicy, batch: int, unroll: int, repeats: int) -> float:
    cfg = LearnerConfig()
    optimizer = make_policy_optimizer(policy.parameters(), cfg)
    obs_seq, target = observation(batch, (unroll,)), torch.rand(batch, 1, CANVAS, CANVAS)
    with torch.no_grad():
        behaviour, _ = policy(observation(batch), target, None, policy.initial_state(batch))
    actions = behaviour.actions[None].expand(unroll, -1, -1).contiguous()
    behaviour_log_prob = torch.full((unroll, batch), -5.0)
    rewards, discounts = torch.randn(unroll, batch), torch.ones(unroll, batch)

    def update() -> None:
        out = policy.unroll(obs_seq, target, None, policy.initial_state(batch), actions)
        loss = a2c_vtrace_loss(
            out.log_prob, behaviour_log_prob, out.entropy, out.baseline, torch.zeros(batch), rewards, discounts, cfg
        )
        optimizer.zero_grad()
        loss.total.backward()
        clip_gradients(policy.parameters(), cfg.max_grad_norm)
        optimizer.step()

    return best_seconds(update, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (this machine: 2 cores)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (best is reported)")
    parser.add_argument("--unroll", type=int, default=5, help="T of the training unroll")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    console = Console(width=max(Console().width, 110))
    table = Table(title=f"SPIRAL policy on CPU ({args.threads} threads, {CANVAS}×{CANVAS}, grid {GRID}, best of {args.repeats})")
    for column in ("preset", "params", "batch", "infer ms/step", "infer steps/s", "infer frames/s", "train ms/update", "train frames/s"):
        table.add_column(column, justify="right")

    cases = [(preset, batch) for preset in (AgentPreset.PAPER, AgentPreset.SMALL) for batch in (32, 64)]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmarking", total=len(cases))
        for preset, batch in cases:
            progress.update(task, description=f"{preset.value} batch {batch}")
            policy = SpiralPolicy(reference_spec(), CANVAS, 1, True, AgentConfig(preset=preset))
            params = sum(p.numel() for p in policy.parameters())
            infer = bench_inference(policy, batch, args.repeats)
            train = bench_training(policy, batch, args.unroll, args.repeats)
            table.add_row(
                preset.value,
                f"{params / 1e6:.2f}M",
                str(batch),
                f"{infer * 1e3:.1f}",
                f"{1 / infer:.1f}",
                f"{batch / infer:,.0f}",
                f"{train * 1e3:.0f}",
                f"{args.unroll * batch / train:,.0f}",
            )
            progress.advance(task)
    console.print(table)


if __name__ == "__main__":
    main()
