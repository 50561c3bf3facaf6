"""templates/rbac: least-privilege ClusterRole or per-namespace Roles, bound to the operator's ServiceAccount."""

from __future__ import annotations

import chartkit

#: The exact grants agreed with the operator (apiGroup, resource) → verbs. Anything more is a finding.
NAMESPACED_GRANTS = {
    ("spiral.dev", "spiraljobs"): {"get", "list", "watch", "patch", "update"},
    ("spiral.dev", "spiraljobs/status"): {"get", "patch", "update"},
    ("spiral.dev", "spiraljobs/scale"): {"get", "patch", "update"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("apps", "statefulsets"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "persistentvolumeclaims"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "pods"): {"get", "list", "watch", "delete"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create"},
    ("networking.k8s.io", "networkpolicies"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("monitoring.coreos.com", "servicemonitors"): {"get", "list", "watch", "create", "patch", "update", "delete"},
}
CRD_READ = {("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"}}


def grants(role: dict) -> dict[tuple[str, str], set[str]]:
    """Flatten PolicyRules to (apiGroup, resource) → verbs; wildcards fail loudly."""
    flat: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                flat.setdefault((group, resource), set()).update(rule["verbs"])
    return flat


def test_cluster_scope_grants_exactly_the_agreed_permissions(default_release: chartkit.Rendered) -> None:
    role = default_release.one("ClusterRole")
    assert grants(role) == {**NAMESPACED_GRANTS, **CRD_READ, ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"}}
    assert "Role" not in default_release.kinds()


def test_cluster_role_is_bound_to_the_operator_service_account(default_release: chartkit.Rendered) -> None:
    binding = default_release.one("ClusterRoleBinding")
    account = default_release.one("ServiceAccount")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": default_release.one("ClusterRole")["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": chartkit.NAMESPACE}]


def test_namespace_scope_renders_one_role_per_watched_namespace(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    release = rendered_sets["namespaced"]
    roles = release.of_kind("Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert grants(role) == {**NAMESPACED_GRANTS, ("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"}}
    bindings = release.of_kind("RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == chartkit.NAMESPACE  # the operator's own namespace


def test_namespace_scope_keeps_only_crd_read_cluster_wide(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    assert grants(rendered_sets["namespaced"].one("ClusterRole")) == CRD_READ


def test_rbac_create_false_renders_no_rbac(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    kinds = set(rendered_sets["existing-serviceaccount"].kinds())
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
