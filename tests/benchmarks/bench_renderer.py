"""Painting renderer speed: strokes/s of libmypaint vs the fast torch renderer, and what search costs.

Run: ``python tests/benchmarks/bench_renderer.py [--repeats 3] [--threads 1] [--device cpu]
[--grid /tmp/renderers.png]`` (about a minute).

Both renderers paint the *same* random programmes (every action a paint stroke, all components
uniform: the default config's six brush radii and ten pressures, one 20-step episode = 19 strokes).
The time covers ``step`` only (decode, render, composite, read the canvas back), best of
``--repeats`` runs, because the CI machine is shared and the best run is the least disturbed one.
Both run on one intra-op thread by default: libmypaint paints a 64-px canvas (one tile) on one core,
and on this 2-core shared machine a second torch thread mostly waits (see ``tests/envs/conftest.py``).

Batch 4096 is timed for the fast renderer only: libmypaint paints one canvas at a time, so its
strokes/s does not depend on the batch (batch 1 and 256 agree within noise) and its batch-256 rate
is the 4096 row's reference.

**Search cost** (issue #15): with the default preset's ``num_envs`` environments and ``small``
policy, the renderer's time to preview ``K = 16`` candidate strokes per environment
(``FastPaintEnv.preview``: B·K strokes in one batch) against one policy inference step (a sampled
``forward`` under ``no_grad``) on the same thread count, and the whole search step
(``search_step``: the policy's K candidates, the preview, the L2 score) beside them.

``--against COMMIT`` also times this checkout's fast renderer against the one at ``COMMIT`` (its
``fast_backend.py`` loaded from git beside this one, same programmes, alternating runs, medians):
the same-run baseline a renderer speed-up is claimed against.

Targets (issue #15): fast ≥ 60× libmypaint strokes/s at batch 256 on the 2-core CPU (issue #8's
was ≥ 20×); the K = 16 preview ≤ 1× one policy inference step.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_networks import best_seconds  # the benchmarks' folder is on sys.path when run as a script
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from spiral.agents.build import build_policy
from spiral.config import EnvConfig, Renderer, load_preset
from spiral.envs.factory import make_env
from spiral.envs.painting_spec import random_actions
from spiral.images import save_grid
from spiral.learning.search import search_step

TARGET_RATIO = 60.0
SEARCH_CANDIDATES = 16
#: (batch size, episodes per timed run, renderers): about 500 strokes at batch 1, one episode above.
SETTINGS = [(1, 25, ("libmypaint", "fast")), (256, 1, ("libmypaint", "fast")), (4096, 1, ("fast",))]
REFERENCE_BATCH = 256  # the batch whose libmypaint rate the ratios use


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


def search_cost(repeats: int, seed: int) -> dict[str, float]:
    """Seconds of one policy inference step, a K-candidate preview and a whole search step, with
    the default preset's environments and policy (one step in the middle of an episode)."""
    cfg = load_preset("default")
    env = make_env(cfg.env)
    policy = build_policy(cfg, env).eval()
    batch = cfg.num_envs
    generator = torch.Generator().manual_seed(seed)
    obs = env.reset(batch)
    for _ in range(cfg.env.episode_length // 2):  # a half-painted canvas, as search sees mid-episode
        obs = env.step(random_actions(env.action_spec, batch, generator))
    targets = torch.rand(batch, env.num_channels, env.canvas_size, env.canvas_size, generator=generator)
    state = policy.initial_state(batch)
    candidates = torch.stack([random_actions(env.action_spec, batch, generator, paint_only=True) for _ in range(SEARCH_CANDIDATES)], 1)

    def inference() -> None:
        with torch.no_grad():
            policy(obs, targets, None, state, generator=generator)

    return {
        "inference": best_seconds(inference, repeats),
        "preview": best_seconds(lambda: env.preview(candidates), repeats),
        "search_step": best_seconds(lambda: search_step(env, policy, obs, targets, None, state, SEARCH_CANDIDATES, generator=generator), repeats),
        "batch": batch,
    }


def against_commit(commit: str, cfg: EnvConfig, rounds: int, seed: int) -> dict[str, float]:
    """Median seconds per episode at batch REFERENCE_BATCH: this checkout's fast renderer and the
    one in ``commit`` (only ``fast_backend.py`` is taken from it; the rest is this checkout's)."""
    root = Path(__file__).resolve().parents[2]
    source = subprocess.run(
        ["git", "show", f"{commit}:services/spiral/envs/fast_backend.py"], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fast_backend_baseline.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("fast_backend_baseline", path)
        assert spec is not None and spec.loader is not None
        baseline = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = baseline
        spec.loader.exec_module(baseline)
    from spiral.envs.fast_backend import FastPaintEnv

    envs = {"this checkout": FastPaintEnv(cfg, "cpu"), commit: baseline.FastPaintEnv(cfg, "cpu")}
    work = programmes(cfg, REFERENCE_BATCH, 1, seed)
    seconds: dict[str, list[float]] = {name: [] for name in envs}
    for env in envs.values():
        time_run(env, work, torch.device("cpu"))  # warm-up
    for _ in range(rounds):
        for name, env in envs.items():
            seconds[name].append(time_run(env, work, torch.device("cpu"))[0])
    return {name: statistics.median(values) for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per setting; the best counts.")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = leave torch's default).")
    parser.add_argument("--device", default="cpu", help="Fast renderer device: cpu, cuda or auto.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--against", metavar="COMMIT", help="Also time the fast renderer of COMMIT beside this one.")
    parser.add_argument("--rounds", type=int, default=15, help="Alternating runs per side with --against.")
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
    total_runs = sum(len(names) for _, _, names in SETTINGS) * (args.repeats + 1)
    devices = {"libmypaint": torch.device("cpu"), "fast": renderers["fast"].device}
    best: dict[tuple[int, str], float] = {}
    strokes: dict[int, int] = {}
    canvases: dict[str, torch.Tensor] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("timing renderers", total=total_runs)
        for batch, episodes, names in SETTINGS:
            work = programmes(cfg, batch, episodes, args.seed)
            strokes[batch] = batch * episodes * (cfg.episode_length - 1)
            for name in names:
                env = renderers[name]
                time_run(env, work[:1], devices[name])  # warm-up: canvases, caches, thread pools
                progress.advance(task)
                for _ in range(args.repeats):
                    seconds, canvas = time_run(env, work, devices[name])
                    best[batch, name] = min(seconds, best.get((batch, name), float("inf")))
                    progress.advance(task)
                if batch == REFERENCE_BATCH:
                    canvases[name] = canvas
        progress.update(task, description=f"search cost (K = {SEARCH_CANDIDATES}, default preset)")
        search = search_cost(args.repeats, args.seed)

    table = Table(title=f"Painting renderers: strokes/s ({torch.get_num_threads()} torch thread(s), fast on {devices['fast']})")
    for column in ("batch", "renderer", "strokes", "best seconds", "strokes/s", "fast ÷ libmypaint"):
        table.add_column(column, justify="right")
    reference = strokes[REFERENCE_BATCH] / best[REFERENCE_BATCH, "libmypaint"]
    for batch, _, names in SETTINGS:
        for name in names:
            rate = strokes[batch] / best[batch, name]
            # Against libmypaint at the same batch where it was timed, else at REFERENCE_BATCH.
            same = strokes[batch] / best[batch, "libmypaint"] if (batch, "libmypaint") in best else reference
            ratio = f"{rate / same:.1f}×" if name == "fast" else ""
            table.add_row(str(batch), name, str(strokes[batch]), f"{best[batch, name]:.3f}", f"{rate:,.0f}", ratio)
    console.print(table)
    ratio = best[REFERENCE_BATCH, "libmypaint"] / best[REFERENCE_BATCH, "fast"]
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    console.print(f"target fast ≥ {TARGET_RATIO:.0f}× libmypaint at batch {REFERENCE_BATCH}: {ratio:.1f}× — {verdict}")
    cost = search["preview"] / search["inference"]
    console.print(
        f"search, {search['batch']} envs × K = {SEARCH_CANDIDATES}: preview {search['preview'] * 1e3:.1f} ms, one policy inference step "
        f"{search['inference'] * 1e3:.1f} ms → preview = {cost:.2f}× inference ({'met' if cost <= 1.0 else 'NOT met'}, target ≤ 1×); "
        f"whole search step {search['search_step'] * 1e3:.1f} ms"
    )
    if args.against:
        medians = against_commit(args.against, cfg, args.rounds, args.seed)
        mine, theirs = medians["this checkout"], medians[args.against]
        steps = cfg.episode_length - 1
        console.print(
            f"fast renderer, batch {REFERENCE_BATCH}, median of {args.rounds} alternating episodes: this checkout "
            f"{mine / steps * 1e3:.2f} ms/step vs {args.against} {theirs / steps * 1e3:.2f} ms/step = {theirs / mine:.2f}× faster"
        )
    if args.grid is not None:
        path = save_grid(torch.cat([canvases["libmypaint"][:8], canvases["fast"][:8]]), args.grid, nrow=8, scale=2)
        console.print(f"grid (top: libmypaint, bottom: fast) → {path}")


if __name__ == "__main__":
    main()
