"""Fixtures of the monitoring tests: SPIRAL metric targets and one real Prometheus scraping them every second."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from spiral.testing.prometheus import PrometheusServer, ScrapeTarget

import monitoring_targets

RULES_FILE = Path(__file__).resolve().parents[2] / "charts" / "spiral" / "files" / "alerts" / "spiral-rules.yaml"


@pytest.fixture(scope="session")
def spiral_targets() -> Iterator[list[ScrapeTarget]]:
    with monitoring_targets.spiral_targets() as targets:
        yield targets


@pytest.fixture(scope="session")
def prometheus(spiral_targets: list[ScrapeTarget]) -> Iterator[PrometheusServer]:
    """Prometheus with the chart's alert rules loaded, after four successful scrapes of every target
    (rate() over the 10 s that stands in for $__rate_interval then has several samples)."""
    with PrometheusServer(spiral_targets, scrape_interval_s=1.0, rule_files=[RULES_FILE]) as server:
        server.wait_for_scrapes(count=4, timeout_s=30)
        yield server
