"""Painting renderer speed: strokes/s of libmypaint vs the fast torch renderer, batch 1 and 256.

Run: ``python tests/benchmarks/bench_renderer.py [--repeats 3] [--threads 1] [--device cpu]
[--grid /tmp/renderers.png]`` (well under a minute).

Both renderers paint the *same* random programmes (every action a paint stroke, all components
uniform: the default config's six brush radii and ten pressures, one 20-step episode = 19 strokes).
The time covers ``step`` only (decode, render, composite, read the canvas back), best of
``--repeats`` runs, because the CI machine is shared and the best run is the least disturbed one.
Both run on one intra-op thread by default: libmypaint paints a 64-px canvas (one tile) on one core,
and on this 2-core shared machine a second torch thread mostly waits (see ``tests/envs/conftest.py``).

Target (the issue): fast ≥ 20× libmypaint strokes/s at batch 256 on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from spiral.config import EnvConfig, Renderer
from spiral.envs.factory import make_env
from spiral.envs.painting_spec import random_actions
from spiral.images import save_grid

TARGET_RATIO = 20.0
#: (batch size, episodes per timed run): about 500 strokes at batch 1, one episode at batch 256.
SETTINGS = [(1, 25), (256, 1)]


def programmes(cfg: EnvConfig, batch: int, episodes: int, seed: int) -> list[list[torch.Tensor]]:
    """``episodes`` lists of ``episode_length - 1`` paint-only action batches ``[batch, K]``."""
    spec = make_env(cfg.model_copy(update={"renderer": Renderer.FAST}), device="cpu").action_spec
    generator = torch.Generator().manual_seed(seed)
    steps = cfg.episode_length - 1
    return [[random_actions(spec, batch, generator, paint_only=True) for _ in range(steps)] for _ in range(episodes)]


def time_run(env, episodes: list[list[torch.Tensor]], device: torch.device) -> tuple[float, torch.Tensor]:
    """Seconds spent in ``step`` over all episodes, and the last episode's final canvases."""
    elapsed = 0.0
    canvas = None
    for episode in episodes:
        env.reset(episode[0].shape[0])
        actions = [a.to(device) for a in episode]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for step_actions in actions:
            canvas = env.step(step_actions).canvas
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - start
    return elapsed, canvas.cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per setting; the best counts.")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = leave torch's default).")
    parser.add_argument("--device", default="cpu", help="Fast renderer device: cpu, cuda or auto.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=Path, default=None, help="Write a PNG: libmypaint row above fast row, 8 programmes.")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    console = Console()
    cfg = EnvConfig()
    renderers = {
        "libmypaint": make_env(cfg.model_copy(update={"renderer": Renderer.LIBMYPAINT}), seed=args.seed),
        "fast": make_env(cfg.model_copy(update={"renderer": Renderer.FAST, "device": args.device})),
    }
    devices = {"libmypaint": torch.device("cpu"), "fast": renderers["fast"].device}
    best: dict[tuple[int, str], float] = {}
    strokes: dict[int, int] = {}
    canvases: dict[str, torch.Tensor] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("timing renderers", total=len(SETTINGS) * len(renderers) * (args.repeats + 1))
        for batch, episodes in SETTINGS:
            work = programmes(cfg, batch, episodes, args.seed)
            strokes[batch] = batch * episodes * (cfg.episode_length - 1)
            for name, env in renderers.items():
                time_run(env, work[:1], devices[name])  # warm-up: canvases, caches, thread pools
                progress.advance(task)
                for _ in range(args.repeats):
                    seconds, canvas = time_run(env, work, devices[name])
                    best[batch, name] = min(seconds, best.get((batch, name), float("inf")))
                    progress.advance(task)
                if batch == SETTINGS[-1][0]:
                    canvases[name] = canvas

    table = Table(title=f"Painting renderers: strokes/s ({torch.get_num_threads()} torch thread(s), fast on {devices['fast']})")
    for column in ("batch", "renderer", "strokes", "best seconds", "strokes/s", "fast ÷ libmypaint"):
        table.add_column(column, justify="right")
    for batch, _ in SETTINGS:
        rates = {name: strokes[batch] / best[batch, name] for name in renderers}
        for name in renderers:
            ratio = f"{rates['fast'] / rates['libmypaint']:.1f}×" if name == "fast" else ""
            table.add_row(str(batch), name, str(strokes[batch]), f"{best[batch, name]:.3f}", f"{rates[name]:,.0f}", ratio)
    console.print(table)
    big = SETTINGS[-1][0]
    ratio = best[big, "libmypaint"] / best[big, "fast"]
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    console.print(f"target fast ≥ {TARGET_RATIO:.0f}× libmypaint at batch {big}: {ratio:.1f}× — {verdict}")
    if args.grid is not None:
        path = save_grid(torch.cat([canvases["libmypaint"][:8], canvases["fast"][:8]]), args.grid, nrow=8, scale=2)
        console.print(f"grid (top: libmypaint, bottom: fast) → {path}")


if __name__ == "__main__":
    main()
