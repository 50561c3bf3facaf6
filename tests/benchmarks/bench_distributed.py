"""Distributed ``spiral train`` (processes + gRPC) against the single-process trainer, same config.

Reports, from one run of each on this machine (ratios are what matter on a shared CPU):
* frames/s of each (from their ``metrics.jsonl``: first to last update, start-up excluded) and
  the ratio (target ≥ 0.8);
* weight broadcast latency learner → subscriber (p50/p99), measured by a subscriber in this
  process: arrival time − the version's ``published_unix_seconds``;
* bytes per frame on the wire: trajectories (``spiral_trajectory_bytes_total``) and weights
  (``spiral_weights_published_bytes_total``) over ``spiral_learner_frames_total``;
* learning parity: held-out L2 after the same number of frames (target: within 10 %).

Threads: the single-process trainer gets 2 (both cores); each service process gets 1.

Usage: ``python tests/benchmarks/bench_distributed.py [--frames 30000] [--actors 2]``
(the default preset; ~3 minutes per trainer on 2 idle cores).

**Scaling mode** (``--scaling 1 2 4 8 [--seconds 60] [--num-envs 16]``, issue #15): one
``spiral train`` per actor count against one policy learner, tiny envs (``num_envs`` 16 per actor
and per update, no pretraining, no evaluation), each for ``--seconds`` of RL. Scraped from the
learner's /metrics every second, over the window from its second update to the last scrape:

* **learner utilisation**: 1 − (time its update loop waited for data) / wall time;
* **queue wait**: that data wait per update (ms);
* **actor send wait**: the time actors' SendTrajectories were blocked on a full queue, as a
  fraction of the actors' wall time (the back-pressure signal);
* **policy lag**: mean versions between the weights an episode was played with and the update
  that trains on it; frames/s and updates/s.

The sizing rule comes from the one-actor run, the only one whose processes each have a core here
(the 2-core machine is oversubscribed beyond it). There the learner is busy a fraction ``u`` of
the time and the actor is blocked on a full queue a fraction ``w``: one learner core trains
``fps / u`` frames/s and one actor core plays ``fps / (1 − w)``, so one learner core keeps up with
``(1 − w) / u`` actor cores of this preset (``1 / u`` when the learner starves, ``1 − w`` when it is
the bottleneck). The larger counts show what more actors do to one saturated learner here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import torch
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from spiral.config import Role, ServicesConfig, load_preset
from spiral.learning.run_log import read_log
from spiral.learning.trainer import SingleProcessTrainer
from spiral.services.weights import WeightsSubscriber

console = Console()


def throughput(metrics_jsonl: Path) -> float:
    """Frames/s between the first and the last logged update."""
    records = [r for r in read_log(metrics_jsonl) if "losses/total" in r]
    if len(records) < 2:
        return math.nan
    first, last = records[0], records[-1]
    return (last["frames"] - first["frames"]) / max(last["time"] - first["time"], 1e-9)


def late_train_l2(metrics_jsonl: Path, last: int = 10) -> float:
    """Mean train-batch L2 of the last ``last`` updates (a learning signal even while the greedy
    held-out reconstruction is still blank)."""
    values = [r["charts/train_l2"] for r in read_log(metrics_jsonl) if "charts/train_l2" in r][-last:]
    return statistics.fmean(values) if values else math.nan


def final_l2(metrics_jsonl: Path) -> float:
    evals = [r for r in read_log(metrics_jsonl) if "eval/held_out_l2" in r]
    return evals[-1]["eval/held_out_l2"] if evals else math.nan


def overrides(frames: int, out: Path, actors: int) -> dict[str, object]:
    # Evaluate only at the end (both trainers), log every update for the throughput window.
    return {"output_dir": str(out), "total_frames": frames, "eval_every_updates": 10**9, "checkpoint_every_updates": 10**9, "log_every_updates": 1, "num_actors": actors}


def run_single(frames: int, out: Path, actors: int, threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    cfg = load_preset("default", overrides(frames, out, actors))
    trainer = SingleProcessTrainer(cfg, resume=False)
    started = time.perf_counter()
    trainer.run(show_progress=False)
    log = out / "metrics.jsonl"
    return {"wall": time.perf_counter() - started, "fps": throughput(log), "l2": final_l2(log), "train_l2": late_train_l2(log), "frames": trainer.counters.frames}


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            totals[s.name] = totals.get(s.name, 0.0) + s.value
    return totals


def run_distributed(frames: int, out: Path, actors: int) -> dict[str, float]:
    args = [sys.executable, "-m", "spiral", "train", "--quiet", "--no-resume"]
    for key, value in overrides(frames, out, actors).items():
        args += ["--output-dir", str(value)] if key == "output_dir" else ["--set", f"{key}={value}"]
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready = out / "launch" / "ready" / f"{Role.POLICY_LEARNER.value}.json"
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(proc.stdout.read())
        time.sleep(0.2)
    info = json.loads(ready.read_text())
    latencies: list[float] = []
    lock = threading.Lock()

    def record(weights) -> None:  # noqa: ANN001
        with lock:
            latencies.append(time.time() - weights.published_unix_seconds)

    subscriber = WeightsSubscriber(info["address"], ServicesConfig(), on_update=record, subscriber_id="bench").start()
    last: dict[str, float] = {}
    while proc.poll() is None:
        try:
            last = scrape(info["metrics_port"])
        except OSError:
            pass
        time.sleep(1.0)
    subscriber.stop()
    output = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"spiral train exited {proc.returncode}:\n{output}")
    learner_frames = last.get("spiral_learner_frames_total", math.nan)
    lat = sorted(latencies[1:])  # the first is the version current when we subscribed
    return {
        "wall": time.perf_counter() - started,
        "fps": throughput(out / "metrics.jsonl"),
        "l2": final_l2(out / "metrics.jsonl"),
        "train_l2": late_train_l2(out / "metrics.jsonl"),
        "frames": learner_frames,
        "traj_bytes_per_frame": last.get("spiral_trajectory_bytes_total", math.nan) / learner_frames,
        "weight_bytes_per_frame": last.get("spiral_weights_published_bytes_total", math.nan) / learner_frames,
        "lag": last.get("spiral_learner_policy_lag_versions_sum", math.nan) / max(last.get("spiral_learner_policy_lag_versions_count", 0), 1),
        "latency_p50": statistics.median(lat) if lat else math.nan,
        "latency_p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else math.nan,
        "versions": len(latencies),
    }


def scaling_overrides(out: Path, actors: int, seconds: float, num_envs: int) -> dict[str, object]:
    # Wall budget = RL window + start-up; no pretraining or evaluation inside the window.
    return {
        "output_dir": str(out), "total_frames": 10**9, "max_wall_minutes": (seconds + 20.0) / 60.0, "num_actors": actors,
        "num_envs": num_envs, "pretrain.updates": 0, "eval_every_updates": 10**9, "checkpoint_every_updates": 10**9,
        "log_every_updates": 10,
    }  # fmt: skip


def run_scaling(actors: int, out: Path, seconds: float, num_envs: int) -> dict[str, float]:
    """One ``spiral train`` with ``actors`` actors; the learner's figures over its RL window."""
    args = [sys.executable, "-m", "spiral", "train", "--quiet", "--no-resume"]
    for key, value in scaling_overrides(out, actors, seconds, num_envs).items():
        args += ["--output-dir", str(value)] if key == "output_dir" else ["--set", f"{key}={value}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready = out / "launch" / "ready" / f"{Role.POLICY_LEARNER.value}.json"
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(proc.stdout.read() if proc.stdout else "")
        time.sleep(0.2)
    port = json.loads(ready.read_text())["metrics_port"]
    scrapes: list[tuple[float, dict[str, float]]] = []
    while proc.poll() is None:
        with contextlib.suppress(OSError):  # the learner closes its port on the way out
            scrapes.append((time.monotonic(), scrape(port)))
        time.sleep(1.0)
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"spiral train exited {proc.returncode}:\n{output}")
    started = [i for i, (_, m) in enumerate(scrapes) if m.get("spiral_learner_updates_total", 0) >= 2]
    if not started or started[0] == len(scrapes) - 1:
        raise RuntimeError(f"fewer than two scrapes after the learner's second update ({len(scrapes)} scrapes)")
    (t0, a), (t1, b) = scrapes[started[0]], scrapes[-1]
    wall = t1 - t0

    def delta(name: str) -> float:
        return b.get(name, 0.0) - a.get(name, 0.0)

    updates = delta("spiral_learner_updates_total")
    data_wait = delta("spiral_learner_data_wait_seconds_total")
    lag_count = delta("spiral_learner_policy_lag_versions_count")
    return {
        "actors": actors,
        "wall": wall,
        "fps": delta("spiral_learner_frames_total") / wall,
        "updates_per_s": updates / wall,
        "utilisation": 1.0 - data_wait / wall,
        "queue_wait_ms": 1e3 * data_wait / max(updates, 1.0),
        "actor_send_wait": delta("spiral_learner_actor_wait_seconds_total") / (actors * wall),
        "lag": delta("spiral_learner_policy_lag_versions_sum") / max(lag_count, 1.0),
    }


def scaling(counts: list[int], seconds: float, num_envs: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for actors in counts:
            console.print(f"[bold]scaling[/]: {actors} actor(s), {seconds:.0f} s of RL, num_envs {num_envs} …")
            rows.append(run_scaling(actors, Path(tmp) / f"actors-{actors}", seconds, num_envs))
    table = Table(title=f"one policy learner, 1..{max(counts)} actors (default preset, num_envs {num_envs}, {os.cpu_count()} cores, 1 thread per process)")
    for column in ("actors", "frames/s", "updates/s", "learner utilisation", "queue wait / update (ms)", "actor send wait", "policy lag (versions)"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            f"{r['actors']:.0f}", f"{r['fps']:,.0f}", f"{r['updates_per_s']:.2f}", f"{100 * r['utilisation']:.0f} %",
            f"{r['queue_wait_ms']:.0f}", f"{100 * r['actor_send_wait']:.0f} %", f"{r['lag']:.2f}",
        )  # fmt: skip
    console.print(table)
    one = next((r for r in rows if r["actors"] == 1), None)
    if one is not None and one["utilisation"] > 0:
        learner_core = one["fps"] / one["utilisation"]
        actor_core = one["fps"] / max(1.0 - one["actor_send_wait"], 1e-9)
        console.print(
            f"sizing rule (the 1-actor run, a core each): one learner core trains {learner_core:,.0f} frames/s "
            f"(busy {100 * one['utilisation']:.0f} %), one actor core plays {actor_core:,.0f} frames/s (blocked {100 * one['actor_send_wait']:.0f} %) "
            f"→ one policy learner core feeds ≈ {learner_core / actor_core:.2f} actor cores of this preset"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30_000)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--single-threads", type=int, default=2, help="torch threads of the single-process trainer")
    parser.add_argument("--scaling", type=int, nargs="+", metavar="ACTORS", help="scaling mode: these actor counts against one learner")
    parser.add_argument("--seconds", type=float, default=60.0, help="scaling mode: seconds of RL per actor count")
    parser.add_argument("--num-envs", type=int, default=16, help="scaling mode: environments per actor (and episodes per update)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.scaling:
        scaling(args.scaling, args.seconds, args.num_envs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        console.print(f"[bold]distributed[/] spiral train, default preset, {args.frames} frames, {args.actors} actors …")
        dist = run_distributed(args.frames, Path(tmp) / "dist", args.actors)
        console.print("[bold]single-process[/] trainer, same config …")
        single = run_single(args.frames, Path(tmp) / "single", args.actors, args.single_threads)
    table = Table(title=f"spiral train: distributed vs single-process ({os.cpu_count()} cores, default preset, {args.frames} frames)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    ratio = dist["fps"] / single["fps"]
    table.add_row(f"single-process frames/s ({args.single_threads} threads)", f"{single['fps']:.0f}")
    table.add_row(f"distributed frames/s ({args.actors} actors + learner, 1 thread each)", f"{dist['fps']:.0f}")
    table.add_row("ratio (target ≥ 0.8)", f"{ratio:.2f}")
    table.add_row("wall time single / distributed incl. start-up (s)", f"{single['wall']:.0f} / {dist['wall']:.0f}")
    table.add_row("weight broadcast latency p50 / p99 (ms)", f"{1000 * dist['latency_p50']:.1f} / {1000 * dist['latency_p99']:.1f} ({dist['versions']} versions)")
    table.add_row("trajectory bytes per frame", f"{dist['traj_bytes_per_frame']:.0f}")
    table.add_row("weight bytes per frame (to 2 actors + bench)", f"{dist['weight_bytes_per_frame']:.0f}")
    table.add_row("mean policy lag (versions)", f"{dist['lag']:.2f}")
    table.add_row("held-out L2 single / distributed", f"{single['l2']:.4f} / {dist['l2']:.4f}")
    table.add_row("train L2, last 10 updates, single / distributed", f"{single['train_l2']:.4f} / {dist['train_l2']:.4f}")
    gap = abs(dist["l2"] - single["l2"]) / single["l2"]
    table.add_row("held-out L2 gap (target ≤ 10 %)", f"{100 * gap:.1f} %")
    console.print(table)


if __name__ == "__main__":
    main()
