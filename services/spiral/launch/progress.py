"""Where the multi-process ``spiral train`` gets its progress figures: the policy learner.

:class:`LearnerPoller` reads the policy learner's ``GetStatus`` plus a few scalars scraped from its
``/metrics`` (policy lag, held-out L2); :func:`figures_from_snapshot` is pure (a snapshot → the
figures of :class:`spiral.progress.TrainProgress`, the one display both trainers use).
"""

from __future__ import annotations

import math
import time
import urllib.request
from typing import NamedTuple

import grpc
from prometheus_client.parser import text_string_to_metric_families

from spiral.config import ServicesConfig
from spiral.progress import ProgressFigures
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
    pretrain_updates: int = 0


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


def figures_from_snapshot(
    snapshot: LearnerSnapshot,
    held_out_l2: float = math.nan,
    blank_l2: float = math.nan,
    *,
    alive: int | None = None,
    expected: int | None = None,
    pretrain_total: int = 0,
) -> ProgressFigures:
    """The progress display's figures from one poll of the policy learner.

    ``blank_l2`` comes from the run log's evaluations (the learner does not export it); the policy
    lag is the mean over the learner's whole life (``_sum / _count``), which does not jump about
    between polls. A snapshot that is not ``ok`` marks the learner as away.
    """
    lag = snapshot.lag_sum / snapshot.lag_count if snapshot.lag_count > 0 else math.nan
    held_out = snapshot.held_out_l2 if not math.isnan(snapshot.held_out_l2) else held_out_l2
    return ProgressFigures(
        updates=snapshot.updates,
        frames=snapshot.frames,
        reward=snapshot.reward,
        train_l2=snapshot.train_l2,
        held_out_l2=held_out,
        blank_l2=blank_l2,
        policy_lag=lag,
        alive=alive,
        expected=expected,
        learner_away=not snapshot.ok,
        pretrain_updates=snapshot.pretrain_updates,
        pretrain_total=pretrain_total,
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
            pretrain_updates=status.pretrain_updates,
            **extra,
        )

    def close(self) -> None:
        self._channel.close()
