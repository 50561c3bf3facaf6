"""Fixtures of the monitoring tests: a tiny real SPIRAL cluster, and one real Prometheus scraping it every second."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from promkit import PrometheusServer

import monitoring_targets

RULES_FILE = Path(__file__).resolve().parents[2] / "charts" / "spiral" / "files" / "alerts" / "spiral-rules.yaml"

#: "The run is training": in the last 10 s (the window `$__rate_interval` stands for) the policy
#: learner and the discriminator learner stepped, the replay buffer was sampled and actors played;
#: and the learner has evaluated on held-out images once. Dashboard queries are evaluated at the
#: instant these first all hold.
ACTIVITY = (
    'spiral_learner_l2{split="held_out"}',
    "increase(spiral_learner_updates_total[10s]) > 0",
    "increase(spiral_discriminator_updates_total[10s]) > 0",
    "increase(spiral_replay_samples_total[10s]) > 0",
    "increase(spiral_actor_frames_total[10s]) > 0",
)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[monitoring_targets.LocalRun]:
    with monitoring_targets.spiral_targets(tmp_path_factory.mktemp("monitoring")) as run:
        yield run


@pytest.fixture(scope="module")
def prometheus(local_run: monitoring_targets.LocalRun) -> Iterator[PrometheusServer]:
    """Prometheus with the chart's alert rules loaded, after four successful scrapes of every target
    (rate() over the 10 s that stands in for $__rate_interval then has several samples)."""
    with PrometheusServer(local_run.targets, scrape_interval_s=1.0, rule_files=[RULES_FILE]) as server:
        server.wait_for_scrapes(count=4, timeout_s=60)
        yield server


@pytest.fixture(scope="module")
def training_instant(prometheus: PrometheusServer) -> float:
    """The Unix time at which every ACTIVITY query first returned data (queries are evaluated there)."""
    return prometheus.wait_for_data(ACTIVITY, timeout_s=90)
