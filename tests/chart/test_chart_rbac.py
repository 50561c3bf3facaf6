"""templates/rbac: the operator's own REQUIRED_RULES, no more and no less, as a ClusterRole or per-namespace Roles.

The rules come from ``spiral_operator.rbac`` (via the generated files/rbac/operator-rules.yaml); here
the real Helm engine renders both scopes and the granted (apiGroup, resource, verb) triples are
compared with the operator's list, whatever the order of rules, resources or verbs.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import helm_python as helm
import pytest

import chartkit
from spiral_operator.rbac import REQUIRED_RULES, Grant, grants

RBAC_KINDS = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def rendered_grants(role: dict[str, Any]) -> set[Grant]:
    """The role's rules flattened to (apiGroup, resource, verb); wildcards and repeats fail loudly."""
    flat = Counter(
        Grant(group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    )
    assert not [g for g in flat if "*" in g], f"wildcards in {role['kind']} {role['metadata']['name']}"
    assert not [g for g, n in flat.items() if n > 1], f"a permission granted twice: {[g for g, n in flat.items() if n > 1]}"
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in role["rules"]), "resourceNames/nonResourceURLs are not expected"
    return set(flat)


def test_required_rules_are_nonempty_and_specific() -> None:
    # Guards the comparisons below against an empty or wildcard source list.
    assert len(grants()) >= 20
    assert not [g for g in grants() if "*" in g]


def test_cluster_scope_grants_exactly_the_operators_rules(default_release: chartkit.Rendered) -> None:
    role = default_release.one("ClusterRole")
    assert rendered_grants(role) == grants(REQUIRED_RULES)
    assert not {"Role", "RoleBinding"} & set(default_release.kinds())


@pytest.mark.parametrize(
    ("values", "namespaces"),
    [
        pytest.param(chartkit.load_value_set("namespaced"), ["team-a", "team-b"], id="watch-namespaces"),
        pytest.param({"rbac": {"scope": "namespace"}}, [chartkit.NAMESPACE], id="release-namespace"),
    ],
)
def test_namespace_scope_grants_exactly_the_operators_rules_per_namespace(chart: helm.Chart, values: dict[str, Any], namespaces: list[str]) -> None:
    release = chartkit.render(chart, values)
    roles = release.of_kind("Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == namespaces
    for role in roles:
        assert rendered_grants(role) == grants(REQUIRED_RULES)
    # Standalone Kopf with scanning off needs nothing cluster-wide: no peerings, no CRD or namespace reads.
    assert not {"ClusterRole", "ClusterRoleBinding"} & set(release.kinds())
    bindings = release.of_kind("RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == namespaces
    account = release.one("ServiceAccount")["metadata"]["name"]
    for binding in bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": roles[0]["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": chartkit.NAMESPACE}]  # the operator's own namespace


def test_cluster_role_is_bound_to_the_operator_service_account(default_release: chartkit.Rendered) -> None:
    binding = default_release.one("ClusterRoleBinding")
    account = default_release.one("ServiceAccount")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": default_release.one("ClusterRole")["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": chartkit.NAMESPACE}]


def test_rbac_create_false_renders_no_rbac(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    assert not set(rendered_sets["existing-serviceaccount"].kinds()) & RBAC_KINDS
