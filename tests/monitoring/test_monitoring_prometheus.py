"""Every dashboard query and alert expression, evaluated by a real Prometheus scraping the real
SPIRAL services of a tiny local run (replay, discriminator learner, policy learner, two actors; see
monitoring_targets.py) and the operator's metric definitions (a stand-in exporter: the operator
needs a Kubernetes API).

Each expression must be valid PromQL; each dashboard panel must return data, evaluated at the
instant the run was seen training (the ``training_instant`` fixture). The kube-state-metrics panel
(actors ready vs desired) can only be checked for validity here: nothing exports those series
without a cluster, so it is asserted to be empty rather than skipped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from spiral.metrics import create_metrics
from promkit import (
    EXTERNAL_METRICS,
    PrometheusError,
    PrometheusServer,
    QueryResult,
    ScrapeTarget,
    dashboard_queries,
    exported_sample_names,
    free_loopback_port,
    grafana_to_promql,
    promql_metric_names,
    rule_queries,
)
from spiral.config import Role
from spiral_operator.metrics import create_operator_metrics

from monitoring_targets import LOCAL_JOB, LOCAL_NAMESPACE, LocalRun


REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "charts" / "spiral" / "files" / "alerts" / "spiral-rules.yaml"
DASHBOARD_FILES = sorted((REPO / "charts" / "spiral" / "dashboards").glob("*.json"))
QUERIES = [q for path in DASHBOARD_FILES for q in dashboard_queries(json.loads(path.read_text()))]
RULES = rule_queries(yaml.safe_load(RULES_FILE.read_text()))
KUBE_STATE_METRICS = {name for name, source in EXTERNAL_METRICS.items() if source == "kube-state-metrics"}


def _external_only(expr: str) -> bool:
    """True for queries that read only kube-state-metrics series (no data without a cluster)."""
    return promql_metric_names(expr) <= KUBE_STATE_METRICS


def _data(result: QueryResult) -> list[float]:
    return [float(sample["value"][1]) for sample in result.result]


def test_every_target_is_up_and_serves_every_role(prometheus: PrometheusServer, local_run: LocalRun) -> None:
    health = prometheus.targets_health()
    assert len(health) == len(local_run.targets) == len(local_run.cluster.plan.all) + 1  # + the operator
    assert all(t["health"] == "up" for t in health), [(t["scrapeUrl"], t["lastError"]) for t in health]
    # Every real service process is its own target, labelled as the PodMonitor would.
    roles = {t["labels"].get("role") for t in health if t["labels"].get("spiral_job") == LOCAL_JOB}
    assert roles == {role.value for role in Role}
    assert all(c.alive for c in local_run.cluster.children.values()), {n: c.exit_code for n, c in local_run.cluster.children.items()}


#: Series this conditional run cannot export, and the test that shows them exported where they apply.
NOT_IN_A_CONDITIONAL_RUN = {
    # Unconditional MNIST only (the digit classifier scores samples, not reconstructions).
    "spiral_learner_digit_confident": "tests/learning/test_eval_cli.py::test_the_policy_learner_exports_the_digit_score_it_evaluates",
}


def test_every_exported_series_is_scraped(prometheus: PrometheusServer, training_instant: float) -> None:
    names = {r["metric"]["__name__"] for r in prometheus.query('count by (__name__) ({__name__=~"spiral_.*"})', at=training_instant).result}
    # _created is a timestamp OpenMetrics scrapes do not store as a series.
    exported = {n for n in exported_sample_names(create_metrics, create_operator_metrics) if not n.endswith("_created")}
    assert set(NOT_IN_A_CONDITIONAL_RUN) <= exported  # a renamed metric must not leave a stale exemption
    expected = exported - set(NOT_IN_A_CONDITIONAL_RUN)
    assert expected <= names, sorted(expected - names)
    assert not names & set(NOT_IN_A_CONDITIONAL_RUN)  # the exemption is real: this run has no digit score


@pytest.mark.parametrize("query", [q for q in QUERIES if not q.is_variable], ids=lambda q: f"{q.dashboard}:{q.panel}:{q.ref_id}")
def test_dashboard_panel_query_is_valid_and_returns_data(prometheus: PrometheusServer, training_instant: float, query) -> None:
    result = prometheus.query(grafana_to_promql(query.expr), at=training_instant)
    if _external_only(query.expr):
        assert not result.has_data  # kube-state-metrics is not running here; validity is all we can check
        return
    assert result.has_data, f"{query.panel} ({query.ref_id}) returned no data: {grafana_to_promql(query.expr)}"
    values = _data(result)
    assert any(v == v for v in values), f"{query.panel}: only NaN: {values}"  # NaN != NaN


@pytest.mark.parametrize("query", [q for q in QUERIES if q.is_variable], ids=lambda q: f"{q.dashboard}:{q.panel}")
def test_dashboard_variable_query_returns_values(prometheus: PrometheusServer, training_instant: float, query) -> None:
    assert prometheus.query(grafana_to_promql(query.expr), at=training_instant).has_data, query.expr


def test_role_variable_offers_every_running_role(prometheus: PrometheusServer, training_instant: float) -> None:
    # Read from the targets' `role` label: the discriminator learner serves one endless weights
    # stream, so it has no finished call in spiral_grpc_requests_total to take its role from.
    (role_query,) = [q for q in QUERIES if q.panel == "variable:role"]
    result = prometheus.query(grafana_to_promql(role_query.expr), at=training_instant).result
    roles = {r["metric"]["role"] for r in result if "role" in r["metric"]}  # label_values skips series without it (the operator's)
    assert roles == {role.value for role in Role}


def test_a_concrete_job_selection_filters(prometheus: PrometheusServer, training_instant: float) -> None:
    (frames,) = [q for q in QUERIES if q.panel.startswith("Frames/s") and q.ref_id == "A"]
    selected = prometheus.query(grafana_to_promql(frames.expr, {"job": LOCAL_JOB, "namespace": LOCAL_NAMESPACE}), at=training_instant)
    assert selected.has_data and all(v > 0 for v in _data(selected))  # the actors are playing
    assert not prometheus.query(grafana_to_promql(frames.expr, {"job": "no-such-job"}), at=training_instant).has_data


def test_training_panels_show_the_real_run(prometheus: PrometheusServer, training_instant: float) -> None:
    """Values only a real run produces: both learners step, versions advance, D outputs are finite."""

    def panel(title_start: str, ref_id: str = "A") -> list[float]:
        (query,) = [q for q in QUERIES if q.panel.startswith(title_start) and q.ref_id == ref_id]
        return _data(prometheus.query(grafana_to_promql(query.expr), at=training_instant))

    assert all(v > 0 for v in panel("Updates/s", "A") + panel("Updates/s", "B"))  # policy and critic steps
    assert all(v >= 1 for v in panel("Published versions", "A") + panel("Published versions", "B"))
    d_real, d_fake = panel("Discriminator D(real)", "A"), panel("Discriminator D(real)", "B")
    assert len(d_real) == len(d_fake) == 1 and all(abs(v) < 1e6 for v in d_real + d_fake)
    # The learner's queue holds at most learner.queue_size (1) trajectories.
    assert 0 <= max(panel("Learner queue depth")) <= 1
    (l2,) = [q for q in QUERIES if q.panel.startswith("L2 to target")]
    splits = {r["metric"]["split"] for r in prometheus.query(grafana_to_promql(l2.expr), at=training_instant).result}
    assert splits == {"train", "held_out"}


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


def test_healthy_run_fires_no_absence_alert(prometheus: PrometheusServer, training_instant: float) -> None:
    # Everything is up and the learner reports: the absence alerts' expressions must be empty.
    by_name = {r.name: r.expr for r in RULES}
    assert not prometheus.query(by_name["SpiralJobMetricsAbsent"], at=training_instant).has_data
    assert not prometheus.query(by_name["SpiralJobLearnerMetricsAbsent"], at=training_instant).has_data


def test_invalid_expression_is_reported_with_prometheus_message(prometheus: PrometheusServer) -> None:
    with pytest.raises(PrometheusError, match="bad_data"):
        prometheus.query("sum by (spiral_job (rate(spiral_actor_frames_total[1m]))")


def test_server_reports_a_target_that_never_answers() -> None:
    dead = ScrapeTarget(f"127.0.0.1:{free_loopback_port()}")  # nothing listens there
    with PrometheusServer([dead], scrape_interval_s=0.2) as server:
        with pytest.raises(PrometheusError, match="not scraped 1 times"):
            server.wait_for_scrapes(count=1, timeout_s=1.5)
