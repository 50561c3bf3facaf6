"""The SpiralJob CustomResourceDefinition, generated from :class:`spiral_operator.spec.SpiralJobSpec`.

``python -m spiral_operator.crd > charts/spiral/files/crds/spiraljobs.spiral.dev.yaml`` regenerates
the file the Helm chart ships; a test checks that the committed file equals a fresh generation.

The spec schema comes from the pydantic models (:mod:`spiral_operator.schema`); cross-field rules
are CEL (``x-kubernetes-validations``). Each CEL rule has a Python twin (:attr:`CelRule.check`) so the
tests can evaluate the rules without an API server, and each twin mirrors a pydantic validator in
``spiral.config`` or :mod:`spiral_operator.spec`, so the API server and the operator reject the same specs.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import yaml
from pydantic.alias_generators import to_camel

from spiral.config import PRESETS, Hyperparameter
from spiral_operator.reasons import ConditionType, Phase
from spiral_operator.schema import model_schema
from spiral_operator.spec import (
    DATASET_VOLUME_SOURCES,
    MAX_JOB_NAME_LENGTH,
    RESERVED_LABEL_PREFIXES,
    SpiralJobSpec,
    preset_settable_paths,
    preset_spec_values,
)

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


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


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


# ------------------------------------------------------------------- preset-aware values ---
#
# A field some preset sets has no schema default (see :func:`spec_schema`), so a rule that reads it
# must say what it means when absent: the preset's value when ``spec.preset`` names one that sets
# it, else the model default. :func:`effective` spells that in CEL, :func:`effective_value` in Python.


def _model_default(path: tuple[str, ...]) -> Any:
    node: Any = model_schema(SpiralJobSpec)
    for key in path:
        node = node["properties"][key]
    return node.get("default")


def _preset_values(path: tuple[str, ...]) -> dict[str, Any]:
    """``{preset: value}`` for the presets that set ``path`` to something other than the model default."""
    default = _model_default(path)
    return {name: v for name in PRESETS if (v := preset_spec_values(name).get(path, default)) != default}


def _cel_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value)


def effective(path: tuple[str, ...]) -> str:
    """CEL for the value of spec field ``path`` as the operator will use it (relative to ``self`` = the spec)."""
    field = "self." + ".".join(path)
    if path not in preset_settable_paths():
        return field  # always present: the API server applies its schema default
    fallback = _cel_literal(_model_default(path))
    presets = _preset_values(path)
    if presets:
        table = "{" + ", ".join(f"{_cel_literal(k)}: {_cel_literal(v)}" for k, v in presets.items()) + "}"
        fallback = f"(has(self.preset) && self.preset in {table} ? {table}[self.preset] : {fallback})"
    return f"(has({field}) ? {field} : {fallback})"


def effective_value(spec: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """:func:`effective` in Python, over a spec with the schema defaults applied."""
    node: Any = spec
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    if node is not None:
        return node
    preset = spec.get("preset")
    return _preset_values(path).get(preset, _model_default(path)) if preset else _model_default(path)


def _presets_setting(path: tuple[str, ...]) -> list[str]:
    return [name for name in PRESETS if preset_spec_values(name).get(path) is not None]


def _cel_preset_in(names: list[str]) -> str:
    return f"(has(self.preset) && self.preset in [{', '.join(_cel_literal(n) for n in names)}])" if names else "false"


_MODE, _REWARD, _RENDERER, _DATASET = ("mode",), ("reward", "kind"), ("environment", "renderer"), ("dataset", "name")
_GRID, _CANVAS = ("environment", "gridSize"), ("environment", "canvasSize")
_BUDGETS = [("training", "totalFrames"), ("training", "totalUpdates")]
_PRESETS_WITH_BUDGET = sorted({n for path in _BUDGETS for n in _presets_setting(path)}, key=PRESETS.index)
_PRESETS_WITH_DATA_PATH = _presets_setting(("dataset", "path"))


# spiral.config's PopulationConfig rules (and TrainConfig's metric rule), so the API server refuses
# what the operator would: a population that replaces nobody, ranges that are not ranges, a metric
# the job's evaluation never writes.
_HYPERPARAMETERS = tuple(to_camel(h.value) for h in Hyperparameter)
_POPULATION_METRIC_FITS = (
    f"self.population.metric == 'held_out_l2' ? {effective(_MODE)} == 'conditional' : "
    f"self.population.metric == 'digit_confident' ? ({effective(_MODE)} == 'unconditional' && {effective(_DATASET)} == 'mnist') : "
    f"{effective(_REWARD)} == 'discriminator'"
)


def _population_metric_fits(spec: Mapping[str, Any]) -> bool:
    metric, mode = spec["population"]["metric"], effective_value(spec, _MODE)
    if metric == "held_out_l2":
        return bool(mode == "conditional")
    if metric == "digit_confident":
        return bool(mode == "unconditional" and effective_value(spec, _DATASET) == "mnist")
    return bool(effective_value(spec, _REWARD) == "discriminator")


def _perturb_rule(key: str) -> CelRule:
    return CelRule(
        path=("population", "explore", "perturb"),
        rule=f"self.{key}[0] <= 1.0 && 1.0 <= self.{key}[1]",
        message=f"population.explore.perturb.{key} must be a factor range [low, high] with 0 < low <= 1 <= high ([1, 1] keeps the value)",
        check=lambda s, _: bool(s[key][0] <= 1.0 <= s[key][1]),
        field_path=f".{key}",
    )


def _resample_rule(key: str) -> CelRule:
    return CelRule(
        path=("population", "explore", "resample"),
        rule=f"!has(self.{key}) || self.{key}[0] <= self.{key}[1]",
        message=f"population.explore.resample.{key} must be a value range [low, high] with low <= high",
        check=lambda s, _: s.get(key) is None or bool(s[key][0] <= s[key][1]),
        field_path=f".{key}",
    )


POPULATION_RULES: tuple[CelRule, ...] = (
    CelRule(
        path=("population",),
        rule="self.size < 2 || self.exploit.fraction * double(self.size) >= 1.0",
        message="population.exploit.fraction × population.size must be at least 1 with two or more members: the bottom fraction must hold a member to replace",
        check=lambda s, _: s["size"] < 2 or s["exploit"]["fraction"] * s["size"] >= 1.0,
        field_path=".exploit.fraction",
    ),
    CelRule(
        path=(),
        rule=f"self.population.size < 2 || ({_POPULATION_METRIC_FITS})",
        message=(
            "population.metric must be one this job's evaluation writes: 'held_out_l2' needs mode 'conditional', "
            "'digit_confident' mode 'unconditional' with dataset 'mnist', 'd_fake' reward.kind 'discriminator'"
        ),
        check=lambda s, _: s["population"]["size"] < 2 or _population_metric_fits(s),
        field_path=".population.metric",
    ),
    *(_perturb_rule(key) for key in _HYPERPARAMETERS),
    *(_resample_rule(key) for key in _HYPERPARAMETERS),
    CelRule(
        path=("population", "explore"),
        rule="self.resampleProbability == 0.0 || (has(self.resample) && (" + " || ".join(f"has(self.resample.{k})" for k in _HYPERPARAMETERS) + "))",
        message="population.explore.resampleProbability above 0 needs a range to redraw from: set one in population.explore.resample",
        check=lambda s, _: s["resampleProbability"] == 0 or any((s.get("resample") or {}).get(k) is not None for k in _HYPERPARAMETERS),
        field_path=".resampleProbability",
    ),
)


def _population_ranges(schema: dict[str, Any]) -> None:
    """Item bounds of the population's [low, high] ranges, which a validator checks in the models.

    Factors and redrawn values are positive (a log-uniform draw needs it), and a redrawn value lies
    within its config field's bounds. The resample ranges lose ``nullable``: the API server then
    prunes an explicit null, so ``has()`` in the CEL rules means "set".
    """
    explore = _at(schema, ("population", "explore"))["properties"]
    for hyperparameter, key in zip(Hyperparameter, _HYPERPARAMETERS, strict=True):
        explore["perturb"]["properties"][key]["items"].update(minimum=0, exclusiveMinimum=True)
        resample = explore["resample"]["properties"][key]
        resample.pop("nullable", None)
        resample["items"].update(minimum=0, exclusiveMinimum=True)
        bounds = hyperparameter.bounds
        if bounds.high != float("inf"):
            resample["items"].update(maximum=bounds.high, **({"exclusiveMaximum": True} if bounds.high_open else {}))


CEL_RULES: tuple[CelRule, ...] = (
    CelRule(
        path=(),
        rule=f"{effective(_MODE)} == 'conditional' || {effective(_REWARD)} != 'l2'",
        message="reward.kind 'l2' needs a target image: use mode 'conditional', or reward.kind 'discriminator' for unconditional jobs",
        check=lambda s, _: effective_value(s, _MODE) == "conditional" or effective_value(s, _REWARD) != "l2",
        field_path=".reward.kind",
    ),
    CelRule(
        path=(),
        rule=f"{effective(_MODE)} != 'conditional' || (({effective(_RENDERER)} == 'mujoco') == ({effective(_DATASET)} == 'mujoco-scenes'))",
        message=(
            "a conditional job reconstructs its dataset: renderer 'mujoco' goes with dataset 'mujoco-scenes', "
            "the painting renderers (fast, libmypaint) with the others"
        ),
        check=lambda s, _: effective_value(s, _MODE) != "conditional"
        or ((effective_value(s, _RENDERER) == "mujoco") == (effective_value(s, _DATASET) == "mujoco-scenes")),
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
        rule=" || ".join([*(f"has(self.{'.'.join(p)})" for p in _BUDGETS), _cel_preset_in(_PRESETS_WITH_BUDGET)]),
        message="set a budget: training.totalFrames or training.totalUpdates (> 0), or a preset that has one",
        check=lambda s, _: any(effective_value(s, p) is not None for p in _BUDGETS) or s.get("preset") in _PRESETS_WITH_BUDGET,
        field_path=".training",
    ),
    CelRule(
        path=(),
        rule=f"{effective(_RENDERER)} == 'mujoco' || {effective(_GRID)} <= {effective(_CANVAS)}",
        message="environment.gridSize must be <= environment.canvasSize (a grid cell maps to at least one pixel)",
        check=lambda s, _: effective_value(s, _RENDERER) == "mujoco" or effective_value(s, _GRID) <= effective_value(s, _CANVAS),
        field_path=".environment.gridSize",
    ),
    CelRule(
        path=(),
        rule=f"{effective(_DATASET)} == 'shapes' || has(self.dataset.path) || {_cel_preset_in(_PRESETS_WITH_DATA_PATH)}",
        message="dataset.path is required for every dataset but 'shapes' (mount the files with dataset.volume)",
        check=lambda s, _: effective_value(s, _DATASET) == "shapes" or (s.get("dataset") or {}).get("path") is not None
        or s.get("preset") in _PRESETS_WITH_DATA_PATH,
        field_path=".dataset.path",
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
    # Issue #14: the checkpoints (and the replay items) depend on these too: a changed dataset
    # silently trained on other images, a changed critic rolled the learners into a crash loop.
    _immutable("dataset"),
    _immutable("discriminator"),
    CelRule(
        path=("dataset",),
        rule="!has(self.volume) || (self.volume.size() == 1 && self.volume.all(k, k in " + _cel_list(DATASET_VOLUME_SOURCES) + "))",
        message=(
            f"dataset.volume must be exactly one volume source of {', '.join(DATASET_VOLUME_SOURCES)} "
            "(hostPath, secret and CSI sources reach the node or the namespace's secrets)"
        ),
        check=lambda s, _: s.get("volume") is None or (len(s["volume"]) == 1 and set(s["volume"]) <= set(DATASET_VOLUME_SOURCES)),
        field_path=".volume",
    ),
    *(
        CelRule(
            path=(section, "template", "metadata"),
            rule="!has(self.labels) || self.labels.all(k, !k.startsWith('spiral.dev/') && !k.startsWith('app.kubernetes.io/'))",
            message=f"{section}.template.metadata.labels under spiral.dev/ and app.kubernetes.io/ are the operator's (selectors, ownership)",
            check=lambda s, _: not any(k.startswith(RESERVED_LABEL_PREFIXES) for k in (s.get("labels") or {})),
            field_path=".labels",
        )
        for section in ("actor", "policyLearner", "discriminatorLearner", "replay")
    ),
    # The replay buffer's deadlock rules (spiral.config.ReplayConfig), before a pod fails on them.
    CelRule(
        path=("replay", "buffer"),
        rule="self.minSizeToSample <= self.maxSize",
        message="replay.buffer.minSizeToSample must be <= replay.buffer.maxSize: sampling would wait forever",
        check=lambda s, _: s["minSizeToSample"] <= s["maxSize"],
        field_path=".minSizeToSample",
    ),
    CelRule(
        path=("replay", "buffer"),
        rule="!has(self.samplesPerInsert) || self.maxTimesSampled == 0 || self.samplesPerInsert <= double(self.maxTimesSampled)",
        message="replay.buffer.samplesPerInsert must be <= replay.buffer.maxTimesSampled (when set): inserts and samples would deadlock",
        check=lambda s, _: s.get("samplesPerInsert") is None or s["maxTimesSampled"] == 0 or s["samplesPerInsert"] <= s["maxTimesSampled"],
        field_path=".samplesPerInsert",
    ),
    CelRule(
        path=("replay", "buffer"),
        rule="!has(self.samplesPerInsert) || self.errorBuffer >= (self.samplesPerInsert > 1.0 ? self.samplesPerInsert : 1.0)",
        message="replay.buffer.errorBuffer must be >= max(1, samplesPerInsert): a narrower buffer can block inserts and samples at once",
        check=lambda s, _: s.get("samplesPerInsert") is None or s["errorBuffer"] >= max(1.0, s["samplesPerInsert"]),
        field_path=".errorBuffer",
    ),
    CelRule(
        path=(),
        rule="has(self.preset) == has(oldSelf.preset) && (!has(self.preset) || self.preset == oldSelf.preset)",
        message="spec.preset is immutable: it fills the environment and agent the checkpoints were trained for; create a new SpiralJob to change it",
        check=lambda s, old: old is None or s.get("preset") == old.get("preset"),
        field_path=".preset",
    ),
    CelRule(
        path=(),
        rule=f"{effective(_MODE)} == {effective(_MODE).replace('self.', 'oldSelf.')}",
        message="spec.mode is immutable: checkpoints hold a policy trained for this mode; create a new SpiralJob to change it",
        check=lambda s, old: old is None or effective_value(s, _MODE) == effective_value(old, _MODE),
        field_path=".mode",
    ),
    CelRule(
        path=(),
        rule=f"{effective(_REWARD)} == {effective(_REWARD).replace('self.', 'oldSelf.')}",
        message=(
            "spec.reward.kind is immutable: it decides which services the job runs (an l2 job has no replay and no "
            "discriminator learner); create a new SpiralJob to change it"
        ),
        check=lambda s, old: old is None or effective_value(s, _REWARD) == effective_value(old, _REWARD),
        field_path=".reward.kind",
    ),
    *POPULATION_RULES,
)


#: Rules on the whole object (``self`` is the SpiralJob): CEL may read ``metadata.name`` there.
NAME_RULES: tuple[CelRule, ...] = (
    CelRule(
        path=(),
        rule=f"self.metadata.name.size() <= {MAX_JOB_NAME_LENGTH}",
        message=(
            f"metadata.name must have at most {MAX_JOB_NAME_LENGTH} characters, so that NAME-discriminator-learner and the "
            "other child names fit Kubernetes' 63"
        ),
        check=lambda s, _: len(s["metadata"]["name"]) <= MAX_JOB_NAME_LENGTH,
        field_path=".metadata.name",
    ),
    CelRule(
        path=(),
        rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        message=(
            "metadata.name must be a DNS-1035 label (lower-case letters, digits and '-', starting with a letter, no dots): "
            "child Services are named after it"
        ),
        check=lambda s, _: re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", s["metadata"]["name"]) is not None,
        field_path=".metadata.name",
    ),
)


def _at(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node = schema
    for key in path:
        node = node["properties"][key]
    return node


def _without_preset_defaults(schema: dict[str, Any]) -> None:
    """Drop the schema default of every field a preset sets, and name the default in its description instead.

    The API server writes schema defaults into the stored object, so a defaulted field would look
    set by the user and override ``spec.preset``; left absent, the operator fills it from the
    preset, or from the same default when there is no preset.
    """
    for path in sorted(preset_settable_paths()):
        node = _at(schema, path)
        default = node.pop("default", None)
        if default is not None:
            shown = yaml.safe_dump(default, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
            node["description"] = f"{node.get('description', '').rstrip()} Default: {shown}, or spec.preset's value.".lstrip()


def spec_schema() -> dict[str, Any]:
    """The ``spec`` schema: the pydantic models, then CEL rules and a few schema-only refinements."""
    schema = model_schema(SpiralJobSpec)
    _without_preset_defaults(schema)
    # EnvConfig checks `brush_sizes > 0` in a validator; in the schema it is a plain item bound.
    _at(schema, ("environment",))["properties"]["brushSizes"]["items"].update(minimum=0, exclusiveMinimum=True)
    _population_ranges(schema)
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


def _population_status(time: dict[str, Any]) -> dict[str, Any]:
    """``status.population`` of a population parent: the population's memory (spiral_operator.population)."""
    hyperparameters = {
        "type": "object", "additionalProperties": {"type": "number"}, "description": "By name (learning_rate, entropy_coef, discriminator_learning_rate).",
    }  # fmt: skip
    member = {
        "type": "object",
        "required": ["slot", "name", "seed"],
        "properties": {
            "slot": {"type": "integer"},
            "name": {"type": "string", "description": "The member SpiralJob."},
            "seed": {"type": "integer", "description": "training.seed of its run (the source's after an exploit)."},
            "hyperparameters": {**hyperparameters, "description": "What its learners train with now (its ConfigMap)."},
            "updates": {"type": "integer", "description": "Its policy updates, as last read from its learner."},
            "metric": {"type": "number", "description": "spec.population.metric on its current weights; absent before their first evaluation."},
            "metricNotFinite": {"type": "boolean", "description": "The metric is NaN or infinite (a diverged member; ranks last)."},
            "readySince": {"type": "integer", "description": "Updates at its start or last exploit; absent until first seen since."},
            "phase": {"type": "string", "description": "The member SpiralJob's phase."},
            "lineage": {
                "type": "array",
                "description": "Each exploit it took, oldest first.",
                "items": {
                    "type": "object",
                    "properties": {
                        "source": {"type": "integer"}, "updates": {"type": "integer"}, "sourceMetric": {"type": "number"}, "time": {"type": "string"},
                    },
                },
            },
            "exploit": {
                "type": "object",
                "description": "An exploit under way: Stopping (the member is suspended), then Copying (the copy Job runs).",
                "properties": {
                    "stage": {"type": "string", "enum": ["Stopping", "Copying"]},
                    "source": {"type": "integer"},
                    "sourceMetric": {"type": "number"},
                    "hyperparameters": hyperparameters,
                    "seed": {"type": "integer"},
                    "job": {"type": "string", "description": "The batch/v1 Job that copies the checkpoint."},
                    "startTime": time,
                    "reason": {"type": "string"},
                },
            },
        },
    }  # fmt: skip
    return {
        "type": "object",
        "description": "A population parent's members and PBT rounds (spec.population.size >= 2).",
        "properties": {
            "size": {"type": "integer"},
            "metric": {"type": "string", "description": "spec.population.metric."},
            "rounds": {"type": "integer", "description": "Exploit rounds decided so far (seeds the next round's draws)."},
            "exploits": {"type": "integer", "description": "Exploits started so far."},
            "bestMember": {"type": "integer", "description": "Slot of the best measured member."},
            "bestMetric": {"type": "number"},
            "members": {"type": "array", "items": member},
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
            "autoscaling": {
                "type": "object",
                "description": "The autoscaler's last reading of the policy learner's wait counters, and their rates since the reading before.",
                "properties": {
                    "sampleTime": time,
                    "learnerWaitSeconds": {"type": "number", "description": "spiral_learner_data_wait_seconds_total"},
                    "actorWaitSeconds": {"type": "number", "description": "spiral_learner_actor_wait_seconds_total"},
                    "learnerWaitRatio": {"type": "number", "description": "Seconds per second the learner waited for trajectories since the reading before."},
                    "actorWaitRatio": {"type": "number", "description": "Seconds per second the actors (together) waited for room in the learner's queue."},
                },
            },
            "population": _population_status(time),
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
    {"name": "Best", "type": "integer", "jsonPath": ".status.population.bestMember", "description": "A population's best member.", "priority": 1},
    {"name": "Metric", "type": "number", "jsonPath": ".status.population.bestMetric", "description": "Its population metric.", "priority": 1},
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
                            "x-kubernetes-validations": [{"rule": r.rule, "message": r.message, "fieldPath": r.field_path} for r in NAME_RULES],
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
