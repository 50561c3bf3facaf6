"""templates/operator: Deployment and ServiceAccount (image, args, probes, hardening, scheduling)."""

from __future__ import annotations

import helm_python as helm

import chartkit


def _container(release: chartkit.Rendered) -> dict:
    (container,) = chartkit.containers(release.one("Deployment"))
    return container


def test_runs_spiral_operator_from_the_project_image(default_release: chartkit.Rendered) -> None:
    container = _container(default_release)
    assert container["command"] == ["spiral-operator"]
    assert container["image"] == "ghcr.io/spiral-k8s/spiral:0.1.0"  # tag defaults to appVersion
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SPIRAL_IMAGE"] == container["image"]


def test_cluster_scope_watches_all_namespaces(default_release: chartkit.Rendered) -> None:
    args = _container(default_release)["args"]
    assert "--all-namespaces" in args and not any(a.startswith("--namespace") for a in args)
    assert "--liveness=http://0.0.0.0:8081/healthz" in args and "--log-format=json" in args


def test_namespace_scope_watches_listed_namespaces_with_debug_logging(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    args = _container(rendered_sets["namespaced"])["args"]
    assert args[:2] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--all-namespaces" not in args and "--debug" in args and "--log-format=plain" in args


def test_namespace_scope_defaults_to_release_namespace(chart: helm.Chart) -> None:
    args = _container(chartkit.render(chart, {"rbac": {"scope": "namespace"}}))["args"]
    assert f"--namespace={chartkit.NAMESPACE}" in args


def test_explicit_args_replace_derived_ones(chart: helm.Chart) -> None:
    args = _container(chartkit.render(chart, {"operator": {"args": ["--standalone", "-A"]}}))["args"]
    assert args == ["--standalone", "-A"]


def test_digest_pins_image_and_pull_settings_apply(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    release = rendered_sets["pinned-image"]
    container = _container(release)
    assert container["image"] == "registry.example.com/ml/spiral@sha256:" + "0123456789abcdef" * 4
    assert container["imagePullPolicy"] == "Always"
    pod = release.one("Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["tolerations"][0]["key"] == "dedicated" and pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert container["args"][-1] == "--standalone"
    assert {"name": "SPIRAL_LOG_EXTRA", "value": "1"} in container["env"]


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
