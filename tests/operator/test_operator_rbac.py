"""spiral_operator.rbac: the rules file the chart grants is a fresh rendering of REQUIRED_RULES.

Whether the rules match what the operator really requests is tested against the API emulator in
test_operator_kmock.py; whether the chart grants exactly them, in tests/chart/test_chart_rbac.py.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from spiral_operator.rbac import REQUIRED_RULES, Grant, PolicyRule, grants, render_rules_yaml

RULES_FILE = Path(__file__).resolve().parents[2] / "charts/spiral/files/rbac/operator-rules.yaml"


def test_committed_rules_file_equals_a_fresh_generation() -> None:
    assert RULES_FILE.read_text() == render_rules_yaml(), "run: python -m spiral_operator.rbac > charts/spiral/files/rbac/operator-rules.yaml"


def test_rules_yaml_round_trips_to_the_same_policy_rules() -> None:
    parsed = yaml.safe_load(render_rules_yaml())["rules"]
    assert [(r["apiGroups"], r["resources"], r["verbs"]) for r in parsed] == [
        ([rule.api_group], list(rule.resources), list(rule.verbs)) for rule in REQUIRED_RULES
    ]


def test_grants_flatten_every_resource_and_verb() -> None:
    rule = PolicyRule("apps", ("statefulsets", "deployments"), ("get", "patch"), "why")
    assert grants([rule]) == {Grant("apps", r, v) for r in ("statefulsets", "deployments") for v in ("get", "patch")}


def test_every_rule_says_why_and_the_operator_needs_no_cluster_scoped_or_framework_objects() -> None:
    assert all(len(rule.why) > 20 for rule in REQUIRED_RULES)
    groups = {g.api_group for g in grants()}
    assert not groups & {"kopf.dev", "zalando.org", "apiextensions.k8s.io", "events.k8s.io"}
    assert "namespaces" not in {g.resource for g in grants()}
