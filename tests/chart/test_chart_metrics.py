"""templates/metrics: the operator metrics Service, its ServiceMonitor and the SpiralJob PodMonitor."""

from __future__ import annotations

import helm_python as helm

import chartkit


def test_metrics_service_targets_the_operator_metrics_port(default_release: chartkit.Rendered) -> None:
    service = default_release.one("Service")
    pod_labels = default_release.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]


def test_no_monitoring_objects_by_default(default_release: chartkit.Rendered) -> None:
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & set(default_release.kinds())


def test_renders_a_servicemonitor_when_metrics_servicemonitor_enabled(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    release = rendered_sets["monitoring"]
    monitor = release.one("ServiceMonitor")
    service = release.one("Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [chartkit.NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    # honorLabels keeps spiral_operator_jobs' own `namespace` label (the job's namespace).
    assert endpoint["honorLabels"] is True and endpoint["interval"] == "30s"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_renders_a_podmonitor_for_job_pods_when_enabled(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    monitor = rendered_sets["monitoring"].one("PodMonitor")
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"] == {"app.kubernetes.io/name": "spiral"}
    assert spec["selector"]["matchExpressions"] == [{"key": "spiral.dev/job-name", "operator": "Exists"}]
    assert spec["namespaceSelector"] == {"any": True}  # cluster scope
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["interval"] == "10s"
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert targets == {
        "spiral_job": ["__meta_kubernetes_pod_label_spiral_dev_job_name"],
        "role": ["__meta_kubernetes_pod_label_spiral_dev_role"],
    }


def test_podmonitor_does_not_select_the_operator_pod(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    release = rendered_sets["monitoring"]
    operator_labels = release.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = release.one("PodMonitor")["spec"]["selector"]
    required = [e["key"] for e in selector["matchExpressions"] if e["operator"] == "Exists"]
    assert not all(key in operator_labels for key in required)


def test_podmonitor_limited_to_listed_namespaces_in_namespace_scope(rendered_sets: dict[str, chartkit.Rendered], chart: helm.Chart) -> None:
    assert rendered_sets["namespaced"].one("PodMonitor")["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}
    release = chartkit.render(chart, {"rbac": {"scope": "namespace"}, "metrics": {"jobs": {"podMonitor": {"enabled": True}}}})
    assert release.one("PodMonitor")["spec"]["namespaceSelector"] == {"matchNames": [chartkit.NAMESPACE]}


def test_metrics_service_can_be_disabled(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    assert "Service" not in rendered_sets["existing-serviceaccount"].kinds()
