"""Every dashboard query and alert expression, evaluated by a real Prometheus scraping real SPIRAL
metric endpoints (for now the stand-in exporters of monitoring_targets.py).

Each expression must be valid PromQL; each dashboard panel must return data. The kube-state-metrics
panel (actors ready vs desired) can only be checked for validity here: nothing exports those series
without a cluster, so it is listed in EXTERNAL_ONLY and asserted to be empty rather than skipped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from spiral.metrics import create_metrics
from spiral.testing.prometheus import (
    EXTERNAL_METRICS,
    PrometheusError,
    PrometheusServer,
    ScrapeTarget,
    dashboard_queries,
    exported_sample_names,
    free_loopback_port,
    grafana_to_promql,
    promql_metric_names,
    rule_queries,
)
from spiral_operator.metrics import create_operator_metrics


REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "charts" / "spiral" / "files" / "alerts" / "spiral-rules.yaml"
DASHBOARD_FILES = sorted((REPO / "charts" / "spiral" / "dashboards").glob("*.json"))
QUERIES = [q for path in DASHBOARD_FILES for q in dashboard_queries(json.loads(path.read_text()))]
RULES = rule_queries(yaml.safe_load(RULES_FILE.read_text()))
KUBE_STATE_METRICS = {name for name, source in EXTERNAL_METRICS.items() if source == "kube-state-metrics"}


def _external_only(expr: str) -> bool:
    """True for queries that read only kube-state-metrics series (no data without a cluster)."""
    return promql_metric_names(expr) <= KUBE_STATE_METRICS


def test_every_target_is_up(prometheus: PrometheusServer, spiral_targets: list[ScrapeTarget]) -> None:
    health = prometheus.targets_health()
    assert len(health) == len(spiral_targets)
    assert all(t["health"] == "up" for t in health), [(t["scrapeUrl"], t["lastError"]) for t in health]


def test_every_exported_series_is_scraped(prometheus: PrometheusServer) -> None:
    names = {r["metric"]["__name__"] for r in prometheus.query('count by (__name__) ({__name__=~"spiral_.*"})').result}
    # _created is a timestamp OpenMetrics scrapes do not store as a series.
    expected = {n for n in exported_sample_names(create_metrics, create_operator_metrics) if not n.endswith("_created")}
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize("query", [q for q in QUERIES if not q.is_variable], ids=lambda q: f"{q.dashboard}:{q.panel}:{q.ref_id}")
def test_dashboard_panel_query_is_valid_and_returns_data(prometheus: PrometheusServer, query) -> None:
    result = prometheus.query(grafana_to_promql(query.expr))
    if _external_only(query.expr):
        assert not result.has_data  # kube-state-metrics is not running here; validity is all we can check
        return
    assert result.has_data, f"{query.panel} ({query.ref_id}) returned no data: {grafana_to_promql(query.expr)}"
    values = [float(sample["value"][1]) for sample in result.result]
    assert any(v == v for v in values), f"{query.panel}: only NaN: {values}"  # NaN != NaN


@pytest.mark.parametrize("query", [q for q in QUERIES if q.is_variable], ids=lambda q: f"{q.dashboard}:{q.panel}")
def test_dashboard_variable_query_returns_values(prometheus: PrometheusServer, query) -> None:
    assert prometheus.query(grafana_to_promql(query.expr)).has_data, query.expr


def test_role_variable_offers_every_grpc_role(prometheus: PrometheusServer) -> None:
    (role_query,) = [q for q in QUERIES if q.panel == "variable:role"]
    roles = {r["metric"]["role"] for r in prometheus.query(grafana_to_promql(role_query.expr)).result}
    assert {"policy-learner", "replay"} <= roles


def test_a_concrete_job_selection_filters(prometheus: PrometheusServer) -> None:
    (frames,) = [q for q in QUERIES if q.panel.startswith("Frames/s") and q.ref_id == "A"]
    assert prometheus.query(grafana_to_promql(frames.expr, {"job": "local", "namespace": "local"})).has_data
    assert not prometheus.query(grafana_to_promql(frames.expr, {"job": "no-such-job"})).has_data


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_alert_expression_is_valid(prometheus: PrometheusServer, rule) -> None:
    prometheus.query(rule.expr)  # raises PrometheusError with the parser's message if invalid


def test_rules_file_loads_and_evaluates_without_errors(prometheus: PrometheusServer) -> None:
    deadline = time.monotonic() + 15
    while True:
        rules = [r for g in prometheus.rules() for r in g["rules"]]
        evaluated = [r for r in rules if not r.get("lastEvaluation", "").startswith("0001-")]
        if len(evaluated) == len(RULES) or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # poll: rules evaluate every second
    assert {r["name"] for r in rules} == {r.name for r in RULES}
    assert len(evaluated) == len(RULES), "not every rule was evaluated within 15 s"
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]


def test_healthy_stand_in_fires_no_alert_but_scrape_and_learner_checks_hold(prometheus: PrometheusServer) -> None:
    # Everything is up and the learner reports: the absence alerts' expressions must be empty.
    by_name = {r.name: r.expr for r in RULES}
    assert not prometheus.query(by_name["SpiralJobMetricsAbsent"]).has_data
    assert not prometheus.query(by_name["SpiralJobLearnerMetricsAbsent"]).has_data


def test_invalid_expression_is_reported_with_prometheus_message(prometheus: PrometheusServer) -> None:
    with pytest.raises(PrometheusError, match="bad_data"):
        prometheus.query("sum by (spiral_job (rate(spiral_actor_frames_total[1m]))")


def test_server_reports_a_target_that_never_answers() -> None:
    dead = ScrapeTarget(f"127.0.0.1:{free_loopback_port()}")  # nothing listens there
    with PrometheusServer([dead], scrape_interval_s=0.2) as server:
        with pytest.raises(PrometheusError, match="not scraped 1 times"):
            server.wait_for_scrapes(count=1, timeout_s=1.5)
