"""`helm lint --strict` and rendering of every test value set, through the real Helm v4 engine."""

from __future__ import annotations

from pathlib import Path

import helm_python as helm
import pytest

import chartkit


@pytest.mark.parametrize("value_set", chartkit.value_sets())
def test_lint_strict_passes_for_value_set(chart_dir: Path, value_set: str) -> None:
    report = helm.lint(chart_dir, chartkit.load_value_set(value_set), strict=True, namespace=chartkit.NAMESPACE, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 = warning, 3 = error
    assert not problems and not report["errors"], report


def test_lint_reports_schema_violation(chart_dir: Path) -> None:
    # The linter must actually look at values: a bad scope is an error finding, not a pass.
    report = helm.lint(chart_dir, {"rbac": {"scope": "everywhere"}}, strict=True)
    assert any(m["severity"] == 3 and "rbac/scope" in m["error"] for m in report["messages"]), report


@pytest.mark.parametrize("value_set", chartkit.value_sets())
def test_every_object_carries_standard_labels(rendered_sets: dict[str, chartkit.Rendered], value_set: str) -> None:
    for doc in rendered_sets[value_set].docs:
        labels = doc["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of", "helm.sh/chart"):
            assert key in labels, f"{doc['kind']}/{doc['metadata']['name']} lacks label {key}"


@pytest.mark.parametrize("value_set", chartkit.value_sets())
def test_names_are_dns_labels_of_at_most_63_chars(rendered_sets: dict[str, chartkit.Rendered], value_set: str) -> None:
    for doc in rendered_sets[value_set].docs:
        if doc["kind"] == "CustomResourceDefinition":
            continue  # "<plural>.<group>" is a DNS subdomain, fixed by the API
        name = doc["metadata"]["name"]
        assert len(name) <= 63 and not name.endswith("-"), f"{doc['kind']} name {name!r} ({len(name)} chars)"


def test_long_fullname_is_truncated_but_keeps_component_suffix(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    deployment = rendered_sets["pinned-image"].one("Deployment")
    name = deployment["metadata"]["name"]
    assert len(name) <= 63 and name.endswith("-operator"), name


def test_namespaced_objects_go_to_release_namespace(default_release: chartkit.Rendered) -> None:
    for doc in default_release.docs:
        if doc["kind"] in {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}:
            assert "namespace" not in doc["metadata"], doc["kind"]
        else:
            assert doc["metadata"]["namespace"] == chartkit.NAMESPACE, doc["kind"]
