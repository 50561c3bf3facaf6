"""The progress figures of a multi-process run: from one learner snapshot, and the /metrics scrape.

Rates are no longer computed between two polls (that alternated between 0 and several times the
truth, issue 13): they come from :class:`spiral.progress.RateWindow`, tested in tests/ux/."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, generate_latest

from spiral.launch.progress import LearnerSnapshot, figures_from_snapshot, parse_learner_metrics
from spiral.learning.budget import Budget
from spiral.metrics import create_metrics
from spiral.progress import log_line


def test_figures_come_from_one_snapshot_with_the_lifetime_mean_lag() -> None:
    b = LearnerSnapshot(ok=True, time=12.0, frames=1600, updates=8, reward=-0.5, train_l2=0.04, lag_sum=10.0, lag_count=8)
    f = figures_from_snapshot(b, held_out_l2=0.06, blank_l2=0.08, alive=3, expected=3)
    assert (f.updates, f.frames) == (8, 1600) and f.policy_lag == 1.25  # 10 / 8
    assert f.held_out_l2 == 0.06 and f.blank_l2 == 0.08 and not f.learner_away
    line = log_line(f, Budget(10, "updates"), 300.0, 6.0, 20.0)
    assert "300 frames/s" in line and "lag 1.2" in line and "3/3 processes" in line and "75% of blank" in line
    first = figures_from_snapshot(LearnerSnapshot(ok=True, time=1.0))
    assert math.isnan(first.policy_lag) and "lag" not in log_line(first, Budget(10, "updates"), math.nan, math.nan, 0.0)
    away = figures_from_snapshot(LearnerSnapshot(ok=False, time=2.0))
    assert away.learner_away


def test_learner_metrics_are_parsed_from_the_exposition_format() -> None:
    registry = CollectorRegistry()
    m = create_metrics(registry)
    for lag in (0, 1, 5):
        m.learner_policy_lag.labels("local").observe(lag)
    m.learner_l2.labels("local", "held_out").set(0.031)
    m.learner_l2.labels("local", "train").set(0.5)
    parsed = parse_learner_metrics(generate_latest(registry).decode())
    assert parsed == {"lag_sum": 6.0, "lag_count": 3.0, "held_out_l2": 0.031}
