"""What ``spiral train`` shows while it trains: one rich progress line, for both trainers.

Multi-process runs: :class:`LearnerPoller` reads the policy learner's ``GetStatus`` plus a few
scalars scraped from its ``/metrics`` (policy lag, held-out L2); :func:`summarise` is pure (two
snapshots → the line's numbers). ``--single-process`` runs: :func:`summary_from_record` turns the
trainer's last update record and evaluation into the same numbers. :class:`TrainProgress` draws
either; the launcher (:mod:`spiral.launch.local`) and the single-process trainer drive it.
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections.abc import Mapping
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
    """The numbers on the progress line (NaN: not known, not shown)."""

    frames_per_second: float
    updates: int
    frames: int
    reward: float
    train_l2: float
    held_out_l2: float
    policy_lag: float  # mean over the trajectories consumed since the previous snapshot
    blank_l2: float = math.nan  # the blank canvas's held-out L2, beside the agent's
    d_real: float = math.nan  # the critic's mean output on real images
    d_fake: float = math.nan  # … and on painted canvases


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


def summary_from_record(record: Mapping[str, float], evaluation: Mapping[str, float], updates: int, frames: int) -> Summary:
    """The progress line's numbers from the single-process trainer's last update record (the keys
    of :meth:`~spiral.learning.updates.PolicyUpdateStats.as_record`) and its last evaluation."""
    nan = math.nan
    return Summary(
        frames_per_second=record.get("charts/frames_per_second", 0.0),
        updates=updates,
        frames=frames,
        reward=record.get("charts/episode_reward", nan),
        train_l2=record.get("charts/train_l2", nan),
        held_out_l2=evaluation.get("eval/held_out_l2", nan),
        policy_lag=nan,  # always 0 in one process: not worth the space
        blank_l2=evaluation.get("eval/blank_l2", nan),
        d_real=record.get("charts/d_real", nan),
        d_fake=record.get("charts/d_fake", nan),
    )


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


def describe(summary: Summary, alive: int | None = None, expected: int | None = None) -> str:
    """The progress line's text; the process count only for multi-process runs."""
    parts = [f"{summary.frames_per_second:6.0f} frames/s", f"reward {summary.reward:+.4f}"]
    if not math.isnan(summary.train_l2):
        parts.append(f"L2 {summary.train_l2:.4f}")
    if not math.isnan(summary.held_out_l2):
        blank = "" if math.isnan(summary.blank_l2) else f" (blank {summary.blank_l2:.4f})"
        parts.append(f"held-out L2 {summary.held_out_l2:.4f}{blank}")
    if not math.isnan(summary.d_real):
        parts.append(f"D(real) {summary.d_real:+.2f} D(fake) {summary.d_fake:+.2f}")
    if not math.isnan(summary.policy_lag):
        parts.append(f"lag {summary.policy_lag:.1f}")
    if alive is not None:
        parts.append(f"{alive}/{expected} processes")
    return " · ".join(parts)


class TrainProgress:
    """The progress bar of a run (budget in updates or frames), fed by :meth:`update` with the
    policy learner's snapshots (multi-process) or by :meth:`show` with a summary (single-process).
    Not thread-safe."""

    def __init__(self, total: int, unit: str, enabled: bool, *, completed: int = 0, info: str = "starting services…") -> None:
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
        self._task = self._progress.add_task("train", total=total, completed=completed, info=info)
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
        self.show(summary, alive, expected)

    def show(self, summary: Summary, alive: int | None = None, expected: int | None = None) -> None:
        """Advance the bar to ``summary``'s updates or frames and show its numbers."""
        self.last_summary = summary
        done = summary.updates if self._unit == "updates" else summary.frames
        self._progress.update(self._task, completed=done, info=describe(summary, alive, expected))
