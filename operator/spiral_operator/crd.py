"""The SpiralJob CustomResourceDefinition, generated from :class:`spiral_operator.spec.SpiralJobSpec`.

``python -m spiral_operator.crd > charts/spiral/files/crds/spiraljobs.spiral.dev.yaml`` regenerates
the file the Helm chart ships; a test checks that the committed file equals a fresh generation.

The spec schema comes from the pydantic models (:mod:`spiral_operator.schema`); cross-field rules
are CEL (``x-kubernetes-validations``). Each CEL rule has a Python twin (:attr:`CelRule.check`) so the
tests can evaluate the rules without an API server, and each twin mirrors a pydantic validator in
``spiral.config`` or :mod:`spiral_operator.spec`, so the API server and the operator reject the same specs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import yaml

from spiral_operator.reasons import ConditionType, Phase
from spiral_operator.schema import model_schema
from spiral_operator.spec import SpiralJobSpec

GROUP = "spiral.dev"
VERSION = "v1alpha1"
KIND = "SpiralJob"
PLURAL = "spiraljobs"
SINGULAR = "spiraljob"
SHORT_NAMES = ("sj",)
API_VERSION = f"{GROUP}/{VERSION}"
CRD_NAME = f"{PLURAL}.{GROUP}"


class CelRule(NamedTuple):
    """One ``x-kubernetes-validations`` entry at ``path`` (property names below ``spec``; ``()`` is the spec).

    ``check(self, old_self)`` is the rule in Python, over the object with schema defaults applied;
    ``old_self`` is None on create (transition rules then pass, as in the API server).
    """

    path: tuple[str, ...]
    rule: str
    message: str
    check: Callable[[Mapping[str, Any], Mapping[str, Any] | None], bool]
    field_path: str | None = None


def _immutable(section: str) -> CelRule:
    return CelRule(
        path=(section,),
        rule="self == oldSelf",
        message=(
            f"spec.{section} is immutable: checkpoints hold a policy trained for this {section}; "
            "create a new SpiralJob to change it"
        ),
        check=lambda self, old: old is None or self == old,
    )


CEL_RULES: tuple[CelRule, ...] = (
    CelRule(
        path=(),
        rule="self.mode == 'conditional' || self.reward.kind != 'l2'",
        message="reward.kind 'l2' needs a target image: use mode 'conditional', or reward.kind 'discriminator' for unconditional jobs",
        check=lambda s, _: s["mode"] == "conditional" or s["reward"]["kind"] != "l2",
        field_path=".reward.kind",
    ),
    CelRule(
        path=(),
        rule="self.mode != 'conditional' || ((self.environment.renderer == 'mujoco') == (self.dataset.name == 'mujoco-scenes'))",
        message="a conditional job reconstructs its dataset: renderer 'mujoco' goes with dataset 'mujoco-scenes', the painting renderers (fast, libmypaint) with the others",
        check=lambda s, _: s["mode"] != "conditional"
        or ((s["environment"]["renderer"] == "mujoco") == (s["dataset"]["name"] == "mujoco-scenes")),
        field_path=".environment.renderer",
    ),
    CelRule(
        path=("actor",),
        rule="self.minReplicas <= self.replicas && self.replicas <= self.maxReplicas",
        message="actor.replicas must lie within [actor.minReplicas, actor.maxReplicas]",
        check=lambda s, _: s["minReplicas"] <= s["replicas"] <= s["maxReplicas"],
        field_path=".replicas",
    ),
    CelRule(
        path=(),
        rule="!has(self.actor.autoscaling.scaleDownQueueDepth) || self.actor.autoscaling.scaleDownQueueDepth <= self.training.queueSize",
        message="actor.autoscaling.scaleDownQueueDepth must be <= training.queueSize (the learner's queue never holds more)",
        check=lambda s, _: s["actor"]["autoscaling"].get("scaleDownQueueDepth") is None
        or s["actor"]["autoscaling"]["scaleDownQueueDepth"] <= s["training"]["queueSize"],
        field_path=".actor.autoscaling.scaleDownQueueDepth",
    ),
    CelRule(
        path=("training",),
        rule="has(self.totalFrames) || has(self.totalUpdates)",
        message="set a budget: training.totalFrames or training.totalUpdates (> 0)",
        check=lambda s, _: s.get("totalFrames") is not None or s.get("totalUpdates") is not None,
    ),
    CelRule(
        path=("environment",),
        rule="self.renderer == 'mujoco' || self.gridSize <= self.canvasSize",
        message="environment.gridSize must be <= environment.canvasSize (a grid cell maps to at least one pixel)",
        check=lambda s, _: s["renderer"] == "mujoco" or s["gridSize"] <= s["canvasSize"],
        field_path=".gridSize",
    ),
    CelRule(
        path=("dataset",),
        rule="self.name == 'shapes' || has(self.path)",
        message="dataset.path is required for every dataset but 'shapes' (mount the files with dataset.volume)",
        check=lambda s, _: s["name"] == "shapes" or s.get("path") is not None,
        field_path=".path",
    ),
    CelRule(
        path=("checkpoint",),
        rule="!has(self.existingClaim) || !has(self.storageClassName)",
        message="checkpoint.storageClassName applies only to the claim the operator creates; drop it or checkpoint.existingClaim",
        check=lambda s, _: s.get("existingClaim") is None or s.get("storageClassName") is None,
        field_path=".storageClassName",
    ),
    _immutable("environment"),
    _immutable("agent"),
    CelRule(
        path=(),
        rule="self.mode == oldSelf.mode",
        message="spec.mode is immutable: checkpoints hold a policy trained for this mode; create a new SpiralJob to change it",
        check=lambda s, old: old is None or s["mode"] == old["mode"],
        field_path=".mode",
    ),
    CelRule(
        path=(),
        rule="self.reward.kind == oldSelf.reward.kind",
        message=(
            "spec.reward.kind is immutable: it decides which services the job runs (an l2 job has no replay and no "
            "discriminator learner); create a new SpiralJob to change it"
        ),
        check=lambda s, old: old is None or s["reward"]["kind"] == old["reward"]["kind"],
        field_path=".reward.kind",
    ),
)


def _at(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node = schema
    for key in path:
        node = node["properties"][key]
    return node


def spec_schema() -> dict[str, Any]:
    """The ``spec`` schema: the pydantic models, then CEL rules and a few schema-only refinements."""
    schema = model_schema(SpiralJobSpec)
    # EnvConfig checks `brush_sizes > 0` in a validator; in the schema it is a plain item bound.
    _at(schema, ("environment",))["properties"]["brushSizes"]["items"].update(minimum=0, exclusiveMinimum=True)
    # A spec without a budget is caught by the `training` CEL rule; keep the schema from requiring it twice.
    for rule in CEL_RULES:
        entry: dict[str, Any] = {"rule": rule.rule, "message": rule.message}
        if rule.field_path:
            entry["fieldPath"] = rule.field_path
        _at(schema, rule.path).setdefault("x-kubernetes-validations", []).append(entry)
    return schema


def _role_status() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "desired": {"type": "integer", "description": "Pods the workload should run."},
            "ready": {"type": "integer", "description": "Pods ready (gRPC health probe passing)."},
        },
    }


def status_schema() -> dict[str, Any]:
    """The ``status`` schema (written only by the operator, through the status subresource)."""
    time = {"type": "string", "format": "date-time"}
    return {
        "type": "object",
        "properties": {
            "phase": {"type": "string", "enum": [p.value for p in Phase], "description": "Summary of the conditions."},
            "message": {"type": "string", "description": "Why the job is in this phase."},
            "observedGeneration": {"type": "integer", "description": "metadata.generation the status reflects."},
            "conditions": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": {
                    "type": "object",
                    "required": ["type", "status"],
                    "properties": {
                        "type": {"type": "string", "enum": [c.value for c in ConditionType]},
                        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                        "reason": {"type": "string"},
                        "message": {"type": "string"},
                        "lastTransitionTime": time,
                    },
                },
            },
            "actors": _role_status(),
            "policyLearner": _role_status(),
            "discriminatorLearner": _role_status(),
            "replay": _role_status(),
            "actorSelector": {"type": "string", "description": "Label selector of the actor pods (for the scale subresource)."},
            "restartCount": {"type": "integer", "description": "Coordinated restarts so far (compared with runPolicy.backoffLimit)."},
            "startTime": time,
            "completionTime": time,
            "lastScaleTime": time,
            "progress": {
                "type": "object",
                "description": "Read from the policy learner's /metrics.",
                "properties": {
                    "frames": {"type": "integer", "description": "spiral_learner_frames_total"},
                    "policyVersion": {"type": "integer", "description": "spiral_learner_policy_version"},
                    "episodeReward": {"type": "number", "description": "spiral_learner_episode_reward"},
                    "heldOutL2": {"type": "number", "description": 'spiral_learner_l2{split="held_out"}'},
                    "queueDepth": {"type": "number", "description": "spiral_learner_queue_depth"},
                    "updateTime": time,
                },
            },
            "podRestarts": {
                "type": "object",
                "description": "Container restarts already accounted for, by pod name (bookkeeping for failure detection).",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"uid": {"type": "string"}, "restarts": {"type": "integer"}},
                },
            },
        },
    }


PRINTER_COLUMNS = (
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Actors", "type": "integer", "jsonPath": ".status.actors.ready", "description": "Ready actor pods."},
    {"name": "Desired", "type": "integer", "jsonPath": ".spec.actor.replicas", "description": "Desired actor pods."},
    {"name": "Frames", "type": "integer", "jsonPath": ".status.progress.frames"},
    {"name": "Version", "type": "integer", "jsonPath": ".status.progress.policyVersion", "description": "Policy version."},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restartCount", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)


def build_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition as a plain dict (apiextensions.k8s.io/v1)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "spiral", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["spiral"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A SPIRAL training job: actors, a policy learner, a discriminator learner and a replay buffer.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.actor.replicas",
                            "statusReplicasPath": ".status.actors.ready",
                            "labelSelectorPath": ".status.actorSelector",
                        },
                    },
                    "additionalPrinterColumns": [dict(c) for c in PRINTER_COLUMNS],
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    """The CRD as YAML text, exactly as committed under charts/spiral/files/crds/."""
    header = "# Generated by `python -m spiral_operator.crd`; do not edit. Source: operator/spiral_operator/spec.py.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, allow_unicode=True, width=120)


def main() -> None:
    sys.stdout.write(render_crd_yaml())


if __name__ == "__main__":
    main()
