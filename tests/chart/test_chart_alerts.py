"""templates/monitoring: the PrometheusRule, its thresholds from values, and the same rules checked and
unit-tested by the real promtool (files/alerts/spiral-rules.yaml is what `promtool check rules` sees)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import helm_python as helm
import pytest
import yaml
from promkit import promql_metric_names, rule_queries

import chartkit

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
KNOWN = chartkit.known_metric_names()
ALERTS = {
    "SpiralThroughputCollapse", "SpiralPolicyLagHigh", "SpiralReplayRateLimiterStalled", "SpiralLearnerRestarting",
    "SpiralJobMetricsAbsent", "SpiralJobLearnerMetricsAbsent", "SpiralOperatorReconcileErrors",
}


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if not Path(PROMTOOL).exists():
        pytest.fail("promtool is not installed (Debian package `prometheus`)")
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_renders_a_prometheusrule_with_every_alert_when_enabled(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    rule = rendered_sets["monitoring"].one("PrometheusRule")
    names = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert names == ALERTS
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            assert alert["labels"]["team"] == "ml" and alert["labels"]["severity"] in {"warning", "critical"}
            assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_thresholds_come_from_values(chart: helm.Chart) -> None:
    rules = chartkit.alert_rules(chart, {"alerts": {
        "throughputCollapse": {"ratio": 0.25, "baselineOffset": "2h", "window": "15m"},
        "policyLag": {"maxVersions": 21},
        "operatorReconcileErrors": {"kinds": "unexpected", "maxErrorsPerSecond": 0.5},
    }})
    by_name = {q.name: q.expr for q in rule_queries(rules)}
    assert "< 0.25 * sum" in by_name["SpiralThroughputCollapse"] and "[15m] offset 2h" in by_name["SpiralThroughputCollapse"]
    assert by_name["SpiralPolicyLagHigh"].endswith("> 21")
    assert 'kind=~"unexpected"' in by_name["SpiralOperatorReconcileErrors"] and by_name["SpiralOperatorReconcileErrors"].endswith("> 0.5")


def test_disabled_alerts_are_left_out(chart: helm.Chart) -> None:
    rules = chartkit.alert_rules(chart, {"alerts": {"operatorReconcileErrors": {"enabled": False}, "policyLag": {"enabled": False}}})
    assert [g["name"] for g in rules["groups"]] == ["spiral.jobs"]
    assert "SpiralPolicyLagHigh" not in {q.name for q in rule_queries(rules)}


@pytest.mark.parametrize("query", rule_queries(yaml.safe_load(chartkit.RULES_FILE.read_text())), ids=lambda q: q.name)
def test_rule_names_only_exported_metrics(query) -> None:
    unknown = promql_metric_names(query.expr) - KNOWN
    assert not unknown, f"{query.name}: {sorted(unknown)} not exported (expr: {query.expr})"


def test_promtool_check_rules_passes_on_shipped_rules_file() -> None:
    result = _promtool("check", "rules", str(chartkit.RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_check_rules_rejects_a_broken_expression(tmp_path: Path) -> None:
    # Guards the check above: promtool must actually parse the PromQL.
    rules = yaml.safe_load(chartkit.RULES_FILE.read_text())
    rules["groups"][0]["rules"][0]["expr"] = "sum by (spiral_job (rate(x[5m]))"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(rules))
    assert _promtool("check", "rules", str(broken)).returncode != 0


def test_promtool_check_rules_passes_with_custom_thresholds(chart: helm.Chart, tmp_path: Path) -> None:
    rules = chartkit.alert_rules(chart, chartkit.load_value_set("monitoring"))
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def _expected(alert: str, labels: dict[str, str], value: str | None = None) -> dict:
    """An exp_alerts entry: ``labels`` plus the rule's annotations filled in with them and with the
    hand-computed, humanized ``value`` (so the test checks what the alert reports, not only that it fires)."""
    rules = yaml.safe_load(chartkit.RULES_FILE.read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == alert]
    annotations = {}
    for key, text in rule["annotations"].items():
        for name, label_value in labels.items():
            text = text.replace(f"{{{{ $labels.{name} }}}}", label_value)
        if value is not None:
            text = text.replace("{{ $value | humanize }}", value)
        assert "{{" not in text, f"{alert}.{key} still has a template: {text}"
        annotations[key] = text
    return {"exp_labels": {**labels, "severity": rule["labels"]["severity"]}, "exp_annotations": annotations}


def test_alerts_fire_on_synthetic_series(tmp_path: Path) -> None:
    """promtool's rule unit tests: each alert fires on series that break its rule, and stays quiet otherwise."""
    shutil.copy(chartkit.RULES_FILE, tmp_path / "spiral-rules.yaml")
    job = 'namespace="ml", spiral_job="mnist"'
    mnist = {"namespace": "ml", "spiral_job": "mnist"}
    tests = {
        "rule_files": ["spiral-rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {   # throughput: 600 frames/min for 2h, then 60/min; 1h ago it was 10/s.
                "interval": "1m",
                "input_series": [{"series": f'spiral_learner_frames_total{{{job}}}', "values": "0+600x120 72000+60x60"}],
                "alert_rule_test": [
                    {"eval_time": "110m", "alertname": "SpiralThroughputCollapse", "exp_alerts": []},
                    {"eval_time": "160m", "alertname": "SpiralThroughputCollapse",
                     "exp_alerts": [_expected("SpiralThroughputCollapse", mnist, "1")]},
                ],
            },
            {   # policy lag: each trajectory 10 versions behind (sum grows 10x the count).
                "interval": "1m",
                "input_series": [
                    {"series": f'spiral_learner_policy_lag_versions_sum{{{job}}}', "values": "0+100x60"},
                    {"series": f'spiral_learner_policy_lag_versions_count{{{job}}}', "values": "0+10x60"},
                ],
                "alert_rule_test": [{"eval_time": "40m", "alertname": "SpiralPolicyLagHigh",
                                     "exp_alerts": [_expected("SpiralPolicyLagHigh", mnist, "10")]}],
            },
            {   # replay: samplers blocked 1 s/s and no samples, on table "fakes" only.
                "interval": "1m",
                "input_series": [
                    {"series": f'spiral_replay_rate_limited_seconds_total{{{job}, table="fakes", side="sample"}}', "values": "0+60x40"},
                    {"series": f'spiral_replay_samples_total{{{job}, table="fakes"}}', "values": "100x40"},
                    {"series": f'spiral_replay_rate_limited_seconds_total{{{job}, table="reals", side="sample"}}', "values": "0+60x40"},
                    {"series": f'spiral_replay_samples_total{{{job}, table="reals"}}', "values": "0+50x40"},
                ],
                "alert_rule_test": [{"eval_time": "30m", "alertname": "SpiralReplayRateLimiterStalled",
                                     "exp_alerts": [_expected("SpiralReplayRateLimiterStalled", {**mnist, "table": "fakes"}, "1")]}],
            },
            {   # restarts: the counter (carried across processes in the checkpoint) steps 0→4 within the hour.
                "interval": "1m",
                "input_series": [{"series": f'spiral_learner_restarts_total{{{job}, role="policy-learner"}}', "values": "0x10 1x10 2x10 3x10 4x10"}],
                "alert_rule_test": [
                    {"eval_time": "25m", "alertname": "SpiralLearnerRestarting", "exp_alerts": []},
                    {"eval_time": "45m", "alertname": "SpiralLearnerRestarting",
                     "exp_alerts": [_expected("SpiralLearnerRestarting", {**mnist, "role": "policy-learner"}, "4")]},
                ],
            },
            {   # absent: the replay pod stops answering; the learner's series vanish while actors report.
                "interval": "1m",
                "input_series": [
                    {"series": f'up{{{job}, role="replay", pod="mnist-replay-0"}}', "values": "1x5 0x20"},
                    {"series": f'up{{{job}, role="actor", pod="mnist-actor-x"}}', "values": "1x25"},
                    {"series": f'spiral_actor_frames_total{{{job}, pod="mnist-actor-x"}}', "values": "0+10x25"},
                    {"series": f'spiral_learner_frames_total{{{job}, pod="mnist-policy-learner-0"}}', "values": "0+10x5 stale"},
                ],
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": "SpiralJobMetricsAbsent",
                     "exp_alerts": [_expected("SpiralJobMetricsAbsent", {**mnist, "role": "replay", "pod": "mnist-replay-0"})]},
                    {"eval_time": "20m", "alertname": "SpiralJobLearnerMetricsAbsent",
                     "exp_alerts": [_expected("SpiralJobLearnerMetricsAbsent", mnist)]},
                ],
            },
            {   # operator: steady permanent errors alert; temporary ones alone do not.
                "interval": "1m",
                "input_series": [
                    {"series": 'spiral_operator_reconcile_errors_total{handler="create", kind="permanent"}', "values": "0+3x40"},
                    {"series": 'spiral_operator_reconcile_errors_total{handler="update", kind="temporary"}', "values": "0+30x40"},
                ],
                "alert_rule_test": [{"eval_time": "30m", "alertname": "SpiralOperatorReconcileErrors",
                                     "exp_alerts": [_expected("SpiralOperatorReconcileErrors", {"handler": "create", "kind": "permanent"}, "50m")]}],  # 3/min
            },
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = _promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
