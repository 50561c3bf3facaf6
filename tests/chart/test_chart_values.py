"""values.schema.json and the validateConfig helper reject wrong values with messages naming key and value."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

import chartkit

SCHEMA_CASES = [
    pytest.param({"rbac": {"scope": "clusterwide"}}, "at '/rbac/scope': value must be one of 'cluster', 'namespace'", id="rbac-scope-enum"),
    pytest.param({"metrics": {"serviceMonitor": {"enabeld": True}}}, "at '/metrics/serviceMonitor': additional properties 'enabeld' not allowed", id="typo-key"),
    pytest.param({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'", id="pull-policy"),
    pytest.param({"image": {"digest": "latest"}}, "at '/image/digest'", id="digest-format"),
    pytest.param({"alerts": {"throughputCollapse": {"ratio": 1.5}}}, "at '/alerts/throughputCollapse/ratio': exclusiveMaximum: got 1.5, want 1", id="ratio-above-1"),
    pytest.param({"alerts": {"policyLag": {"window": "5 minutes"}}}, "at '/alerts/policyLag/window': '5 minutes' does not match pattern", id="duration-format"),
    pytest.param({"alerts": {"learnerRestarts": {"maxRestarts": -1}}}, "at '/alerts/learnerRestarts/maxRestarts': minimum: got -1, want 0", id="negative-restarts"),
    pytest.param({"alerts": {"metricsAbsent": {"severity": "page"}}}, "at '/alerts/metricsAbsent/severity': value must be one of 'info', 'warning', 'critical'", id="severity-enum"),
    pytest.param({"logging": {"level": "trace"}}, "at '/logging/level': value must be one of 'debug', 'info', 'warning'", id="log-level"),
    pytest.param({"operator": {"metricsPort": 70000}}, "at '/operator/metricsPort': maximum: got 70,000, want 65,535", id="port-range"),
    pytest.param({"dashboards": {"enabled": "yes"}}, "at '/dashboards/enabled': got string, want boolean", id="bool-type"),
    pytest.param({"operator": {"watchNamespaces": ["Team_A"]}}, "at '/operator/watchNamespaces/0'", id="namespace-name"),
    pytest.param({"unknownTopLevel": 1}, "additional properties 'unknownTopLevel' not allowed", id="unknown-top-level"),
]


@pytest.mark.parametrize(("values", "message"), SCHEMA_CASES)
def test_schema_rejects_wrong_value(chart: helm.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        chartkit.render(chart, values)
    assert message in str(caught.value)


@pytest.mark.parametrize("value_set", chartkit.value_sets())
def test_schema_accepts_test_value_sets(chart: helm.Chart, value_set: str) -> None:
    chart.validate_schema(chartkit.load_value_set(value_set))


VALIDATE_CASES = [
    pytest.param(
        {"serviceAccount": {"create": False}},
        'serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false (got serviceAccount.name="")',
        id="existing-sa-without-name",
    ),
    pytest.param(
        {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
        "metrics.serviceMonitor.enabled=true needs metrics.service.enabled=true (got metrics.service.enabled=false)",
        id="servicemonitor-without-service",
    ),
    pytest.param(
        {"rbac": {"scope": "namespace"}, "operator": {"extraArgs": ["--all-namespaces"]}},
        'operator args contain "--all-namespaces" but rbac.scope is "namespace"',
        id="all-namespaces-with-role",
    ),
    pytest.param(
        {"operator": {"extraArgs": ["--metrics-port=9999"]}},
        'operator.extraArgs contains "--metrics-port=9999", which the chart already derives from operator.metricsPort',
        id="extra-args-repeat-derived-flag",
    ),
    pytest.param(
        {"operator": {"extraArgs": ["-q"]}},
        'operator.extraArgs contains "-q", which the chart already derives from logging.level',
        id="extra-args-repeat-short-flag",
    ),
    pytest.param(
        {"operator": {"watchNamespaces": ["team-a"]}},
        'operator.watchNamespaces=[team-a] is only used with rbac.scope=namespace (got rbac.scope="cluster")',
        id="watch-namespaces-with-cluster-scope",
    ),
    pytest.param(
        {"metrics": {"serviceMonitor": {"enabled": True, "interval": "30s", "scrapeTimeout": "2m"}}},
        "metrics.serviceMonitor.scrapeTimeout=2m exceeds metrics.serviceMonitor.interval=30s",
        id="timeout-above-interval",
    ),
    pytest.param(
        {"metrics": {"jobs": {"podMonitor": {"interval": "500ms", "scrapeTimeout": "1s"}}}},
        "metrics.jobs.podMonitor.scrapeTimeout=1s exceeds metrics.jobs.podMonitor.interval=500ms",
        id="podmonitor-timeout-ms",
    ),
    pytest.param(
        {"rbac": {"scope": "namespace"}, "operator": {"watchNamespaces": ["team-a"]}, "metrics": {"jobs": {"podMonitor": {"enabled": True, "namespaces": ["team-b"]}}}},
        'metrics.jobs.podMonitor.namespaces contains "team-b", which the operator does not watch with rbac.scope=namespace (watched: team-a)',
        id="podmonitor-namespace-not-watched",
    ),
]


@pytest.mark.parametrize(("values", "message"), VALIDATE_CASES)
def test_validate_config_fails_naming_key_and_value(chart: helm.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        chartkit.render(chart, values)
    assert message in str(caught.value)


def test_scrape_timeout_equal_to_interval_is_accepted(chart: helm.Chart) -> None:
    release = chartkit.render(chart, {"metrics": {"serviceMonitor": {"enabled": True, "interval": "1m", "scrapeTimeout": "60s"}}})
    assert release.one("ServiceMonitor")["spec"]["endpoints"][0]["scrapeTimeout"] == "60s"
