"""The progress line's numbers: rates between two learner snapshots, and the /metrics scrape."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, generate_latest

from spiral.launch.progress import LearnerSnapshot, describe, parse_learner_metrics, summarise
from spiral.metrics import create_metrics


def test_summary_rates_come_from_the_interval_between_snapshots() -> None:
    a = LearnerSnapshot(ok=True, time=10.0, frames=1000, updates=5, lag_sum=4.0, lag_count=5)
    b = LearnerSnapshot(ok=True, time=12.0, frames=1600, updates=8, reward=-0.5, train_l2=0.04, lag_sum=10.0, lag_count=8)
    s = summarise(a, b)
    assert s.frames_per_second == 300.0 and s.updates == 8
    assert s.policy_lag == 2.0  # (10 − 4) / (8 − 5)
    assert "300 frames/s" in describe(s, 3, 3) and "lag 2.0" in describe(s, 3, 3) and "3/3 processes" in describe(s, 3, 3)
    first = summarise(None, b)
    assert first.frames_per_second == 0.0 and math.isnan(first.policy_lag)
    assert "lag" not in describe(first, 1, 3)


def test_learner_metrics_are_parsed_from_the_exposition_format() -> None:
    registry = CollectorRegistry()
    m = create_metrics(registry)
    for lag in (0, 1, 5):
        m.learner_policy_lag.labels("local").observe(lag)
    m.learner_l2.labels("local", "held_out").set(0.031)
    m.learner_l2.labels("local", "train").set(0.5)
    parsed = parse_learner_metrics(generate_latest(registry).decode())
    assert parsed == {"lag_sum": 6.0, "lag_count": 3.0, "held_out_l2": 0.031}
