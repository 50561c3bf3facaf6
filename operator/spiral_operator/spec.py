"""The SpiralJob ``spec`` as frozen pydantic models, and its translation into :class:`spiral.config.TrainConfig`.

The algorithm sections (``environment``, ``agent``, ``discriminator``, ``reward``, ``training``,
``dataset``, ``replay.buffer``, ``search``, ``pretrain``, ``population``) *are* the models of
``spiral.config`` with camelCase aliases (:func:`camel_model`), so the CRD (generated from these
classes by :mod:`spiral_operator.crd`), the CLI and the operator can never drift apart. Rules that span sections (a budget, ``l2`` ⇒ conditional,
renderer ↔ dataset) are :class:`TrainConfig`'s: parsing builds one and lets it raise, so no rule is
restated here. The Kubernetes sections (per-role pods, run policy, checkpoint storage, monitoring,
TLS) and their own rules are defined here.

Callers: the handlers parse every spec through :func:`parse_spec` and :func:`to_train_config`;
:mod:`spiral_operator.manifests` renders from the parsed objects. Pure: no I/O.
"""

from __future__ import annotations

import copy
import enum
import functools
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from spiral.config import (
    PRESETS,
    AgentConfig,
    DataConfig,
    DiscriminatorConfig,
    EnvConfig,
    LearnerConfig,
    Mode,
    PopulationConfig,
    PretrainConfig,
    ReplayConfig,
    RewardConfig,
    Role,
    SearchConfig,
    TrainConfig,
    preset_path,
)

#: Where the rendered TrainConfig, the TLS secret, the checkpoints and the dataset volume are mounted.
CONFIG_PATH = "/etc/spiral/config.yaml"
TLS_DIR = "/etc/spiral/tls"
CHECKPOINT_DIR = "/checkpoints"
DATA_DIR = "/data"
#: Where ``hyperparametersConfigMap`` is mounted in the learner pods (a folder: the kubelet updates it in place), and its key.
HYPERPARAMETERS_DIR = "/etc/spiral/hyperparameters"
HYPERPARAMETERS_KEY = "hyperparameters.json"
GRPC_PORT = 50051
METRICS_PORT = 9400
#: With TLS: the plaintext health service on 127.0.0.1 only, for the exec probes.
HEALTH_PORT = 50061
#: Longest job name: every child is named ``NAME-<suffix>`` and must be a DNS-1035 label (≤ 63
#: characters); the longest suffix is ``-discriminator-learner`` (22), and a StatefulSet's name also
#: goes into its pods' ``controller-revision-hash`` label with 11 more characters, so 63 − 22 = 41.
MAX_JOB_NAME_LENGTH = 41
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
#: The volume sources ``dataset.volume`` may use: storage for datasets, none that reaches the node
#: (``hostPath``) or the namespace's Secrets (``secret``, CSI secret stores).
DATASET_VOLUME_SOURCES = ("persistentVolumeClaim", "configMap", "nfs", "image", "ephemeral")
#: Label prefixes the operator owns on every pod (selectors, ownership); a template may not set them.
RESERVED_LABEL_PREFIXES = ("spiral.dev/", "app.kubernetes.io/")


class SpecError(ValueError):
    """The SpiralJob spec is invalid; the message names each field, the bad value and what is valid."""


@functools.cache
def camel_model(cls: type[BaseModel]) -> type[BaseModel]:
    """A subclass of config model ``cls`` whose fields are spelled camelCase (``canvas_size`` → ``canvasSize``).

    Validators, bounds, defaults and descriptions are inherited, so the config model stays the one
    source of truth. Nested config models are converted too.
    """
    namespace: dict[str, Any] = {
        "model_config": ConfigDict(alias_generator=to_camel, populate_by_name=True),
        "__module__": __name__,
        "__doc__": cls.__doc__,
        "__annotations__": {},
    }
    for name, field in cls.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            camel = camel_model(nested)
            namespace["__annotations__"][name] = camel
            namespace[name] = Field(default_factory=camel, description=field.description)
    return type(f"{cls.__name__}Spec", (cls,), namespace)


def _config_field(name: str) -> Any:
    """A copy of TrainConfig's field ``name`` (bounds, default, description) for a spec model."""
    return copy.copy(TrainConfig.model_fields[name])


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True, validate_default=True)


# ------------------------------------------------------------------------------ pod settings ---


class TolerationOperator(str, enum.Enum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(str, enum.Enum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(_Spec):
    """A pod toleration (the Kubernetes core/v1 Toleration fields)."""

    key: str | None = Field(None, description="Taint key; empty with operator Exists matches every taint.")
    operator: TolerationOperator = Field(TolerationOperator.EQUAL, description="`Exists` or `Equal`.")
    value: str | None = Field(None, description="Taint value for operator `Equal`.")
    effect: TaintEffect | None = Field(None, description="Taint effect to match; empty matches all.")
    toleration_seconds: int | None = Field(None, ge=0, description="For NoExecute: seconds the pod stays bound after the taint appears.")


class Resources(_Spec):
    """CPU/memory requests and limits (Kubernetes quantities, e.g. `500m`, `2Gi`)."""

    requests: dict[str, int | str] = Field(default_factory=dict, description="Minimum resources the scheduler reserves.")
    limits: dict[str, int | str] = Field(default_factory=dict, description="Hard caps; memory over the limit kills the container.")


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> Resources:
    return Resources(requests={"cpu": cpu, "memory": memory}, limits={"cpu": cpu_limit, "memory": memory_limit})


class PodMetadataOverride(_Spec):
    """Labels and annotations added to the pods (the operator's own labels cannot be replaced)."""

    labels: dict[str, str] = Field(default_factory=dict, description="Extra pod labels; keys under spiral.dev/ and app.kubernetes.io/ are the operator's.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra pod annotations.")

    @model_validator(mode="after")
    def _check(self) -> PodMetadataOverride:
        reserved = sorted(k for k in self.labels if k.startswith(RESERVED_LABEL_PREFIXES))
        if reserved:
            raise ValueError(f"template.metadata.labels {reserved} are the operator's (selectors, ownership); choose other keys")
        return self


class EnvVar(_Spec):
    """A literal environment variable (no ``valueFrom``: a SpiralJob must not read the namespace's Secrets)."""

    name: str = Field(..., min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Variable name.")
    value: str = Field("", max_length=32768, description="Its value.")


class ContainerOverride(_Spec):
    """Extra settings of a role's container, picked by name (the role's name)."""

    name: str = Field(..., min_length=1, description="The container: the role's name (e.g. `actor`).")
    env: list[EnvVar] = Field(default_factory=list, description="Extra environment variables (literal values).")


class PodSpecOverride(_Spec):
    """The pod fields a template may set: scheduling and priority. Everything that could loosen
    isolation (securityContext, host namespaces, volumes, service accounts, images, commands) is
    the operator's alone."""

    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pods must match (merged with the role's).")
    affinity: dict[str, dict[str, Any]] | None = Field(None, description="Node/pod (anti-)affinity: `nodeAffinity`, `podAffinity`, `podAntiAffinity`.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Taints the pods tolerate (added to the role's).")
    priority_class_name: str | None = Field(None, min_length=1, max_length=253, description="PriorityClass of the pods.")
    topology_spread_constraints: list[dict[str, Any]] = Field(default_factory=list, description="How the pods spread over zones or nodes.")
    containers: list[ContainerOverride] = Field(default_factory=list, description="Per-container extras (environment variables).")

    @model_validator(mode="after")
    def _check(self) -> PodSpecOverride:
        unknown = sorted(set(self.affinity or {}) - {"nodeAffinity", "podAffinity", "podAntiAffinity"})
        if unknown:
            raise ValueError(f"template.spec.affinity has {unknown}; valid: nodeAffinity, podAffinity, podAntiAffinity")
        return self


class PodTemplateOverride(_Spec):
    """What a SpiralJob may add to a role's pods — an allow-list (scheduling, priority, labels,
    annotations, literal environment variables), merged over the rendered template."""

    metadata: PodMetadataOverride = Field(default_factory=PodMetadataOverride, description="Labels and annotations.")
    spec: PodSpecOverride = Field(default_factory=PodSpecOverride, description="Scheduling and priority.")


class RoleSpec(_Spec):
    """Pod settings of one role."""

    resources: Resources = Field(default_factory=Resources, description="Container resources.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pods must match.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Taints the pods tolerate.")
    template: PodTemplateOverride | None = Field(
        None,
        description=(
            "Pod template additions, an allow-list: metadata.labels/annotations; spec.nodeSelector, affinity, tolerations, "
            "priorityClassName, topologySpreadConstraints; spec.containers[].env (literal values). Security settings, "
            "volumes, host namespaces and service accounts are the operator's."
        ),
    )


# Sized for the `small` agent preset on CPUs (SPIRAL-NOTES §2): an actor steps 32 canvases and runs
# policy inference; the policy learner's forward+backward dominates; replay holds ~10k 64×64 canvases.
_ACTOR_RESOURCES = _resources("1", "1Gi", "2", "2Gi")
_POLICY_LEARNER_RESOURCES = _resources("2", "4Gi", "4", "8Gi")
_DISCRIMINATOR_LEARNER_RESOURCES = _resources("1", "2Gi", "2", "4Gi")
_REPLAY_RESOURCES = _resources("500m", "1Gi", "1", "2Gi")


class ActorAutoscaling(_Spec):
    """Actor autoscaler on the policy learner's own wait times: grow while it starves, shrink while actors wait on it.

    The policy learner counts how long its update loop waits for trajectories
    (``spiral_learner_data_wait_seconds_total``) and how long the actors' sends wait for room in its
    full queue, summed over the actors (``spiral_learner_actor_wait_seconds_total``). The operator
    turns two consecutive readings into seconds per second and acts when both of the last two
    intervals agree (see :func:`spiral_operator.lifecycle.autoscale_step`).
    """

    enabled: bool = Field(False, description="Let the operator move actor.replicas within [minReplicas, maxReplicas].")
    cooldown_seconds: int = Field(60, ge=0, le=86400, description="Seconds between two scaling steps; lets the learner settle after a step.")
    scale_up_learner_wait_ratio: float = Field(
        0.2,
        gt=0.0,
        le=1.0,
        description=(
            "Add one actor while the policy learner waits for trajectories at least this fraction of the time, over two "
            "consecutive operator passes (it starves: more actors feed it more). 0.2: a learner idle a fifth of the time "
            "gains about that much from one more actor, and afterwards the actors wait less than one actor's worth, so "
            "scaleDownActorWaitRatio does not undo the step."
        ),
    )
    scale_down_actor_wait_ratio: float = Field(
        1.2,
        gt=0.0,
        description=(
            "Remove one actor while the actors together wait at least this many seconds per second for the policy learner "
            "to take their trajectories, over two consecutive operator passes. From 1 on, the actors have a whole actor's "
            "worth of spare time, so one fewer still keeps the learner busy; 1.2 leaves a margin for noise."
        ),
    )


class ActorSpec(RoleSpec):
    """The actors: a Deployment whose replica count is the SpiralJob's scale subresource."""

    resources: Resources = Field(default_factory=lambda: _ACTOR_RESOURCES, description="Container resources.")
    replicas: int = Field(2, ge=0, le=1024, description="Actor pods (the scale subresource: `kubectl scale sj NAME --replicas N`).")
    min_replicas: int = Field(1, ge=0, le=1024, description="Lower bound for scaling and the autoscaler.")
    max_replicas: int = Field(8, ge=1, le=1024, description="Upper bound for scaling and the autoscaler; also the config's num_actors.")
    environments_per_actor: int = _config_field("num_envs")
    autoscaling: ActorAutoscaling = Field(default_factory=ActorAutoscaling, description="Optional autoscaler on the policy learner's wait times.")

    @model_validator(mode="after")
    def _check(self) -> ActorSpec:
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(
                f"actor.replicas ({self.replicas}) must lie within [actor.minReplicas ({self.min_replicas}), actor.maxReplicas ({self.max_replicas})]"
            )
        return self


class ReplaySpec(RoleSpec):
    resources: Resources = Field(default_factory=lambda: _REPLAY_RESOURCES, description="Container resources.")
    buffer: camel_model(ReplayConfig) = Field(default_factory=camel_model(ReplayConfig), description="Replay table settings.")  # type: ignore[valid-type]


class PolicyLearnerSpec(RoleSpec):
    resources: Resources = Field(default_factory=lambda: _POLICY_LEARNER_RESOURCES, description="Container resources.")


class DiscriminatorLearnerSpec(RoleSpec):
    resources: Resources = Field(default_factory=lambda: _DISCRIMINATOR_LEARNER_RESOURCES, description="Container resources.")


# --------------------------------------------------------------------------- algorithm parts ---


_DataSpecBase = camel_model(DataConfig)


class DatasetSpec(_DataSpecBase):  # type: ignore[valid-type,misc]
    """A built-in dataset name, and for file datasets a path inside the pods (on ``volume``).

    The path rule is :class:`spiral.config.DataConfig`'s; only the section's name differs.
    """

    section_name: ClassVar[str] = "dataset"

    volume: dict[str, dict[str, Any]] | None = Field(
        None,
        description=(
            f"One Kubernetes volume source (e.g. `persistentVolumeClaim: {{claimName: data}}`) mounted read-only at {DATA_DIR}; "
            f"point `path` inside it. One of: {', '.join(DATASET_VOLUME_SOURCES)}."
        ),
    )

    @model_validator(mode="after")
    def _check_volume(self) -> DatasetSpec:
        if self.volume is not None and (len(self.volume) != 1 or not set(self.volume) <= set(DATASET_VOLUME_SOURCES)):
            raise ValueError(
                f"dataset.volume must be exactly one volume source of {', '.join(DATASET_VOLUME_SOURCES)}, got {sorted(self.volume)} "
                "(hostPath, secret and CSI sources are refused: they reach the node or the namespace's secrets)"
            )
        return self


_TrainingBase = camel_model(LearnerConfig)


class TrainingSpec(_TrainingBase):  # type: ignore[valid-type,misc]
    """Learner hyperparameters (``spiral.config.LearnerConfig``) plus the budget and bookkeeping intervals."""

    total_frames: int | None = _config_field("total_frames")
    total_updates: int | None = _config_field("total_updates")
    seed: int = _config_field("seed")
    torch_threads: int | None = _config_field("torch_threads")
    max_wall_minutes: float | None = _config_field("max_wall_minutes")
    checkpoint_every_updates: int = _config_field("checkpoint_every_updates")
    eval_every_updates: int = _config_field("eval_every_updates")
    log_every_updates: int = _config_field("log_every_updates")
    keep_checkpoints: int = _config_field("keep_checkpoints")
    init_from: str | None = _config_field("init_from")
    # The budget rule (totalFrames or totalUpdates) is TrainConfig's; SpiralJobSpec applies it.


#: The training fields that are TrainConfig top-level keys rather than LearnerConfig keys.
TRAINING_TOP_LEVEL_FIELDS = (
    "total_frames",
    "total_updates",
    "max_wall_minutes",
    "seed",
    "torch_threads",
    "checkpoint_every_updates",
    "eval_every_updates",
    "log_every_updates",
    "keep_checkpoints",
    "init_from",
)


# ----------------------------------------------------------------------------------- presets ---

#: ``spec.preset``: the presets of ``spiral train --preset`` (:data:`spiral.config.PRESETS`), by the same names.
PresetName = enum.Enum("PresetName", [(name.upper().replace("-", "_"), name) for name in PRESETS], type=str)  # type: ignore[misc]

#: TrainConfig keys the operator sets for every pod, whatever a preset says: peer addresses, the
#: checkpoint mount (a preset's ``output_dir`` is a local folder) and the actor bound.
OPERATOR_OWNED_KEYS = ("services", "output_dir", "num_actors")
#: How a SpiralJob spells TrainConfig's sections (``env`` is ``environment``…); the others keep their names.
_SPEC_SECTIONS: dict[str, tuple[str, ...]] = {"env": ("environment",), "data": ("dataset",), "learner": ("training",), "replay": ("replay", "buffer")}


def spec_path(config_path: tuple[str, ...]) -> tuple[str, ...]:
    """Where TrainConfig key ``config_path`` (``("env", "grid_size")``) lives in a spec (``("environment", "gridSize")``).

    Raises:
        KeyError: an operator-owned key (:data:`OPERATOR_OWNED_KEYS`), which no spec field sets.
    """
    head, *rest = config_path
    if rest:
        return (*_SPEC_SECTIONS.get(head, (head,)), *(to_camel(key) for key in rest))
    top_level = {"mode": ("mode",), "num_envs": ("actor", "environmentsPerActor"), **{f: ("training", to_camel(f)) for f in TRAINING_TOP_LEVEL_FIELDS}}
    return top_level[head]


@functools.cache
def _preset_file(name: str) -> dict[str, Any]:
    return yaml.safe_load(preset_path(name).read_text()) or {}


def preset_config(name: str) -> dict[str, Any]:
    """Preset ``name`` as TrainConfig input, without the operator-owned keys (a fresh copy: callers may change it)."""
    return {k: v for k, v in copy.deepcopy(_preset_file(name)).items() if k not in OPERATOR_OWNED_KEYS}


def _leaves(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    found: dict[tuple[str, ...], Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            found.update(_leaves(value, (*prefix, key)))
        else:
            found[(*prefix, key)] = value
    return found


def preset_spec_values(name: str) -> dict[tuple[str, ...], Any]:
    """What preset ``name`` sets, by spec path: ``{("environment", "gridSize"): 16, ...}``."""
    return {spec_path(path): value for path, value in _leaves(preset_config(name)).items()}


def preset_settable_paths() -> frozenset[tuple[str, ...]]:
    """Spec fields some preset sets. The CRD gives them no schema default: the API server would fill
    it in, and the operator could no longer tell a value the user chose from one the preset should set."""
    return frozenset(path for name in PRESETS for path in preset_spec_values(name))


def _deep_merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        result[key] = _deep_merged(result[key], value) if isinstance(value, Mapping) and isinstance(result.get(key), Mapping) else value
    return result


# ------------------------------------------------------------------------------- run control ---


class CleanPodPolicy(str, enum.Enum):
    """Which pods go away once the job finished (Kubeflow semantics, mapped onto our workloads)."""

    ALL = "All"  # every workload scaled to zero
    RUNNING = "Running"  # all but the policy learner (its pod keeps the final logs)
    NONE = "None"  # leave everything running (debugging)


class RunPolicy(_Spec):
    backoff_limit: int = Field(3, ge=0, le=1000, description="Coordinated restarts of the whole job (not per pod) before it fails.")
    active_deadline_seconds: int | None = Field(None, ge=1, description="Fail the job after running this long (counted from the last start or resume).")
    ttl_seconds_after_finished: int | None = Field(None, ge=0, description="Delete the SpiralJob (and its children) this long after it finished.")
    suspend: bool = Field(False, description="Scale every workload to zero; setting it back to false continues from the checkpoint.")
    clean_pod_policy: CleanPodPolicy = Field(CleanPodPolicy.RUNNING, description="`All`, `Running` (keep the policy learner for its logs) or `None`.")


class AccessMode(str, enum.Enum):
    READ_WRITE_ONCE = "ReadWriteOnce"
    READ_WRITE_MANY = "ReadWriteMany"
    READ_WRITE_ONCE_POD = "ReadWriteOncePod"


class CheckpointSpec(_Spec):
    """Checkpoint storage: an existing PVC, or one the operator creates (`NAME-checkpoints`)."""

    existing_claim: str | None = Field(None, min_length=1, max_length=253, description="Use this PVC instead of creating one.")
    size: str = Field("1Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$", description="Size of the PVC the operator creates.")
    storage_class_name: str | None = Field(None, description="StorageClass of the created PVC; empty uses the cluster default.")
    access_mode: AccessMode = Field(
        AccessMode.READ_WRITE_ONCE,
        description="Both learners mount the claim; with ReadWriteOnce the discriminator learner is scheduled next to the policy learner.",
    )


class MonitoringSpec(_Spec):
    service_monitor: bool = Field(False, description="Create a prometheus-operator ServiceMonitor for the job's services.")
    interval: str = Field("30s", pattern=r"^[0-9]+(ms|s|m|h)$", description="Scrape interval of the ServiceMonitor.")
    metrics_namespace_selector: dict[str, str] | None = Field(
        None, description="Labels of the namespaces allowed to scrape port 9400; unset admits every namespace in the cluster."
    )


class TLSSpec(_Spec):
    """A Secret with `tls.crt`, `tls.key` and `ca.crt` (cert-manager's layout), mounted at /etc/spiral/tls."""

    secret_name: str = Field(..., min_length=1, max_length=253, description="Secret holding the job's certificates.")
    verify_clients: bool = Field(True, description="Require and verify client certificates against `ca.crt` (mutual TLS).")


class PullPolicy(str, enum.Enum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class SpiralJobSpec(_Spec):
    """A whole SPIRAL training job: the algorithm (as ``spiral.config`` sections) and the pods that run it."""

    image: str = Field(..., min_length=1, description="Container image with the `spiral` CLI (e.g. ghcr.io/spiral-k8s/spiral:0.1.0).")
    image_pull_policy: PullPolicy = Field(PullPolicy.IF_NOT_PRESENT, description="`Always`, `IfNotPresent` or `Never`.")
    image_pull_secrets: list[str] = Field(default_factory=list, description="Names of Secrets for pulling the image.")
    preset: PresetName | None = Field(
        None,
        description=(
            "Start from this preset of `spiral train --preset` (the same YAML files): every algorithm field this spec sets "
            "overrides the preset's value, the others take it, and what the preset leaves out keeps its default. "
            "Immutable after creation, like the sections it fills."
        ),
    )
    mode: Mode = _config_field("mode")
    dataset: DatasetSpec = Field(default_factory=DatasetSpec, description="Target images (conditional) or real images for the discriminator.")
    environment: camel_model(EnvConfig) = Field(default_factory=camel_model(EnvConfig), description="The painting (or MuJoCo) environment.")  # type: ignore[valid-type]
    agent: camel_model(AgentConfig) = Field(default_factory=camel_model(AgentConfig), description="Policy network sizes.")  # type: ignore[valid-type]
    discriminator: camel_model(DiscriminatorConfig) = Field(  # type: ignore[valid-type]
        default_factory=camel_model(DiscriminatorConfig), description="Discriminator network and optimiser."
    )
    reward: camel_model(RewardConfig) = Field(default_factory=camel_model(RewardConfig), description="`discriminator` (GAN) or `l2` (reconstruction) reward.")  # type: ignore[valid-type]
    search: camel_model(SearchConfig) = Field(  # type: ignore[valid-type]
        default_factory=camel_model(SearchConfig), description="Search at act and evaluation time: the best of K policy candidates per step."
    )
    pretrain: camel_model(PretrainConfig) = Field(  # type: ignore[valid-type]
        default_factory=camel_model(PretrainConfig), description="Supervised pretraining on synthetic programs before RL (the policy learner does it)."
    )
    population: camel_model(PopulationConfig) = Field(  # type: ignore[valid-type]
        default_factory=camel_model(PopulationConfig),
        description="Population-based training: `size` members, the worst copying the best and exploring their hyperparameters (size 0 or 1 = one run).",
    )
    training: TrainingSpec = Field(..., description="Learner hyperparameters and the budget.")
    actor: ActorSpec = Field(default_factory=ActorSpec, description="Actor pods.")
    policy_learner: PolicyLearnerSpec = Field(default_factory=PolicyLearnerSpec, description="Policy learner pod.")
    discriminator_learner: DiscriminatorLearnerSpec = Field(default_factory=DiscriminatorLearnerSpec, description="Discriminator learner pod.")
    replay: ReplaySpec = Field(default_factory=ReplaySpec, description="Replay pod and table.")
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Checkpoint storage.")
    run_policy: RunPolicy = Field(default_factory=RunPolicy, description="Restarts, deadline, TTL, suspension, cleanup.")
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec, description="Prometheus integration.")
    tls: TLSSpec | None = Field(None, description="Mutual TLS between the services; without it the NetworkPolicy confines plaintext gRPC to the job's pods.")
    hyperparameters_config_map: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description=(
            f"A ConfigMap whose key `{HYPERPARAMETERS_KEY}` (a JSON object: learning_rate, entropy_coef, discriminator_learning_rate, "
            f"each optional) the learners poll and apply while they run (learner.hyperparameters_file, mounted at {HYPERPARAMETERS_DIR}): "
            "`kubectl edit configmap` changes a running job's learning rates and entropy cost without a restart; every change is "
            "logged and exported as spiral_learner_hyperparameter. A population sets it for each member. The learner pods wait "
            "until the ConfigMap exists."
        ),
    )

    def roles(self) -> tuple[Role, ...]:
        """The services this job runs: :meth:`TrainConfig.roles` of its config (an ``l2`` job has no replay
        and no discriminator learner). The job's name and namespace change nothing here."""
        return TrainConfig.model_validate(_train_config_data(self)).roles()

    @model_validator(mode="after")
    def _check_train_config(self) -> SpiralJobSpec:
        if self.hyperparameters_config_map is not None and self.training.hyperparameters_file is not None:
            raise ValueError(
                f"training.hyperparametersFile ({self.training.hyperparameters_file}) and hyperparametersConfigMap "
                f"({self.hyperparameters_config_map}) both name the learners' hyperparameters file; set only hyperparametersConfigMap "
                "(the operator mounts it and points the learners at it)"
            )
        # The rules across sections are TrainConfig's: build one and let it raise. Its `services`
        # only address the job's peers by name and no rule reads them, so the defaults stand in here.
        try:
            TrainConfig.model_validate(_train_config_data(self))
        except ValidationError as err:
            raise ValueError(_train_config_problems(err)) from None
        return self


# ----------------------------------------------------------------------------------- parsing ---


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        where = f"spec.{where}" if where else "spec"
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown field (check the spelling against `kubectl explain spiraljob.spec`)")
        elif e["type"] == "missing":
            lines.append(f"{where}: required field is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {msg} (got {e.get('input')!r})" if e["type"] != "value_error" else f"{where}: {msg}")
    return "; ".join(lines)


def parse_spec(spec: Mapping[str, Any]) -> SpiralJobSpec:
    """Validate a SpiralJob ``spec`` (camelCase, as stored by the API server).

    Raises:
        SpecError: every wrong field with its value and the rule it broke.
    """
    try:
        return SpiralJobSpec.model_validate(dict(spec))
    except ValidationError as err:
        raise SpecError(_format_errors(err)) from None


def check_job_name(name: str) -> None:
    """Refuse a SpiralJob name whose children Kubernetes would reject.

    Raises:
        SpecError: longer than :data:`MAX_JOB_NAME_LENGTH`, or not a DNS-1035 label (lower-case
            letters, digits and '-', starting with a letter; no dots).
    """
    if len(name) > MAX_JOB_NAME_LENGTH:
        raise SpecError(
            f"metadata.name {name!r} has {len(name)} characters; at most {MAX_JOB_NAME_LENGTH}, so that "
            f"'{name}-discriminator-learner' and the other child names fit Kubernetes' 63"
        )
    if not _DNS_1035.match(name):
        raise SpecError(
            f"metadata.name {name!r} must be a DNS-1035 label (lower-case letters, digits and '-', starting with a letter, no dots): "
            "child Services are named after it"
        )


def services_config(name: str, spec: SpiralJobSpec) -> dict[str, Any]:
    """The ``services`` section for a pod of job ``name``: peers by Service name, TLS from the mounted Secret."""
    tls: dict[str, Any] = {"enabled": False}
    if spec.tls is not None:
        tls = {"enabled": True, "cert_file": f"{TLS_DIR}/tls.crt", "key_file": f"{TLS_DIR}/tls.key"}
        if spec.tls.verify_clients:
            tls["ca_file"] = f"{TLS_DIR}/ca.crt"
    return {
        "grpc_port": GRPC_PORT,
        "metrics_port": METRICS_PORT,
        "health_port": HEALTH_PORT,
        "bind_address": "0.0.0.0",
        # Plaintext off loopback is safe only because the job's NetworkPolicy admits gRPC from its own pods alone.
        "allow_insecure": spec.tls is None,
        "policy_learner_address": f"{name}-policy-learner:{GRPC_PORT}",
        "discriminator_learner_address": f"{name}-discriminator-learner:{GRPC_PORT}",
        "replay_address": f"{name}-replay:{GRPC_PORT}",
        "tls": tls,
    }


#: TrainConfig keys a SpiralJob spells differently, named next to TrainConfig's own error messages.
_SPEC_NAMES: tuple[tuple[str, str], ...] = (
    ("total_frames", "training.totalFrames"),
    ("total_updates", "training.totalUpdates"),
    ("env", "environment"),
    ("data", "dataset"),
    ("learner", "training"),
    ("num_envs", "actor.environmentsPerActor"),
    ("num_actors", "actor.maxReplicas"),
)


def _in_spec_terms(message: str) -> str:
    """``message`` of a TrainConfig rule, followed by the spec's names for the TrainConfig keys it mentions."""
    named = [f"{key} is {spec_name}" for key, spec_name in _SPEC_NAMES if re.search(rf"\b{key}\b", message)]
    return f"{message} (in a SpiralJob, {', '.join(named)})" if named else message


def _train_config_problems(err: ValidationError) -> str:
    problems = []
    for e in err.errors():
        message = _in_spec_terms(e["msg"].removeprefix("Value error, "))
        where = ".".join(str(p) for p in e["loc"])
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def _train_config_data(spec: SpiralJobSpec) -> dict[str, Any]:
    """The TrainConfig input of ``spec``: every section but ``services`` (which depends on the job's name).

    With ``spec.preset`` the preset's values come first and only the fields the spec sets override
    them (``exclude_unset``); without one, every field, set or defaulted, is the spec's.
    ``num_actors`` is ``actor.maxReplicas`` (a bound, not the live count) so scaling actors never
    changes the config and never restarts learners.
    """
    preset = spec.preset.value if spec.preset is not None else None
    only_set = preset is not None

    def dump(model: BaseModel, **kwargs: Any) -> dict[str, Any]:
        return model.model_dump(mode="json", exclude_unset=only_set, **kwargs)

    training = spec.training
    sections: dict[str, Any] = {
        "env": dump(spec.environment),
        "agent": dump(spec.agent),
        "discriminator": dump(spec.discriminator),
        "reward": dump(spec.reward),
        "learner": dump(training, include=set(LearnerConfig.model_fields)),
        "data": dump(spec.dataset, include=set(DataConfig.model_fields)),
        "replay": dump(spec.replay.buffer),
        "search": dump(spec.search),
        "pretrain": dump(spec.pretrain),
        "population": dump(spec.population),
        **dump(training, include=set(TRAINING_TOP_LEVEL_FIELDS)),
    }
    if not only_set or "mode" in spec.model_fields_set:
        sections["mode"] = spec.mode.value
    if not only_set or "environments_per_actor" in spec.actor.model_fields_set:
        sections["num_envs"] = spec.actor.environments_per_actor
    if spec.hyperparameters_config_map is not None:
        sections["learner"]["hyperparameters_file"] = f"{HYPERPARAMETERS_DIR}/{HYPERPARAMETERS_KEY}"
    base = preset_config(preset) if preset is not None else {}
    return {**_deep_merged(base, sections), "num_actors": spec.actor.max_replicas, "output_dir": str(PurePosixPath(CHECKPOINT_DIR))}


def to_train_config(spec: SpiralJobSpec, name: str, namespace: str) -> TrainConfig:
    """The :class:`TrainConfig` every pod of job ``name`` loads from its ConfigMap.

    Peers are addressed by their Service's short name, so ``namespace`` does not enter the config.

    Raises:
        SpecError: a TrainConfig rule failed (only for a spec that did not come from :func:`parse_spec`,
            which applies the same rules).
    """
    try:
        # TrainConfig.model_validate is what spiral.config.load_config_dict runs; calling it directly
        # lets the message name spec fields without echoing the whole rendered config back.
        return TrainConfig.model_validate({**_train_config_data(spec), "services": services_config(name, spec)})
    except ValidationError as err:
        raise SpecError(f"spec: {_train_config_problems(err)}") from None
