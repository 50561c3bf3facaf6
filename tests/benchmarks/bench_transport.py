"""Transport benchmark: trajectory bytes per frame, trajectory streaming, weights broadcast latency.

Run: ``python tests/benchmarks/bench_transport.py [--versions 40] [--subscribers 4]`` (< 1 min).

* Trajectory: the `small` preset's wire message — 19 steps × 32 envs of 64×64 grayscale with the
  default painting action spec — encoded with UINT8 and FLOAT32 canvases: bytes per frame and
  encode/decode time, then streamed over a real loopback gRPC server (decoded on arrival).
* Weights: a real server publishes successive versions of the `small` and `paper` policies'
  state_dicts; each of several ``WeightsSubscriber``s records the time from ``publish()`` to its
  update callback. Reported as p50/p99 over (version, subscriber).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Iterator

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table as RichTable

from spiral.agents.policy import SpiralPolicy
from spiral.config import AgentConfig, AgentPreset, EnvConfig, Role
from spiral.envs.painting_spec import painting_action_spec
from spiral.services.server import policy_learner_binding, serve
from spiral.services.tensor_codec import CanvasEncoding, TrajectoryData, trajectory_from_proto, trajectory_to_proto
from spiral.services.weights import WeightsPublisher, WeightsSubscriber
from spiral.v1 import services_pb2_grpc, trajectory_pb2

console = Console()
T, B, SIZE = 19, 32, 64


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def make_trajectory() -> TrajectoryData:
    spec = painting_action_spec(EnvConfig())
    k = len(spec)
    gen = torch.Generator().manual_seed(0)
    return TrajectoryData(
        canvas=torch.rand(T, B, 1, SIZE, SIZE, generator=gen),
        step=torch.arange(T).repeat(B, 1).t().contiguous(),
        action_mask=torch.ones(T, B, k),
        actions=torch.stack([torch.randint(0, n, (T, B), generator=gen) for n in spec.sizes], dim=-1),
        behaviour_log_probs=torch.randn(T, B, generator=gen),
        final_canvas=torch.rand(B, 1, SIZE, SIZE, generator=gen),
        episode_length=torch.full((B,), T + 1),
        policy_version=1,
        action_names=spec.names,
        targets=torch.rand(B, 1, SIZE, SIZE, generator=gen),
    )


class _Learner(services_pb2_grpc.PolicyLearnerServicer):
    def __init__(self, publisher: WeightsPublisher) -> None:
        self.publisher = publisher
        self.frames = 0

    def SendTrajectories(self, request_iterator, context):  # noqa: ANN001, ANN201, N802
        count = 0
        for msg in request_iterator:
            self.frames += trajectory_from_proto(msg).num_frames
            count += 1
        return trajectory_pb2.SendSummary(num_trajectories=count, num_frames=self.frames)

    def SubscribeWeights(self, request, context):  # noqa: ANN001, ANN201, N802
        return self.publisher.stream(request, context)


def bench_trajectories(address: str, report: RichTable, num_streamed: int) -> None:
    traj = make_trajectory()
    frames = T * B
    for encoding in CanvasEncoding:
        start = time.perf_counter()
        msg = trajectory_to_proto(traj, encoding)
        encode_ms = (time.perf_counter() - start) * 1e3
        data = msg.SerializeToString()
        start = time.perf_counter()
        parsed = trajectory_pb2.Trajectory.FromString(data)
        trajectory_from_proto(parsed)
        decode_ms = (time.perf_counter() - start) * 1e3
        report.add_row(f"trajectory {encoding.value}: bytes / message", f"{len(data):,}")
        report.add_row(f"trajectory {encoding.value}: bytes / frame", f"{len(data) / frames:,.0f}")
        report.add_row(f"trajectory {encoding.value}: encode / decode ms", f"{encode_ms:.2f} / {decode_ms:.2f}")

    import grpc

    msg = trajectory_to_proto(traj, CanvasEncoding.UINT8)
    with grpc.insecure_channel(address) as channel:
        stub = services_pb2_grpc.PolicyLearnerStub(channel)
        start = time.perf_counter()

        def messages() -> Iterator[trajectory_pb2.Trajectory]:
            for _ in range(num_streamed):
                yield msg

        summary = stub.SendTrajectories(messages(), timeout=60)
        seconds = time.perf_counter() - start
    report.add_row(
        "trajectory uint8: streamed + decoded over loopback",
        f"{summary.num_trajectories / seconds:,.0f} traj/s = {summary.num_frames / seconds:,.0f} frames/s ({msg.ByteSize() * num_streamed / seconds / 1e6:,.0f} MB/s)",
    )


def bench_weights(preset: AgentPreset, num_versions: int, num_subscribers: int, report: RichTable, progress: Progress) -> None:
    spec = painting_action_spec(EnvConfig())
    policy = SpiralPolicy(spec, SIZE, 1, True, AgentConfig(preset=preset))
    state = policy.state_dict()
    num_params = sum(t.numel() for t in state.values())
    publisher = WeightsPublisher(chunk_bytes=1024 * 1024)
    publish_times: dict[int, float] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    received = threading.Semaphore(0)

    def on_update(weights) -> None:  # noqa: ANN001
        now = time.perf_counter()
        with lock:
            latencies.append(now - publish_times[weights.version])
        received.release()

    with serve([policy_learner_binding(_Learner(publisher))], _cfg(), role=Role.POLICY_LEARNER, grace_seconds=0.2, before_stop=[publisher.close]) as running:
        publish_times[0] = time.perf_counter()
        publisher.publish(0, state)
        subs = [WeightsSubscriber(running.address, _cfg(), on_update=on_update).start() for _ in range(num_subscribers)]
        for _ in range(num_subscribers):
            received.acquire(timeout=30)
        latencies.clear()
        encode = []
        task = progress.add_task(f"weights broadcast ({preset.value})", total=num_versions)
        for version in range(1, num_versions + 1):
            start = time.perf_counter()
            publish_times[version] = start
            publisher.publish(version, state)
            encode.append(time.perf_counter() - start)
            for _ in range(num_subscribers):  # one version at a time: latency, not throughput
                received.acquire(timeout=30)
            progress.advance(task)
        payload = publisher._latest.total_bytes if publisher._latest else 0  # noqa: SLF001 - benchmark introspection
        for sub in subs:
            sub.stop()
    report.add_row(f"weights {preset.value}: params / bytes / chunks", f"{num_params:,} / {payload:,} / {max(1, -(-payload // (1024 * 1024)))}")
    report.add_row(f"weights {preset.value}: publish (copy+encode) ms p50", f"{statistics.median(encode) * 1e3:.1f}")
    report.add_row(
        f"weights {preset.value}: publish → subscriber ms p50 / p99 ({num_subscribers} subs)",
        f"{percentile(latencies, 0.5) * 1e3:.1f} / {percentile(latencies, 0.99) * 1e3:.1f}",
    )


def _cfg():  # noqa: ANN202
    from spiral.config import ServicesConfig

    return ServicesConfig(grpc_port=0, metrics_port=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=40, help="weights versions published per preset")
    parser.add_argument("--subscribers", type=int, default=4, help="concurrent WeightsSubscribers")
    parser.add_argument("--streamed", type=int, default=100, help="trajectories streamed over gRPC")
    args = parser.parse_args()
    torch.set_num_threads(1)

    report = RichTable(title="spiral transport", show_lines=False)
    report.add_column("measure")
    report.add_column("value", justify="right")
    publisher = WeightsPublisher()
    with serve([policy_learner_binding(_Learner(publisher))], _cfg(), role=Role.POLICY_LEARNER, grace_seconds=0.2) as running:
        bench_trajectories(running.address, report, args.streamed)
    with Progress(console=console) as progress:
        bench_weights(AgentPreset.SMALL, args.versions, args.subscribers, report, progress)
        bench_weights(AgentPreset.PAPER, max(5, args.versions // 4), args.subscribers, report, progress)
    console.print(report)


if __name__ == "__main__":
    main()
