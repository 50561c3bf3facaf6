"""templates/operator: Deployment and ServiceAccount (image, args, probes, hardening, scheduling)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import helm_python as helm
import pytest

import chartkit
from spiral_operator.__main__ import parse_args


def _container(release: chartkit.Rendered) -> dict:
    (container,) = chartkit.containers(release.one("Deployment"))
    return container


def test_runs_spiral_operator_from_the_project_image(default_release: chartkit.Rendered) -> None:
    container = _container(default_release)
    assert container["command"] == ["spiral-operator"]
    assert container["image"] == "ghcr.io/spiral-k8s/spiral:0.1.0"  # tag defaults to appVersion
    # spiral-operator reads no environment of its own: everything is a flag.
    assert "env" not in container


def test_cluster_scope_watches_all_namespaces(default_release: chartkit.Rendered) -> None:
    args = _container(default_release)["args"]
    assert "--all-namespaces" in args and not any(a.startswith("--namespace") for a in args)
    assert "--liveness=http://0.0.0.0:8081/healthz" in args and "--log-format=json" in args and "--metrics-port=8080" in args


# --------------------------------------------------- the rendered args against the real CLI ---

ARG_CASES = [pytest.param(chartkit.load_value_set(name), id=name) for name in chartkit.value_sets()] + [
    pytest.param({"rbac": {"scope": "namespace"}, "logging": {"level": "warning"}}, id="namespace-quiet"),
    pytest.param({"operator": {"metricsPort": 9100, "healthPort": 9101}}, id="custom-ports"),
]


@pytest.mark.parametrize("values", ARG_CASES)
def test_spiral_operator_accepts_the_rendered_args_and_they_match_the_pod(chart: helm.Chart, values: dict[str, Any]) -> None:
    """The operator's own parser takes the args as rendered, and what it parses agrees with the
    container ports, the probes, the RBAC scope and the logging values."""
    release = chartkit.render(chart, values)
    container = _container(release)
    args = parse_args(container["args"])  # SystemExit (test error) on a flag spiral-operator does not know

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert args.metrics_port == ports["metrics"]
    liveness = urlsplit(args.liveness)
    assert liveness.port == ports["health"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": liveness.path, "port": "health"}

    if values.get("rbac", {}).get("scope", "cluster") == "cluster":
        assert args.all_namespaces and not args.namespace
    else:
        assert not args.all_namespaces
        assert args.namespace == values.get("operator", {}).get("watchNamespaces", [chartkit.NAMESPACE])
    if values.get("rbac", {}).get("create", True):  # the Roles, if any, cover exactly the watched namespaces
        assert sorted(args.namespace) == sorted(r["metadata"]["namespace"] for r in release.of_kind("Role"))

    log_values = {"level": "info", "format": "json", **values.get("logging", {})}
    assert args.log_format == log_values["format"]
    assert (args.debug, args.quiet) == (log_values["level"] == "debug", log_values["level"] == "warning")


def test_spiral_operator_rejects_an_unknown_flag_the_chart_could_pass(chart: helm.Chart, capsys: pytest.CaptureFixture[str]) -> None:
    # The parser the test above relies on really refuses what the operator would refuse at start-up.
    args = _container(chartkit.render(chart, {"operator": {"extraArgs": ["--standalone"]}}))["args"]
    with pytest.raises(SystemExit):
        parse_args(args)
    assert "unrecognized arguments: --standalone" in capsys.readouterr().err


def test_namespace_scope_watches_listed_namespaces_with_debug_logging(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    args = _container(rendered_sets["namespaced"])["args"]
    assert args[:2] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--all-namespaces" not in args and "--debug" in args and "--log-format=plain" in args


def test_namespace_scope_defaults_to_release_namespace(chart: helm.Chart) -> None:
    args = _container(chartkit.render(chart, {"rbac": {"scope": "namespace"}}))["args"]
    assert f"--namespace={chartkit.NAMESPACE}" in args


def test_explicit_args_replace_derived_ones(chart: helm.Chart) -> None:
    args = _container(chartkit.render(chart, {"operator": {"args": ["-A", "--monitor-interval=30"]}}))["args"]
    assert args == ["-A", "--monitor-interval=30"]


def test_digest_pins_image_and_pull_settings_apply(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    release = rendered_sets["pinned-image"]
    container = _container(release)
    assert container["image"] == "registry.example.com/ml/spiral@sha256:" + "0123456789abcdef" * 4
    assert container["imagePullPolicy"] == "Always"
    pod = release.one("Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["tolerations"][0]["key"] == "dedicated" and pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert container["args"][-1] == "--monitor-interval=30"
    assert container["env"] == [{"name": "SPIRAL_LOG_EXTRA", "value": "1"}]


def test_security_context_is_hardened(default_release: chartkit.Rendered) -> None:
    pod = default_release.one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = pod["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # A read-only root still needs a writable /tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]


def test_resources_and_probes_are_set(default_release: chartkit.Rendered) -> None:
    container = _container(default_release)
    assert container["resources"]["limits"]["memory"] == "256Mi" and container["resources"]["requests"]["cpu"] == "100m"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}


def test_single_replica_with_recreate_strategy(default_release: chartkit.Rendered) -> None:
    spec = default_release.one("Deployment")["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_service_account_created_and_used(default_release: chartkit.Rendered) -> None:
    account = default_release.one("ServiceAccount")
    pod = default_release.one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_existing_service_account_is_used_without_creating_one(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    release = rendered_sets["existing-serviceaccount"]
    assert "ServiceAccount" not in release.kinds()
    assert release.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-provided-spiral"


def test_notes_tell_how_to_submit_watch_and_scale_the_example(default_release: chartkit.Rendered) -> None:
    notes = default_release.notes
    assert "kubectl apply -n spiral-system -f examples/spiraljob.yaml" in notes
    assert "kubectl get spiraljobs -w" in notes
    assert "kubectl scale spiraljob/<name> --replicas=8" in notes
