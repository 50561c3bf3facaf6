"""The operator's least-privilege RBAC: the one list of what it may do in the API.

:data:`REQUIRED_RULES` is the source of truth. ``python -m spiral_operator.rbac`` writes it as
``charts/spiral/files/rbac/operator-rules.yaml``, which the chart grants unchanged: in a ClusterRole
(``rbac.scope=cluster``, ``--all-namespaces``) or in one Role per watched namespace
(``rbac.scope=namespace``, ``--namespace``). Every rule is namespaced; nothing cluster-scoped is
needed because the operator runs Kopf standalone (no peering objects) with scanning disabled (no
CRD or Namespace watch): see :func:`spiral_operator.handlers.build_settings`. Kopf's start-up
resource discovery (``GET /api``, ``/apis``, ``/apis/GROUP/VERSION``) is on non-resource URLs, which
Kubernetes' default ``system:discovery`` ClusterRole already grants to every authenticated user.

Tests hold the list to the code both ways: the operator, run against an API emulator, sends no
request these rules deny and uses every rule (tests/operator/test_operator_kmock.py); the rendered
chart grants exactly these rules (tests/chart/test_chart_rbac.py).
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterable
from typing import NamedTuple

from spiral_operator.crd import GROUP, PLURAL


class PolicyRule(NamedTuple):
    """One Kubernetes PolicyRule (a single API group) and why the operator needs it."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    #: False for a grant that admission checks but no request uses (see the finalizers rule).
    requested: bool = True


class Grant(NamedTuple):
    """One (apiGroup, resource[/subresource], verb) permission: the unit RBAC authorises."""

    api_group: str
    resource: str
    verb: str


REQUIRED_RULES: tuple[PolicyRule, ...] = (
    PolicyRule(
        GROUP, (PLURAL,), ("get", "list", "watch", "create", "patch", "delete"),
        "Kopf lists and watches SpiralJobs (create/update/resume handlers, the monitor timer, the"
        " spiraljob_phases index) and patches them (finalizer, spiral.dev/* progress annotations,"
        " the autoscaler's spec.actor.replicas); sync() deletes a job whose ttlSecondsAfterFinished expired."
        " A population parent gets, creates and patches (server-side apply) its member SpiralJobs.",
    ),
    PolicyRule(
        GROUP, (f"{PLURAL}/status",), ("patch",),
        "Kopf writes the status the handlers compute through the status subresource (merge and JSON patches).",
    ),
    PolicyRule(
        GROUP, (f"{PLURAL}/finalizers",), ("update",),
        "kopf.adopt() sets blockOwnerDeletion on every child's ownerReference; the"
        " OwnerReferencesPermissionEnforcement admission plugin allows that only with update on the"
        " owner's finalizers. Checked at admission of the child, never requested.",
        requested=False,
    ),
    PolicyRule(
        "", ("events",), ("create",),
        "kopf.info/kopf.warn and Kopf's per-object logger post core v1 Events (never events.k8s.io).",
    ),
    PolicyRule(
        "", ("pods",), ("list", "delete"),
        "observe() lists a job's pods by label for restarts and exit codes; a coordinated restart deletes"
        " old-generation learner/replay pods. No watch: the monitor timer polls.",
    ),
    PolicyRule(
        "", ("configmaps", "services", "persistentvolumeclaims"), ("get", "create", "patch"),
        "KubeApi.apply() of the rendered children: get the live object, create it or server-side-apply a patch.",
    ),
    PolicyRule(
        "", ("serviceaccounts",), ("get", "create", "patch"),
        "KubeApi.apply() of the job's own ServiceAccount NAME-pods, which every pod of the job runs as (no token, no"
        " RoleBinding: the pods need no API access, and a spec cannot pick another account).",
    ),
    PolicyRule(
        "apps", ("statefulsets", "deployments"), ("get", "create", "patch"),
        "KubeApi.apply() of the learner/replay StatefulSets and the actor Deployment; observe() gets"
        " them by name for their ready replicas.",
    ),
    PolicyRule(
        "batch", ("jobs",), ("get", "create"),
        "A population's exploit copies a member's checkpoint in a one-pod Job: created once"
        " (KubeApi.create_if_absent, never patched: a Job's template is immutable), then read for its outcome.",
    ),
    PolicyRule(
        "networking.k8s.io", ("networkpolicies",), ("get", "create", "patch"),
        "KubeApi.apply() of the job's gRPC NetworkPolicy.",
    ),
    PolicyRule(
        "monitoring.coreos.com", ("servicemonitors",), ("get", "create", "patch"),
        "KubeApi.apply() of the job's ServiceMonitor (spec.monitoring.serviceMonitor).",
    ),
)


def grants(rules: Iterable[PolicyRule] = REQUIRED_RULES) -> frozenset[Grant]:
    """Every (apiGroup, resource, verb) the rules allow."""
    return frozenset(Grant(rule.api_group, resource, verb) for rule in rules for resource in rule.resources for verb in rule.verbs)


def render_rules_yaml(rules: Iterable[PolicyRule] = REQUIRED_RULES) -> str:
    """The rules as the chart's ``files/rbac/operator-rules.yaml`` (``rules:`` list, one comment each)."""
    lines = [
        "# Generated by `python -m spiral_operator.rbac`; do not edit. Source: operator/spiral_operator/rbac.py.",
        "# The operator's least-privilege rules, granted by templates/rbac/ as a ClusterRole or per-namespace Roles.",
        "rules:",
    ]
    for rule in rules:
        lines.extend(f"  # {line}" for line in textwrap.wrap(rule.why, 100))
        lines.append(f"  - apiGroups: {json.dumps([rule.api_group])}")
        lines.append(f"    resources: {json.dumps(list(rule.resources))}")
        lines.append(f"    verbs: {json.dumps(list(rule.verbs))}")
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(render_rules_yaml())


if __name__ == "__main__":
    main()
