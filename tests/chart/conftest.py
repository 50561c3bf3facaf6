"""Fixtures of the chart tests: the chart loaded once by the real Helm engine, and each test value set rendered once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import helm_python as helm
import pytest

import chartkit


@pytest.fixture(scope="session")
def chart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chartkit.prepare_chart(tmp_path_factory.mktemp("chart"))


@pytest.fixture(scope="session")
def chart(chart_dir: Path) -> Iterator[helm.Chart]:
    with helm.Chart.load(chart_dir) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def rendered_sets(chart: helm.Chart) -> dict[str, chartkit.Rendered]:
    """Every value set in tests/chart/values rendered once (name → release)."""
    return {name: chartkit.render(chart, chartkit.load_value_set(name)) for name in chartkit.value_sets()}


@pytest.fixture(scope="session")
def default_release(rendered_sets: dict[str, chartkit.Rendered]) -> chartkit.Rendered:
    return rendered_sets["default"]
