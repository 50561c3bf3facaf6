"""What ``spiral train`` shows while the services run: the policy learner's ``GetStatus`` plus a
few scalars scraped from its ``/metrics`` (policy lag, held-out L2), as one rich progress line.

:class:`LearnerPoller` does the I/O; :func:`summarise` is pure (two snapshots → the line's
numbers); :class:`TrainProgress` draws. The launcher (:mod:`spiral.launch.local`) drives them.
"""

from __future__ import annotations

import math
import time
import urllib.request
from typing import NamedTuple

import grpc
from prometheus_client.parser import text_string_to_metric_families
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from spiral.config import ServicesConfig
from spiral.services.client import create_channel
from spiral.v1 import PROTOCOL_VERSION, services_pb2_grpc, trajectory_pb2


class LearnerSnapshot(NamedTuple):
    """One poll of the policy learner; ``ok`` is False while it is unreachable (restarting)."""

    ok: bool
    time: float
    version: int = 0
    frames: int = 0
    updates: int = 0
    reward: float = math.nan
    train_l2: float = math.nan
    done: bool = False
    lag_sum: float = 0.0  # spiral_learner_policy_lag_versions_sum
    lag_count: float = 0.0
    held_out_l2: float = math.nan


class Summary(NamedTuple):
    """The numbers on the progress line."""

    frames_per_second: float
    updates: int
    frames: int
    reward: float
    train_l2: float
    held_out_l2: float
    policy_lag: float  # mean over the trajectories consumed since the previous snapshot


def parse_learner_metrics(text: str) -> dict[str, float]:
    """The lag histogram's sum/count and the held-out L2 from a ``/metrics`` page."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "spiral_learner_policy_lag_versions_sum":
                found["lag_sum"] = sample.value
            elif sample.name == "spiral_learner_policy_lag_versions_count":
                found["lag_count"] = sample.value
            elif sample.name == "spiral_learner_l2" and sample.labels.get("split") == "held_out":
                found["held_out_l2"] = sample.value
    return found


def summarise(previous: LearnerSnapshot | None, current: LearnerSnapshot) -> Summary:
    """Rates over the interval between two snapshots (NaN lag when no trajectory arrived)."""
    fps = 0.0
    lag = math.nan
    if previous is not None and previous.ok and current.ok and current.time > previous.time:
        fps = max(0, current.frames - previous.frames) / (current.time - previous.time)
        count = current.lag_count - previous.lag_count
        if count > 0:
            lag = (current.lag_sum - previous.lag_sum) / count
    return Summary(fps, current.updates, current.frames, current.reward, current.train_l2, current.held_out_l2, lag)


class LearnerPoller:
    """Polls one policy learner. Not thread-safe."""

    def __init__(self, address: str, metrics_port: int | None, cfg: ServicesConfig) -> None:
        self._channel = create_channel(address, cfg)
        self._stub = services_pb2_grpc.PolicyLearnerStub(self._channel)
        self._metrics_url = f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else None

    def poll(self, timeout: float = 1.0) -> LearnerSnapshot:
        now = time.monotonic()
        try:
            status = self._stub.GetStatus(trajectory_pb2.StatusRequest(protocol_version=PROTOCOL_VERSION), timeout=timeout)
        except grpc.RpcError:
            return LearnerSnapshot(ok=False, time=now)
        extra: dict[str, float] = {}
        if self._metrics_url is not None:
            try:
                with urllib.request.urlopen(self._metrics_url, timeout=timeout) as response:  # noqa: S310 - loopback URL we built
                    extra = parse_learner_metrics(response.read().decode())
            except OSError:
                pass
        return LearnerSnapshot(
            ok=True,
            time=now,
            version=status.version,
            frames=status.frames,
            updates=status.updates,
            reward=status.latest_reward,
            train_l2=status.latest_l2,
            done=status.done,
            **extra,
        )

    def close(self) -> None:
        self._channel.close()


def describe(summary: Summary, alive: int, expected: int) -> str:
    parts = [f"{summary.frames_per_second:6.0f} frames/s", f"reward {summary.reward:+.4f}"]
    if not math.isnan(summary.train_l2):
        parts.append(f"L2 {summary.train_l2:.4f}")
    if not math.isnan(summary.held_out_l2):
        parts.append(f"held-out L2 {summary.held_out_l2:.4f}")
    if not math.isnan(summary.policy_lag):
        parts.append(f"lag {summary.policy_lag:.1f}")
    parts.append(f"{alive}/{expected} processes")
    return " · ".join(parts)


class TrainProgress:
    """The progress bar of a multi-process run (budget in updates or frames)."""

    def __init__(self, total: int, unit: str, enabled: bool) -> None:
        self._unit = unit
        self._progress = Progress(
            TextColumn("[bold]spiral train[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not enabled,
        )
        self._task = self._progress.add_task("train", total=total, info="starting services…")
        self._previous: LearnerSnapshot | None = None
        self.last_summary: Summary | None = None

    def __enter__(self) -> "TrainProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)

    def update(self, snapshot: LearnerSnapshot, alive: int, expected: int) -> None:
        if not snapshot.ok:
            # Before its first answer: starting; afterwards: restarting or finished.
            info = "waiting for the policy learner…" if self.last_summary is None else describe(self.last_summary, alive, expected) + " · learner away"
            self._progress.update(self._task, info=info if self.last_summary else f"{info} {alive}/{expected} processes")
            return
        summary = summarise(self._previous, snapshot)
        self._previous = snapshot
        self.last_summary = summary
        done = snapshot.updates if self._unit == "updates" else snapshot.frames
        self._progress.update(self._task, completed=done, info=describe(summary, alive, expected))
