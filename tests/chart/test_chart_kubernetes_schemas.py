"""Every rendered manifest validates: Kubernetes kinds against the official schemas (strict, so unknown
fields fail), Prometheus Operator CRs against a structural schema of monitoring.coreos.com/v1."""

from __future__ import annotations

import json

import jsonschema
import kubernetes_validate
import pytest

import chartkit

MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
_MONITORING_SCHEMAS = json.loads((chartkit.SCHEMAS_DIR / "monitoring.coreos.com-v1.json").read_text())


@pytest.mark.parametrize("kube_version", chartkit.KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", chartkit.value_sets())
def test_kubernetes_manifests_validate_strictly(rendered_sets: dict[str, chartkit.Rendered], value_set: str, kube_version: str) -> None:
    docs = [d for d in rendered_sets[value_set].docs if d["apiVersion"] != "monitoring.coreos.com/v1"]
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{value_set}: {doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {kube_version}: {err.message} at {list(err.path)}")


def test_strict_validation_catches_an_unknown_field(default_release: chartkit.Rendered) -> None:
    # Guards the test above: a misspelt field must not pass silently.
    deployment = json.loads(json.dumps(default_release.one("Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, chartkit.KUBE_VERSIONS[-1], strict=True)


def test_monitoring_value_set_renders_all_prometheus_operator_kinds(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    assert set(MONITORING_KINDS) <= set(rendered_sets["monitoring"].kinds())


@pytest.mark.parametrize("value_set", chartkit.value_sets())
def test_prometheus_operator_objects_match_their_structure(rendered_sets: dict[str, chartkit.Rendered], value_set: str) -> None:
    for doc in rendered_sets[value_set].docs:
        if doc["apiVersion"] != "monitoring.coreos.com/v1":
            continue
        assert doc["kind"] in MONITORING_KINDS, doc["kind"]
        errors = sorted(jsonschema.Draft7Validator(_MONITORING_SCHEMAS[doc["kind"]]).iter_errors(doc), key=str)
        assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_structure_check_rejects_a_misplaced_field(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    monitor = json.loads(json.dumps(rendered_sets["monitoring"].one("ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["honourLabels"] = True
    assert not jsonschema.Draft7Validator(_MONITORING_SCHEMAS["ServiceMonitor"]).is_valid(monitor)
