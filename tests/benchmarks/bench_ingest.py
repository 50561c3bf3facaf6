"""Policy-learner ingest: how many trajectories one learner can take in, against what one actor makes.

Run: ``python tests/benchmarks/bench_ingest.py [--senders 1 16] [--seconds 15]`` (about a minute).

* **One actor's production** (the denominator): this process plays the default preset's rollouts
  exactly as an actor does (``collect_rollout`` with the actor's search rule, then
  ``rollout_to_trajectory`` and ``trajectory_to_proto``), on one torch thread like an actor
  process: trajectories/s and frames/s.
* **Ingest**: a real policy learner (``start_policy_learner``: its gRPC server, ``submit`` with every
  boundary check, conversion to a rollout, the bounded queue) with its update loop *paused* — a
  thread here drains the queue and discards what it takes. N light sender processes (grpc only, no
  torch) stream copies of one real trajectory message, as pre-serialised bytes, over loopback.
  Counted: trajectories and frames taken off the queue per second over ``--seconds`` once every
  sender is streaming.

Target (issue #15): with 16 senders, ≥ 10× what one actor produces (so one learner can feed ≥ 10
actors). On this 2-core machine the senders share the cores with the learner, so the figure is a
lower bound for a learner with a core of its own.
"""

from __future__ import annotations

import argparse
import logging
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from spiral.agents.build import build_policy
from spiral.config import TrainConfig, load_preset
from spiral.data import load_dataset
from spiral.envs.factory import make_env
from spiral.learning.rollout import collect_rollout
from spiral.learning.search import search_candidates
from spiral.services.policy_learner import start_policy_learner
from spiral.services.tensor_codec import trajectory_to_proto
from spiral.services.trajectory_convert import rollout_to_trajectory

console = Console()

#: A light sender: streams one pre-serialised Trajectory message, over and over, until killed.
SENDER_SCRIPT = """
import sys
import grpc
from spiral.v1 import trajectory_pb2
address, path = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
send = channel.stream_unary("/spiral.v1.PolicyLearner/SendTrajectories", request_serializer=None, response_deserializer=trajectory_pb2.SendSummary.FromString)
while True:
    send(iter(lambda: data, None))
"""


def actor_production(cfg: TrainConfig, rollouts: int, seed: int) -> tuple[float, int, bytes]:
    """Seconds per trajectory of one actor (the mean over ``rollouts``: search plays a share of
    them, so a median would miss its cost), frames per trajectory, and the last message's bytes."""
    env = make_env(cfg.env)
    policy = build_policy(cfg, env).eval()
    dataset = load_dataset(cfg.data, cfg.env.canvas_size, cfg.env.color, cfg.env.ink)
    generator = torch.Generator().manual_seed(seed)
    data = b""
    frames = 0
    started = time.perf_counter()
    for _ in range(rollouts):
        indices = torch.randint(dataset.num_train, (cfg.num_envs,), generator=generator)
        targets = dataset.uint8("train")[indices].float().div_(255.0)
        rollout = collect_rollout(env, policy, targets, None, cfg.num_envs, search_candidates=search_candidates(cfg, generator))
        traj = rollout_to_trajectory(rollout, tuple(env.action_spec.names), actor_id="bench", target_indices=indices)
        data = trajectory_to_proto(traj).SerializeToString()
        frames = rollout.num_frames
    return (time.perf_counter() - started) / rollouts, frames, data


def ingest(cfg: TrainConfig, message: Path, senders: int, seconds: float) -> tuple[float, float]:
    """(trajectories/s, frames/s) taken off a paused learner's queue, fed by ``senders`` processes."""
    cfg = cfg.model_copy(update={"num_actors": senders})
    learner, server = start_policy_learner(cfg, resume=False)
    taken: list[tuple[float, int]] = []
    stop = threading.Event()

    def drain() -> None:  # the paused update loop: take, count, discard
        while not stop.is_set():
            try:
                item = learner.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            taken.append((time.perf_counter(), item.rollout.num_frames))

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    procs = [subprocess.Popen([sys.executable, "-c", SENDER_SCRIPT, server.address, str(message)]) for _ in range(senders)]
    try:
        time.sleep(3.0 + 0.2 * senders)  # interpreters start, channels connect, streams fill
        start, count = time.perf_counter(), len(taken)
        time.sleep(seconds)
        end, window = time.perf_counter(), taken[count:]
    finally:
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)  # the killed senders' broken streams
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
        stop.set()
        drainer.join(timeout=5)
        server.stop()
    inside = [frames for at, frames in window if start <= at <= end]
    return len(inside) / (end - start), sum(inside) / (end - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, nargs="+", default=[1, 16], help="sender process counts to measure")
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window per sender count")
    parser.add_argument("--rollouts", type=int, default=12, help="rollouts timed for one actor's production")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # each service process runs one torch thread
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_preset("default", {"output_dir": tmp, "services.grpc_port": 0, "services.metrics_port": 0, "services.health_port": 0})
        console.print(f"one actor: {args.rollouts} rollouts of the default preset ({cfg.num_envs} envs, search on {cfg.search.fraction:.0%}) …")
        per_trajectory, frames, data = actor_production(cfg, args.rollouts, args.seed)
        message = Path(tmp) / "trajectory.bin"
        message.write_bytes(data)
        results = {}
        for senders in args.senders:
            console.print(f"ingest from {senders} sender process(es), {args.seconds:.0f} s …")
            results[senders] = ingest(cfg, message, senders, args.seconds)
    actor_rate = 1.0 / per_trajectory
    table = Table(title=f"policy-learner ingest, default preset, update loop paused ({len(data):,} bytes / trajectory, {frames} frames)")
    for column in ("source", "trajectories/s", "frames/s", "× one actor"):
        table.add_column(column, justify="right")
    table.add_row("one actor (1 thread)", f"{actor_rate:.2f}", f"{actor_rate * frames:,.0f}", "1.0×")
    for senders, (traj_s, frames_s) in results.items():
        table.add_row(f"learner ingest, {senders} senders", f"{traj_s:.1f}", f"{frames_s:,.0f}", f"{traj_s / actor_rate:.1f}×")
    console.print(table)
    most = max(results)
    ratio = results[most][0] / actor_rate
    console.print(f"target: ingest from {most} senders ≥ 10× one actor — {ratio:.1f}× — {'met' if ratio >= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
