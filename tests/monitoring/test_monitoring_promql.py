"""The pure PromQL helpers of promkit (tests/promkit.py): metric-name extraction, Grafana variables, scrape config."""

from __future__ import annotations

import pytest
from promkit import (
    ScrapeTarget,
    dashboard_queries,
    grafana_to_promql,
    promql_metric_names,
    render_scrape_config,
    rule_queries,
)

NAME_CASES = [
    pytest.param("up", {"up"}, id="bare"),
    pytest.param('rate(spiral_a_total{role=~"x|y", method!="z"}[5m])', {"spiral_a_total"}, id="matchers-and-range"),
    pytest.param("sum by (le, spiral_job) (rate(h_bucket[1m]))", {"h_bucket"}, id="aggregation-by-before"),
    pytest.param("sum(rate(h_bucket[1m])) by (le)", {"h_bucket"}, id="aggregation-by-after"),
    pytest.param("a / on (ns) group_left (pod) b", {"a", "b"}, id="vector-matching"),
    pytest.param("x offset 1h > bool 3", {"x"}, id="offset-and-bool"),
    pytest.param('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}, id="string-args"),
    pytest.param("max_over_time(g[10m:1m]) unless count(c) > 1e3", {"g", "c"}, id="subquery-and-number"),
    pytest.param("histogram_quantile(0.95, sum by (le) (rate(spiral:recorded:rate5m[5m])))", {"spiral:recorded:rate5m"}, id="recording-rule-name"),
]


@pytest.mark.parametrize(("expr", "names"), NAME_CASES)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_promql_metric_names_refuses_name_matchers() -> None:
    with pytest.raises(ValueError, match="selects by __name__"):
        promql_metric_names('{__name__=~"spiral_.*"}')


def test_grafana_variables_become_regex_all_and_fixed_intervals() -> None:
    expr = 'rate(m{namespace=~"$namespace", d=~"${job}-actor"}[$__rate_interval])'
    assert grafana_to_promql(expr) == 'rate(m{namespace=~".*", d=~".*-actor"}[10s])'
    assert grafana_to_promql(expr, {"job": "mnist"}) == 'rate(m{namespace=~".*", d=~"mnist-actor"}[10s])'


def test_dashboard_queries_reads_targets_nested_rows_and_variables() -> None:
    dashboard = {
        "title": "T",
        "panels": [{"title": "p", "targets": [{"refId": "A", "expr": "a"}]},
                   {"type": "row", "title": "r", "panels": [{"title": "q", "targets": [{"refId": "B", "expr": "b"}]}]}],
        "templating": {"list": [{"type": "query", "name": "job", "query": {"query": 'label_values(c{x="1"}, spiral_job)'}},
                                {"type": "datasource", "name": "ds", "query": "prometheus"}]},
    }
    assert [(q.panel, q.expr, q.is_variable) for q in dashboard_queries(dashboard)] == [
        ("p", "a", False), ("q", "b", False), ("variable:job", 'c{x="1"}', True)]


def test_dashboard_queries_rejects_targets_without_expr() -> None:
    with pytest.raises(ValueError, match="panel 'p' target 'A' has no 'expr'"):
        dashboard_queries({"title": "T", "panels": [{"title": "p", "targets": [{"refId": "A"}]}]})


def test_rule_queries_lists_alerts_and_records() -> None:
    rules = {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "x > 1"}, {"record": "r:x", "expr": "sum(x)"}]}]}
    assert [(q.group, q.name, q.expr) for q in rule_queries(rules)] == [("g", "A", "x > 1"), ("g", "r:x", "sum(x)")]


def test_scrape_config_gives_each_target_its_labels() -> None:
    config = render_scrape_config([ScrapeTarget("127.0.0.1:1", {"role": "actor"}), ScrapeTarget("127.0.0.1:2")], scrape_interval_s=0.5)
    assert config["global"]["scrape_interval"] == "500ms"
    (job,) = config["scrape_configs"]
    assert job["honor_labels"] is True
    assert job["static_configs"] == [{"targets": ["127.0.0.1:1"], "labels": {"role": "actor"}}, {"targets": ["127.0.0.1:2"], "labels": {}}]


@pytest.mark.parametrize(("targets", "interval", "message"), [
    pytest.param([], 1.0, "targets is empty", id="no-targets"),
    pytest.param([ScrapeTarget("127.0.0.1:1")], 0.0, r"scrape_interval_s must be > 0 \(got 0.0\)", id="zero-interval"),
])
def test_scrape_config_rejects_bad_input(targets: list[ScrapeTarget], interval: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_scrape_config(targets, scrape_interval_s=interval)
