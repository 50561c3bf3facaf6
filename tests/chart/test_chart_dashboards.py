"""templates/dashboards and dashboards/*.json: sidecar ConfigMaps, templating, and every query names
only metrics that the services (spiral.metrics) and the operator (spiral_operator.metrics) export."""

from __future__ import annotations

import json

import helm_python as helm
import pytest
from spiral.metrics import create_metrics, registered_metric_names
from promkit import dashboard_queries, metric_family_names, promql_metric_names
from spiral_operator.metrics import create_operator_metrics, registered_operator_metric_names

import chartkit

DASHBOARDS = chartkit.dashboards()
QUERIES = [q for d in DASHBOARDS.values() for q in dashboard_queries(d)]
#: kube-state-metrics and Prometheus names are allowed explicitly (see EXTERNAL_METRICS and the chart README).
KNOWN = chartkit.known_metric_names()


def test_ships_training_and_operator_dashboards() -> None:
    assert set(DASHBOARDS) == {"training.json", "operator.json"}
    assert len({d["uid"] for d in DASHBOARDS.values()}) == 2


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{q.dashboard}:{q.panel}:{q.ref_id}")
def test_query_names_only_exported_metrics(query) -> None:
    names = promql_metric_names(query.expr)
    assert names, f"no metric found in {query.expr!r}"
    unknown = names - KNOWN
    assert not unknown, f"{query.panel}: {sorted(unknown)} not exported by spiral.metrics / spiral_operator.metrics (expr: {query.expr})"


def test_name_check_rejects_a_misspelt_metric() -> None:
    assert promql_metric_names("rate(spiral_actor_frame_total[5m])") - KNOWN == {"spiral_actor_frame_total"}
    # a counter's family name is not a series: only the _total (and _created) names are
    assert "spiral_actor_frames_total" in KNOWN and "spiral_actor_frames" not in KNOWN


def test_known_names_cover_the_registry_contract() -> None:
    # The check is built from the metric definitions; tie it to the shared registries' own listings.
    assert metric_family_names(create_metrics) <= registered_metric_names()
    assert metric_family_names(create_operator_metrics) <= registered_operator_metric_names()


def test_training_dashboard_covers_the_required_signals() -> None:
    used = {n for q in dashboard_queries(DASHBOARDS["training.json"]) for n in promql_metric_names(q.expr)}
    required = {
        "spiral_actor_frames_total", "spiral_learner_frames_total", "spiral_learner_episode_reward", "spiral_learner_l2",
        "spiral_discriminator_d_real", "spiral_discriminator_d_fake", "spiral_discriminator_loss", "spiral_learner_loss",
        "spiral_learner_queue_depth", "spiral_learner_policy_lag_versions_bucket", "spiral_actor_weight_age_seconds",
        "spiral_replay_size_items", "spiral_replay_inserts_total", "spiral_replay_samples_total",
        "spiral_replay_rate_limited_seconds_total", "spiral_learner_step_seconds_bucket", "spiral_learner_restarts_total",
        "kube_deployment_status_replicas_available", "kube_deployment_spec_replicas",
    }
    assert required <= used, sorted(required - used)
    step_quantiles = [q.expr for q in dashboard_queries(DASHBOARDS["training.json"]) if "spiral_learner_step_seconds_bucket" in q.expr]
    assert {e.split(",")[0] for e in step_quantiles} == {"histogram_quantile(0.5", "histogram_quantile(0.95", "histogram_quantile(0.99"}


def test_operator_dashboard_covers_rate_errors_latency_and_phases() -> None:
    used = {n for q in dashboard_queries(DASHBOARDS["operator.json"]) for n in promql_metric_names(q.expr)}
    assert used == {
        "spiral_operator_reconciles_total", "spiral_operator_reconcile_errors_total", "spiral_operator_reconcile_seconds_bucket", "spiral_operator_jobs",
        # The Population row: every per-member series the operator exports for a population parent.
        "spiral_operator_population_member_metric", "spiral_operator_population_member_updates", "spiral_operator_population_member_hyperparameter",
        "spiral_operator_population_member_exploits", "spiral_operator_population_member_source", "spiral_operator_population_best_member",
    }  # fmt: skip


def test_training_dashboard_is_templated_by_namespace_job_and_role() -> None:
    dashboard = DASHBOARDS["training.json"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "job", "role"} <= set(variables)
    for name in ("namespace", "job", "role"):
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    for query in dashboard_queries(dashboard):
        if query.is_variable:
            continue
        assert 'namespace=~"$namespace"' in query.expr, query.panel
        if "kube_deployment" not in query.expr:
            assert 'spiral_job=~"$job"' in query.expr, query.panel
        if any(n in query.expr for n in ("spiral_grpc_", "spiral_learner_restarts_total", "spiral_weights_published")):
            assert 'role=~"$role"' in query.expr, query.panel


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_use_the_datasource_variable_and_have_unique_ids(name: str) -> None:
    panels = DASHBOARDS[name]["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"] and panel.get("description"), panel["title"]


def test_no_dashboard_configmaps_by_default(default_release: chartkit.Rendered) -> None:
    assert not default_release.of_kind("ConfigMap")


def test_dashboards_ship_as_sidecar_configmaps_when_enabled(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    maps = rendered_sets["monitoring"].of_kind("ConfigMap")
    assert len(maps) == len(DASHBOARDS)
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"]["grafana_folder"] == "SPIRAL"
        assert config_map["metadata"]["namespace"] == "monitoring"
        ((key, text),) = config_map["data"].items()
        assert json.loads(text) == DASHBOARDS[key]  # byte-for-byte the shipped JSON, templates untouched


def test_sidecar_label_is_configurable(chart: helm.Chart) -> None:
    release = chartkit.render(chart, {"dashboards": {"enabled": True, "label": "grafana.com/dashboard", "labelValue": "spiral", "folder": ""}})
    for config_map in release.of_kind("ConfigMap"):
        assert config_map["metadata"]["labels"]["grafana.com/dashboard"] == "spiral"
        assert "grafana_folder" not in config_map["metadata"].get("annotations", {})
