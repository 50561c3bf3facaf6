"""The generated SpiralJob CRD: committed file is fresh, schema ⇔ config models, and what it accepts/rejects.

The API server is emulated in two steps: structural defaults are applied, then the OpenAPI schema
is checked with jsonschema (Draft 4: Kubernetes' dialect with boolean exclusiveMinimum) and every
CEL rule is evaluated through its Python twin (:attr:`CelRule.check`). Each rejected case is also
rejected by the operator's own parsing, so the two can't disagree.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from spiral.config import (
    AgentConfig,
    DataConfig,
    DiscriminatorConfig,
    EnvConfig,
    ExploitConfig,
    ExploreConfig,
    LearnerConfig,
    PerturbConfig,
    PopulationConfig,
    ReplayConfig,
    ResampleConfig,
    RewardConfig,
    TrainConfig,
    load_preset,
)
from spiral_operator.crd import CEL_RULES, build_crd, render_crd_yaml
from spiral_operator.spec import TRAINING_TOP_LEVEL_FIELDS, SpecError, parse_spec, preset_settable_paths, to_train_config

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "charts/spiral/files/crds/spiraljobs.spiral.dev.yaml"
EXAMPLE = ROOT / "examples/spiraljob.yaml"


def _version() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]


def _spec_schema() -> dict[str, Any]:
    return _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: parent defaults first, then nested ones."""
    if isinstance(value, dict):
        result = dict(value)
        for key, sub in (schema.get("properties") or {}).items():
            if key not in result and "default" in sub:
                result[key] = copy.deepcopy(sub["default"])
            if key in result:
                result[key] = apply_defaults(sub, result[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in result:
                if key not in (schema.get("properties") or {}):
                    result[key] = apply_defaults(extra, result[key])
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def admission_errors(spec: dict[str, Any], old_spec: dict[str, Any] | None = None) -> list[str]:
    """Messages the API server would answer for ``spec`` (empty: accepted)."""
    schema = _spec_schema()
    defaulted = apply_defaults(schema, spec)
    errors = [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(defaulted)]
    if errors:
        return errors
    old = apply_defaults(schema, old_spec) if old_spec is not None else None
    for rule in CEL_RULES:
        node, old_node = defaulted, old
        for key in rule.path:
            node = node.get(key) if isinstance(node, dict) else None
            old_node = old_node.get(key) if isinstance(old_node, dict) else None
        if node is None:
            continue  # the API server evaluates a rule only where its field is present
        if not rule.check(node, old_node):
            errors.append(rule.message)
    return errors


def operator_error(spec: dict[str, Any]) -> str | None:
    try:
        to_train_config(parse_spec(spec), "job", "ns")
    except SpecError as err:
        return str(err)
    return None


def _example_spec() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())["spec"]


MINIMAL = {"image": "ghcr.io/spiral-k8s/spiral:0.1.0", "training": {"totalFrames": 1000}}


def test_committed_crd_equals_a_fresh_generation() -> None:
    assert CRD_FILE.read_text() == render_crd_yaml(), "run: python -m spiral_operator.crd > charts/spiral/files/crds/spiraljobs.spiral.dev.yaml"


def test_module_entry_point_prints_the_crd() -> None:
    out = subprocess.run([sys.executable, "-m", "spiral_operator.crd"], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out == render_crd_yaml()


def test_crd_names_subresources_and_printer_columns() -> None:
    crd = build_crd()
    assert crd["metadata"]["name"] == "spiraljobs.spiral.dev"
    assert crd["spec"]["group"] == "spiral.dev" and crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"], names["shortNames"]) == ("SpiralJob", "spiraljobs", "spiraljob", ["sj"])
    version = _version()
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {
        "status": {},
        "scale": {"specReplicasPath": ".spec.actor.replicas", "statusReplicasPath": ".status.actors.ready", "labelSelectorPath": ".status.actorSelector"},
    }
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase" and columns["Age"] == ".metadata.creationTimestamp"
    assert columns["Actors"] == ".status.actors.ready" and columns["Desired"] == ".spec.actor.replicas"
    assert columns["Frames"] == ".status.progress.frames" and columns["Version"] == ".status.progress.policyVersion"


def _assert_structural(schema: dict[str, Any], where: str = "spec") -> None:
    """Every node has a type (or is int-or-string / preserve-unknown); no $ref, anyOf or null types."""
    for banned in ("$ref", "anyOf", "oneOf", "allOf"):
        assert banned not in schema, f"{where}: {banned} is not structural"
    assert "type" in schema or schema.get("x-kubernetes-int-or-string"), f"{where}: no type"
    for key, sub in (schema.get("properties") or {}).items():
        _assert_structural(sub, f"{where}.{key}")
    if isinstance(schema.get("items"), dict):
        _assert_structural(schema["items"], f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        _assert_structural(schema["additionalProperties"], f"{where}{{}}")


def test_schema_is_structural() -> None:
    _assert_structural(_spec_schema())
    _assert_structural(_version()["schema"]["openAPIV3Schema"]["properties"]["status"], "status")


def _camel_fields(model: type[BaseModel]) -> set[str]:
    return {to_camel(name) for name in model.model_fields}


@pytest.mark.parametrize(
    ("path", "model", "extra"),
    [
        (("environment",), EnvConfig, set()),
        (("environment", "mujoco"), EnvConfig.model_fields["mujoco"].annotation, set()),
        (("agent",), AgentConfig, set()),
        (("discriminator",), DiscriminatorConfig, set()),
        (("reward",), RewardConfig, set()),
        (("replay", "buffer"), ReplayConfig, set()),
        (("dataset",), DataConfig, {"volume"}),
        (("training",), LearnerConfig, {to_camel(f) for f in TRAINING_TOP_LEVEL_FIELDS}),
        (("population",), PopulationConfig, set()),
        (("population", "exploit"), ExploitConfig, set()),
        (("population", "explore"), ExploreConfig, set()),
        (("population", "explore", "perturb"), PerturbConfig, set()),
        (("population", "explore", "resample"), ResampleConfig, set()),
    ],
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else None,
)
def test_crd_sections_match_the_config_models(path: tuple[str, ...], model: type[BaseModel], extra: set[str]) -> None:
    node = _spec_schema()
    for key in path:
        node = node["properties"][key]
    assert set(node["properties"]) == _camel_fields(model) | extra
    for name, field in model.model_fields.items():
        prop = node["properties"][to_camel(name)]
        by_preset = (*path, to_camel(name)) in preset_settable_paths()
        if field.description:
            assert prop["description"].startswith(field.description)
        default = field.get_default(call_default_factory=True)
        if default is not None and not isinstance(default, BaseModel):
            dumped = model.model_validate({}).model_dump(mode="json")[name] if name in model.model_fields else None
            if by_preset:
                # A preset may set it: no schema default (the API server would store it as if the user set it),
                # the description names the default instead.
                assert "default" not in prop and prop["description"].endswith(", or spec.preset's value."), name
            else:
                assert prop["default"] == dumped, f"{name}: CRD default {prop.get('default')!r} != model default {dumped!r}"


def test_every_train_config_field_comes_from_the_spec_or_the_operator() -> None:
    from_spec = {"mode", "env", "agent", "discriminator", "reward", "learner", "data", "replay", "search", "pretrain", "population", "num_envs",
                 *TRAINING_TOP_LEVEL_FIELDS}
    operator_owned = {"services", "output_dir", "num_actors"}  # addresses, mount paths, actor bound
    assert set(TrainConfig.model_fields) == from_spec | operator_owned


def test_example_is_accepted_by_the_schema_and_the_operator() -> None:
    spec = _example_spec()
    assert admission_errors(spec) == []
    assert operator_error(spec) is None
    assert admission_errors(MINIMAL) == [] and operator_error(MINIMAL) is None


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    for dotted, value in changes.items():
        node = spec
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        if value is _DROP:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return spec


_DROP = object()

BAD_SPECS = [
    ("no image", _with(MINIMAL, image=_DROP), "'image' is a required property", "spec.image"),
    ("no training", _with(MINIMAL, training=_DROP), "'training' is a required property", "spec.training"),
    ("no budget", _with(MINIMAL, training={}), "set a budget", "set a budget"),
    ("zero budget", _with(MINIMAL, training__totalFrames=0), "less than or equal to the minimum of 0", "spec.training.totalFrames"),
    ("replicas above max", _with(MINIMAL, actor={"replicas": 9, "maxReplicas": 8}), "actor.replicas must lie within", "actor.replicas (9)"),
    ("replicas below min", _with(MINIMAL, actor={"replicas": 1, "minReplicas": 2}), "actor.replicas must lie within", "actor.minReplicas (2)"),
    ("negative replicas", _with(MINIMAL, actor={"replicas": -1}), "-1 is less than the minimum of 0", "spec.actor.replicas"),
    ("unknown renderer", _with(MINIMAL, environment={"renderer": "opengl"}), "'opengl' is not one of ['fast', 'libmypaint', 'mujoco']", "spec.environment.renderer"),
    ("grid finer than canvas", _with(MINIMAL, environment={"canvasSize": 32, "gridSize": 64}), "gridSize must be <= environment.canvasSize", "grid_size (64)"),
    ("brush size zero", _with(MINIMAL, environment={"brushSizes": [0.0, 2.0]}), "less than or equal to the minimum of 0", "brush_sizes"),
    ("l2 without target", _with(MINIMAL, mode="unconditional"), "reward.kind 'l2' needs a target", "reward.kind 'l2' needs a target"),
    ("mujoco renderer on shapes", _with(MINIMAL, environment={"renderer": "mujoco"}), "renderer 'mujoco' goes with dataset 'mujoco-scenes'", "renderer 'mujoco'"),
    ("file dataset without path", _with(MINIMAL, dataset={"name": "mnist"}), "dataset.path is required", "dataset.path is required"),
    ("claim and storage class", _with(MINIMAL, checkpoint={"existingClaim": "ckpt", "storageClassName": "fast"}), "storageClassName applies only", None),
    ("bad clean policy", _with(MINIMAL, runPolicy={"cleanPodPolicy": "Sometimes"}), "'Sometimes' is not one of ['All', 'Running', 'None']", "spec.runPolicy.cleanPodPolicy"),
    ("negative backoff", _with(MINIMAL, runPolicy={"backoffLimit": -1}), "-1 is less than the minimum of 0", "spec.runPolicy.backoffLimit"),
    ("bad PVC size", _with(MINIMAL, checkpoint={"size": "lots"}), "does not match", "spec.checkpoint.size"),
    ("tls without secret", _with(MINIMAL, tls={}), "'secretName' is a required property", "spec.tls.secretName"),
    ("scale-up wait ratio above 1", _with(MINIMAL, actor={"autoscaling": {"scaleUpLearnerWaitRatio": 1.5}}),
     "1.5 is greater than the maximum of 1", "spec.actor.autoscaling.scaleUpLearnerWaitRatio"),
    ("unknown preset", _with(MINIMAL, preset="huge"), "'huge' is not one of ['default', 'mnist'", "spec.preset"),
    ("preset's grid finer than the canvas", _with(MINIMAL, preset="default", environment={"canvasSize": 16, "gridSize": 32}),
     "gridSize must be <= environment.canvasSize", "grid_size (32)"),
    ("preset's l2 reward without a target", _with(MINIMAL, preset="default", mode="unconditional"),
     "reward.kind 'l2' needs a target", "reward.kind 'l2' needs a target"),
    # Issue #14, finding 7: SpiralJobs that asked for privilege, and buffers that deadlock in the pod.
    ("hostPath dataset volume", _with(MINIMAL, dataset={"volume": {"hostPath": {"path": "/"}}}),
     "dataset.volume must be exactly one volume source of persistentVolumeClaim", "dataset.volume must be exactly one volume source"),
    ("secret dataset volume", _with(MINIMAL, dataset={"volume": {"secret": {"secretName": "db"}}}),
     "dataset.volume must be exactly one volume source", "got ['secret']"),
    ("two dataset volume sources", _with(MINIMAL, dataset={"volume": {"persistentVolumeClaim": {"claimName": "a"}, "nfs": {"server": "x", "path": "/"}}}),
     "dataset.volume must be exactly one volume source", "exactly one volume source"),
    *[(f"{section} label owned by the operator", _with(MINIMAL, **{section: {"template": {"metadata": {"labels": {"spiral.dev/role": "x"}}}}}),
       f"{section}.template.metadata.labels under spiral.dev/ and app.kubernetes.io/ are the operator's", "are the operator's")
      for section in ("actor", "policyLearner", "discriminatorLearner", "replay")],
    ("replay min size above max size", _with(MINIMAL, replay={"buffer": {"minSizeToSample": 100, "maxSize": 10}}),
     "replay.buffer.minSizeToSample must be <= replay.buffer.maxSize", "replay.min_size_to_sample (100) exceeds replay.max_size (10)"),
    ("replay ratio above max times sampled", _with(MINIMAL, replay={"buffer": {"samplesPerInsert": 4.0, "maxTimesSampled": 2}}),
     "replay.buffer.samplesPerInsert must be <= replay.buffer.maxTimesSampled", "exceeds replay.max_times_sampled (2)"),
    ("replay error buffer too narrow", _with(MINIMAL, replay={"buffer": {"samplesPerInsert": 4.0, "errorBuffer": 1.0}}),
     "replay.buffer.errorBuffer must be >= max(1, samplesPerInsert)", "error_buffer 1 gives a range of 2"),
    # Issue #16: a population that replaces nobody, ranges that are not ranges, a metric nobody writes.
    ("population fraction selects nobody", _with(MINIMAL, population={"size": 3, "exploit": {"fraction": 0.3}}),
     "population.exploit.fraction × population.size must be at least 1", "population.exploit.fraction (0.3) × population.size (3) = 0.9"),
    ("population too large", _with(MINIMAL, population={"size": 65}), "65 is greater than the maximum of 64", "spec.population.size"),
    ("population metric without targets", _with(MINIMAL, mode="unconditional", reward={"kind": "discriminator"}, population={"size": 4}),
     "population.metric must be one this job's evaluation writes", "population.metric 'held_out_l2' ranks reconstructions"),
    ("population digit score on shapes", _with(MINIMAL, mode="unconditional", reward={"kind": "discriminator"},
                                               population={"size": 4, "metric": "digit_confident"}),
     "population.metric must be one this job's evaluation writes", "needs mode 'unconditional' and data.name 'mnist'"),
    *[(f"population perturb {key} not around 1", _with(MINIMAL, population={"explore": {"perturb": {key: [1.5, 2.0]}}}),
       f"population.explore.perturb.{key} must be a factor range", f"population.explore.perturb.{name} [1.5, 2] must be a factor range")
      for key, name in (("learningRate", "learning_rate"), ("entropyCoef", "entropy_coef"), ("discriminatorLearningRate", "discriminator_learning_rate"))],
    ("population perturb factor not positive", _with(MINIMAL, population={"explore": {"perturb": {"learningRate": [0.0, 1.5]}}}),
     "less than or equal to the minimum of 0", "population.explore.perturb.learning_rate [0, 1.5]"),
    *[(f"population resample {key} reversed", _with(MINIMAL, population={"explore": {"resample": {key: [0.01, 0.001]}}}),
       f"population.explore.resample.{key} must be a value range", f"population.explore.resample.{name} [0.01, 0.001] must be a value range")
      for key, name in (("learningRate", "learning_rate"), ("entropyCoef", "entropy_coef"), ("discriminatorLearningRate", "discriminator_learning_rate"))],
    ("population resample learning rate above 1", _with(MINIMAL, population={"explore": {"resample": {"learningRate": [0.1, 2.0]}}}),
     "2.0 is greater than the maximum of 1", "inside learner.learning_rate's bounds (0, 1]"),
    ("population resample probability without a range", _with(MINIMAL, population={"explore": {"resampleProbability": 0.25}}),
     "population.explore.resampleProbability above 0 needs a range", "population.explore.resample_probability (0.25) needs a range"),
]


@pytest.mark.parametrize(("spec", "want", "operator_want"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_bad_specs_are_rejected_with_the_expected_message(spec: dict[str, Any], want: str, operator_want: str | None) -> None:
    errors = admission_errors(spec)
    assert any(want in e for e in errors), errors
    got = operator_error(spec)
    if operator_want is None:
        return  # a storage-only rule: the operator would just ignore storageClassName
    assert got is not None and operator_want in got, got


@pytest.mark.parametrize("section", ["environment", "agent", "dataset", "discriminator"])
def test_algorithm_sections_are_immutable_on_update(section: str) -> None:
    """dataset and discriminator too (issue #14): a changed dataset silently switched the images a
    checkpointed policy trains on, a changed critic rolled the learners into a crash loop."""
    old = _with(MINIMAL)
    changes = {"environment": {"canvasSize": 32, "gridSize": 16}, "agent": {"preset": "paper"}, "dataset": {"numShapes": 500}, "discriminator": {"channels": 64}}
    new = _with(MINIMAL, **{section: changes[section]})
    assert admission_errors(new) == []  # fine on create
    assert any(f"spec.{section} is immutable" in e for e in admission_errors(new, old_spec=old))
    assert admission_errors(old, old_spec=old) == []


def test_mode_is_immutable_and_scaling_is_not() -> None:
    old = _with(MINIMAL, reward={"kind": "discriminator"})
    assert any("spec.mode is immutable" in e for e in admission_errors(_with(old, mode="unconditional"), old_spec=old))
    assert admission_errors(_with(old, actor={"replicas": 5}), old_spec=old) == []


def test_reward_kind_is_immutable_because_it_decides_the_roles() -> None:
    old = _with(MINIMAL, reward={"kind": "discriminator"})
    errors = admission_errors(_with(old, reward={"kind": "l2"}), old_spec=old)
    assert any("spec.reward.kind is immutable: it decides which services the job runs" in e for e in errors)
    assert admission_errors(_with(old, reward={"kind": "discriminator", "scale": 2.0}), old_spec=old) == []


def test_every_cel_rule_has_a_rejecting_case() -> None:
    """Each rule's Python twin can fail: some bad spec above trips it."""
    tripped = {rule.message for _, spec, *_ in BAD_SPECS for rule in CEL_RULES if rule.message in admission_errors(spec)}
    transition = {r.message for r in CEL_RULES if "oldSelf" in r.rule}
    assert tripped | transition == {r.message for r in CEL_RULES}


def test_defaults_fill_nested_sections() -> None:
    defaulted = apply_defaults(_spec_schema(), MINIMAL)
    assert defaulted["environment"]["pressureLevels"] == 10
    assert "canvasSize" not in defaulted["environment"]  # a preset may set it: left to the operator
    assert defaulted["environment"]["mujoco"]["sizeLevels"] == 3
    assert defaulted["actor"]["resources"]["limits"]["memory"] == "2Gi"
    assert defaulted["policyLearner"]["resources"]["requests"]["cpu"] == "2"
    assert defaulted["runPolicy"] == {"backoffLimit": 3, "suspend": False, "cleanPodPolicy": "Running"}
    # What the API server stores is what the operator parses: the defaults agree.
    assert parse_spec(defaulted) == parse_spec(MINIMAL)


@pytest.mark.parametrize("preset", ["default", "mnist"])
def test_a_preset_fills_what_the_spec_leaves_out_and_the_spec_wins(preset: str) -> None:
    """What the API server stores (schema defaults applied) gives the operator the preset's values
    where the spec is silent and the spec's own where it speaks, budget and dataset path included."""
    spec = {"image": "img", "preset": preset, "training": {}, "environment": {"gridSize": 8}}
    assert admission_errors(spec) == []  # the preset has a budget (and mnist a dataset path)
    stored = apply_defaults(_spec_schema(), spec)
    config = to_train_config(parse_spec(stored), "job", "ns")
    wanted = load_preset(preset)
    assert config.env.grid_size == 8
    assert (config.env.episode_length, config.env.brush_sizes, config.total_frames, config.num_envs, config.data.name) == (
        wanted.env.episode_length, wanted.env.brush_sizes, wanted.total_frames, wanted.num_envs, wanted.data.name)
    assert config.output_dir == Path("/checkpoints")  # operator-owned, whatever the preset says
    assert to_train_config(parse_spec(spec), "job", "ns") == config


def test_preset_is_immutable() -> None:
    old = _with(MINIMAL, preset="default")
    assert any("spec.preset is immutable" in e for e in admission_errors(_with(old, preset="mnist", dataset={"path": "/data"}), old_spec=old))
    assert any("spec.preset is immutable" in e for e in admission_errors(_with(old, preset=_DROP), old_spec=old))
    assert admission_errors(old, old_spec=old) == []


def test_schema_converter_names_unsupported_types() -> None:
    from spiral_operator.schema import SchemaError, type_schema

    with pytest.raises(SchemaError, match=r"union .* has no structural schema \(only X \| None and int \| str\)"):
        type_schema(int | float)
    assert type_schema(int | str) == {"x-kubernetes-int-or-string": True}
    assert type_schema(float | None) == {"type": "number", "nullable": True}


#: (case, spec changes, the equivalent TrainConfig input): each rule that spans sections of the spec.
CONFIG_RULES = [
    ("budget", {"training": {}}, {}),
    ("l2 needs a target", {"mode": "unconditional"}, {"mode": "unconditional", "total_frames": 1}),
    ("renderer vs dataset", {"environment": {"renderer": "mujoco"}}, {"env": {"renderer": "mujoco"}, "total_frames": 1}),
    ("grid vs canvas", {"environment": {"canvasSize": 32, "gridSize": 64}}, {"env": {"canvas_size": 32, "grid_size": 64}, "total_frames": 1}),
]
# The data-path rule is DataConfig's too (DatasetSpec inherits it), but its message names the
# section as the spec spells it (`dataset.path`); BAD_SPECS checks that one.


@pytest.mark.parametrize(("changes", "config"), [c[1:] for c in CONFIG_RULES], ids=[c[0] for c in CONFIG_RULES])
def test_spec_parser_reports_the_config_models_own_rule(changes: dict[str, Any], config: dict[str, Any]) -> None:
    """The spec parser restates no rule of spiral.config: its message is the config model's own."""
    with pytest.raises(ValidationError) as raised:
        TrainConfig.model_validate(config)
    rule_message = raised.value.errors()[0]["msg"].removeprefix("Value error, ")
    with pytest.raises(SpecError, match=re.escape(rule_message)):
        parse_spec({**MINIMAL, **changes})


def test_config_rule_messages_name_the_spec_fields() -> None:
    with pytest.raises(SpecError, match=re.escape("(in a SpiralJob, total_frames is training.totalFrames, total_updates is training.totalUpdates)")):
        parse_spec({**MINIMAL, "training": {}})
    with pytest.raises(SpecError, match=re.escape("(in a SpiralJob, env is environment)")):
        parse_spec({**MINIMAL, "environment": {"renderer": "mujoco"}})


def _unknown_fields(schema: dict[str, Any], value: Any, where: str = "spec") -> list[str]:
    """What server-side field validation (kubectl's default, --validate=strict) reports as unknown:
    fields the structural schema does not declare, outside x-kubernetes-preserve-unknown-fields."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or not isinstance(value, (dict, list)):
        return []
    if isinstance(value, list):
        return [u for i, v in enumerate(value) for u in _unknown_fields(schema.get("items", {}), v, f"{where}[{i}]")]
    props, extra = schema.get("properties"), schema.get("additionalProperties")
    found = []
    for key, sub in value.items():
        if props is not None and key in props:
            found += _unknown_fields(props[key], sub, f"{where}.{key}")
        elif isinstance(extra, dict):
            found += _unknown_fields(extra, sub, f"{where}.{key}")
        else:
            found.append(f"{where}.{key}")
    return found


PRIVILEGED_TEMPLATES = [
    ("privileged root container", {"spec": {"containers": [{"name": "actor", "securityContext": {"privileged": True, "runAsUser": 0}}]}},
     "spec.actor.template.spec.containers[0].securityContext"),
    ("hostPath volume", {"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}, "spec.actor.template.spec.volumes"),
    ("host network and PID", {"spec": {"hostNetwork": True, "hostPID": True}}, "spec.actor.template.spec.hostNetwork"),
    ("token automount", {"spec": {"automountServiceAccountToken": True}}, "spec.actor.template.spec.automountServiceAccountToken"),
    ("another service account", {"spec": {"serviceAccountName": "admin"}}, "spec.actor.template.spec.serviceAccountName"),
    ("loosened pod security", {"spec": {"securityContext": {"runAsNonRoot": False}}}, "spec.actor.template.spec.securityContext"),
    ("env from a secret", {"spec": {"containers": [{"name": "actor", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]}]}},
     "spec.actor.template.spec.containers[0].env[0].valueFrom"),
    ("another image", {"spec": {"containers": [{"name": "actor", "image": "evil"}]}}, "spec.actor.template.spec.containers[0].image"),
]


@pytest.mark.parametrize(("template", "unknown"), [c[1:] for c in PRIVILEGED_TEMPLATES], ids=[c[0] for c in PRIVILEGED_TEMPLATES])
def test_a_template_cannot_ask_for_privilege(template: dict[str, Any], unknown: str) -> None:
    """Issue #14, finding 7: spec.<role>.template was deep-merged into the pod, so a SpiralJob could
    ask for a privileged root container, hostPath /, hostNetwork/hostPID or any service account.
    The template is an allow-list now: the CRD reports such fields as unknown (strict field
    validation; a lax client's are pruned) and the operator refuses them."""
    spec = _with(MINIMAL, actor={"template": template})
    assert unknown in _unknown_fields(_spec_schema(), spec)
    assert operator_error(spec) is not None


def test_a_scheduling_template_is_accepted() -> None:
    template = {"metadata": {"labels": {"team": "paint"}, "annotations": {"owner": "me"}},
                "spec": {"priorityClassName": "low", "nodeSelector": {"pool": "cpu"},
                         "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}},
                         "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}],
                         "containers": [{"name": "actor", "env": [{"name": "OMP_NUM_THREADS", "value": "1"}]}]}}
    spec = _with(MINIMAL, actor={"template": template})
    assert _unknown_fields(_spec_schema(), spec) == [] and admission_errors(spec) == [] and operator_error(spec) is None


def test_the_service_account_field_is_gone() -> None:
    spec = _with(MINIMAL, serviceAccountName="cluster-admin")
    assert _unknown_fields(_spec_schema(), spec) == ["spec.serviceAccountName"]
    assert "spec.serviceAccountName: unknown field" in (operator_error(spec) or "")


@pytest.mark.parametrize(
    ("name", "ok"),
    [("a" * 41, True), ("a" * 42, False), ("paint.v2", False), ("Paint", False), ("9lives", False), ("shapes-l2", True)],
    ids=["41-chars", "42-chars", "dot", "upper-case", "leading-digit", "ok"],
)
def test_job_names_whose_children_kubernetes_would_reject_are_refused(name: str, ok: bool) -> None:
    """Names over ~42 characters or with dots rendered Service names Kubernetes rejects."""
    from spiral_operator.crd import NAME_RULES
    from spiral_operator.manifests import render_children

    rules = _version()["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    assert [r["rule"] for r in rules] == [r.rule for r in NAME_RULES]
    assert all(rule.check({"metadata": {"name": name}}, None) for rule in NAME_RULES) is ok
    if ok:
        assert all(len(c["metadata"]["name"]) <= 63 for c in render_children(parse_spec(_with(MINIMAL, reward={"kind": "discriminator"})), name, "ns"))
    else:
        with pytest.raises(SpecError, match=r"metadata\.name"):
            render_children(parse_spec(MINIMAL), name, "ns")


def test_a_population_reaches_the_config_in_spiral_terms() -> None:
    """spec.population is spiral.config's PopulationConfig spelt camelCase: what the API server
    stores (defaults applied) parses into the same config the local launcher would build."""
    population = {"size": 4, "readyAfterUpdates": 50, "exploit": {"fraction": 0.5},
                  "explore": {"perturb": {"entropyCoef": [1.0, 1.0]}, "resample": {"learningRate": [1e-4, 1e-3]}, "resampleProbability": 0.25}}
    spec = _with(MINIMAL, population=population)
    assert admission_errors(spec) == [] and operator_error(spec) is None
    config = to_train_config(parse_spec(apply_defaults(_spec_schema(), spec)), "job", "ns").population
    assert (config.size, config.ready_after_updates, config.exploit.fraction) == (4, 50, 0.5)
    assert config.explore.perturb.entropy_coef == (1.0, 1.0) and config.explore.perturb.learning_rate == (0.8, 1.25)
    assert config.explore.resample.learning_rate == (1e-4, 1e-3) and config.explore.resample_probability == 0.25
    # Without a population section the job is one run, as before.
    assert to_train_config(parse_spec(MINIMAL), "job", "ns").population.enabled is False
