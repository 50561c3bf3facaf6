"""Render a SpiralJob's children as plain Kubernetes manifests — pure: no client, clock or env reads.

For job ``NAME``: ConfigMap ``NAME-config`` (the rendered TrainConfig), ServiceAccount
``NAME-pods`` (the job's pods run as it: no token, no API rights), PVC ``NAME-checkpoints``
(unless an existing claim is used), StatefulSet + headless Service ``NAME-policy-learner`` and, for
the discriminator reward only, ``NAME-discriminator-learner`` and ``NAME-replay`` (ports ``grpc``
50051 and ``metrics`` 9400), a Deployment ``NAME-actor`` with a metrics-only headless Service of the
same name (so a ServiceMonitor can reach the actors), NetworkPolicy ``NAME-grpc`` and, when asked,
ServiceMonitor ``NAME``. Which roles a job runs is :meth:`spiral.config.TrainConfig.roles` of its
config, the answer the local launcher uses too. Each kind has its ``render_*`` function;
:func:`render_children` only decides which to call, in order.

With ``hyperparametersConfigMap`` the learner pods also mount that ConfigMap as a folder.

The handlers add owner references (``kopf.adopt``) afterwards. Two pod-template annotations drive
roll-outs: ``spiral.dev/config-hash`` (a config change restarts the pods that read it) and
``spiral.dev/restart-generation`` (bumped by the operator for a coordinated restart of learners and
replay). Scaling actors changes neither, so it only scales the actor Deployment.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import yaml

from spiral.config import Role, TrainConfig
from spiral_operator.spec import (
    CHECKPOINT_DIR,
    CONFIG_PATH,
    DATA_DIR,
    GRPC_PORT,
    HEALTH_PORT,
    HYPERPARAMETERS_DIR,
    METRICS_PORT,
    TLS_DIR,
    AccessMode,
    PodTemplateOverride,
    RoleSpec,
    SpecError,
    SpiralJobSpec,
    check_job_name,
    to_train_config,
)

JOB_NAME_LABEL = "spiral.dev/job-name"
ROLE_LABEL = "spiral.dev/role"
CONFIG_HASH_ANNOTATION = "spiral.dev/config-hash"
RESTART_GENERATION_ANNOTATION = "spiral.dev/restart-generation"
MANAGED_BY = "spiral-operator"
CONFIG_KEY = "config.yaml"
#: Non-root UID/GID of the image's `spiral` user (see the Dockerfile).
RUN_AS_USER = 10001

#: Roles run as single-replica StatefulSets (when the job runs them); a crash of any of them triggers
#: a coordinated restart. Also the order they are rendered in, before the actors.
STATEFUL_ROLES: tuple[Role, ...] = (Role.POLICY_LEARNER, Role.DISCRIMINATOR_LEARNER, Role.REPLAY)
#: Roles that read and write checkpoints (the replay buffer's, so that its items survive a restart).
CHECKPOINTING_ROLES: frozenset[Role] = frozenset({Role.POLICY_LEARNER, Role.DISCRIMINATOR_LEARNER, Role.REPLAY})
#: Roles that apply runtime hyperparameters (``spec.hyperparametersConfigMap``).
LEARNER_ROLES: frozenset[Role] = frozenset({Role.POLICY_LEARNER, Role.DISCRIMINATOR_LEARNER})


def stateful_roles(roles: Iterable[Role]) -> tuple[Role, ...]:
    """Which of a job's ``roles`` (``TrainConfig.roles()``) run as StatefulSets, in :data:`STATEFUL_ROLES` order."""
    wanted = set(roles)
    return tuple(r for r in STATEFUL_ROLES if r in wanted)


def child_name(name: str, role: Role) -> str:
    """Name of the workload and Service of ``role`` in job ``name``."""
    return f"{name}-{role.value}"


def config_map_name(name: str) -> str:
    return f"{name}-config"


def service_account_name(name: str) -> str:
    """The ServiceAccount every pod of job ``name`` runs as (created by the operator, no rights)."""
    return f"{name}-pods"


def checkpoint_claim_name(name: str, spec: SpiralJobSpec) -> str:
    return spec.checkpoint.existing_claim or f"{name}-checkpoints"


def network_policy_name(name: str) -> str:
    return f"{name}-grpc"


def selector_labels(name: str, role: Role) -> dict[str, str]:
    """The immutable selector of a role's pods (a subset of :func:`labels`)."""
    return {JOB_NAME_LABEL: name, ROLE_LABEL: role.value}


def actor_selector(name: str) -> str:
    """``status.actorSelector``: the label selector string the scale subresource reports."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(name, Role.ACTOR).items())


def labels(name: str, component: str) -> dict[str, str]:
    """The standard labels every child carries; ``component`` is a Role value (or ``job`` for shared objects)."""
    return {
        "app.kubernetes.io/name": "spiral",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        JOB_NAME_LABEL: name,
        ROLE_LABEL: component,
    }


def _meta(name: str, namespace: str, object_name: str, component: str) -> dict[str, Any]:
    return {"name": object_name, "namespace": namespace, "labels": labels(name, component)}


def render_config_yaml(spec: SpiralJobSpec, name: str, namespace: str) -> str:
    """The YAML of the TrainConfig every pod loads from ``/etc/spiral/config.yaml``.

    Raises:
        SpecError: the spec does not make a valid TrainConfig.
    """
    return _config_yaml(to_train_config(spec, name, namespace))


def _config_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True)


def config_hash(config_yaml: str) -> str:
    return hashlib.sha256(config_yaml.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ pod template ---


def merge_template(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge a user's pod-template override into ``base`` (returns a new dict).

    Maps merge key by key; lists of named items (``containers``, ``volumes``, ``env``...) merge item
    by item on ``name`` (new names are appended); any other list, and every scalar, is replaced.
    """
    result = copy.deepcopy(dict(base))
    for key, value in override.items():
        current = result.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            result[key] = merge_template(current, value)
        elif isinstance(current, list) and isinstance(value, list) and all(isinstance(v, Mapping) and "name" in v for v in [*current, *value]):
            merged = [copy.deepcopy(item) for item in current]
            index = {item["name"]: i for i, item in enumerate(merged)}
            for item in value:
                if item["name"] in index:
                    merged[index[item["name"]]] = merge_template(merged[index[item["name"]]], item)
                else:
                    merged.append(copy.deepcopy(dict(item)))
            result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    return result


def pod_security_context() -> dict[str, Any]:
    """The pod-level security context of every pod the operator creates: the image's non-root user."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _grpc_probe(period: int, failures: int) -> dict[str, Any]:
    return {"grpc": {"port": GRPC_PORT}, "periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": 5}


#: The exec probe of TLS pods: a kubelet gRPC probe cannot present a client certificate, so the
#: server also serves health in plaintext on 127.0.0.1:HEALTH_PORT, reachable only inside the pod.
HEALTH_PROBE_COMMAND = ["python", "-m", "spiral.services.health_probe", f"127.0.0.1:{HEALTH_PORT}"]


def _probe(spec: SpiralJobSpec, period: int, failures: int) -> dict[str, Any]:
    if spec.tls is None:
        return _grpc_probe(period, failures)
    return {"exec": {"command": list(HEALTH_PROBE_COMMAND)}, "periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": 5}


class _Volumes(NamedTuple):
    mounts: list[dict[str, Any]]
    volumes: list[dict[str, Any]]


def _volumes(spec: SpiralJobSpec, name: str, role: Role) -> _Volumes:
    """The config, scratch, checkpoint (learners only), dataset and TLS volumes of a ``role`` pod."""
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_PATH, "subPath": CONFIG_KEY, "readOnly": True},
        # The root filesystem is read-only; torch, matplotlib and libmypaint need a scratch /tmp.
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map_name(name), "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    if role in CHECKPOINTING_ROLES:
        mounts.append({"name": "checkpoints", "mountPath": CHECKPOINT_DIR})
        volumes.append({"name": "checkpoints", "persistentVolumeClaim": {"claimName": checkpoint_claim_name(name, spec)}})
    if spec.hyperparameters_config_map is not None and role in LEARNER_ROLES:
        # A folder, never subPath: the kubelet swaps a mounted ConfigMap's files only without subPath.
        mounts.append({"name": "hyperparameters", "mountPath": HYPERPARAMETERS_DIR, "readOnly": True})
        volumes.append({"name": "hyperparameters", "configMap": {"name": spec.hyperparameters_config_map}})
    if spec.dataset.volume is not None:
        mounts.append({"name": "data", "mountPath": DATA_DIR, "readOnly": True})
        volumes.append({**copy.deepcopy(spec.dataset.volume), "name": "data"})
    if spec.tls is not None:
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
        volumes.append({"name": "tls", "secret": {"secretName": spec.tls.secret_name, "defaultMode": 0o440}})
    return _Volumes(mounts, volumes)


def _container(spec: SpiralJobSpec, name: str, role: Role, role_spec: RoleSpec, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    """The one container of a ``role`` pod: ``spiral serve ROLE`` on the mounted config."""
    return {
        "name": role.value,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy.value,
        "command": ["spiral", "serve", role.value, "--config", CONFIG_PATH],
        "env": [
            {"name": "SPIRAL_JOB_NAME", "value": name},
            {"name": "HOME", "value": "/tmp"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        # Loading torch and the dataset takes a while on a CPU; the startup probe allows 5 minutes
        # before liveness starts counting, so a slow start is not mistaken for a hang.
        "startupProbe": _probe(spec, period=10, failures=30),
        "readinessProbe": _probe(spec, period=10, failures=3),
        "livenessProbe": _probe(spec, period=20, failures=3),
        "resources": role_spec.resources.model_dump(mode="json", exclude_defaults=False),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }


def _checkpoint_affinity(spec: SpiralJobSpec, name: str, role: Role) -> dict[str, Any] | None:
    """Pod affinity that keeps the discriminator learner and the replay buffer on the policy
    learner's node, where a ReadWriteOnce claim is attached."""
    if role not in (Role.DISCRIMINATOR_LEARNER, Role.REPLAY) or spec.checkpoint.access_mode != AccessMode.READ_WRITE_ONCE:
        return None
    return {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": selector_labels(name, Role.POLICY_LEARNER)}, "topologyKey": "kubernetes.io/hostname"}
            ]
        }
    }


def _pod_template(spec: SpiralJobSpec, name: str, role: Role, role_spec: RoleSpec, config_digest: str, restart_generation: int) -> dict[str, Any]:
    volumes = _volumes(spec, name, role)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # Learners write a final checkpoint on SIGTERM; give them time before SIGKILL.
        "terminationGracePeriodSeconds": 60,
        "securityContext": pod_security_context(),
        "containers": [_container(spec, name, role, role_spec, volumes.mounts)],
        "volumes": volumes.volumes,
    }
    pod_spec["serviceAccountName"] = service_account_name(name)
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in spec.image_pull_secrets]
    if role_spec.node_selector:
        pod_spec["nodeSelector"] = dict(role_spec.node_selector)
    if role_spec.tolerations:
        pod_spec["tolerations"] = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in role_spec.tolerations]
    affinity = _checkpoint_affinity(spec, name, role)
    if affinity is not None:
        pod_spec["affinity"] = affinity
    template = {
        "metadata": {
            "labels": labels(name, role.value),
            "annotations": {CONFIG_HASH_ANNOTATION: config_digest, RESTART_GENERATION_ANNOTATION: str(restart_generation)},
        },
        "spec": pod_spec,
    }
    if role_spec.template is not None:
        template = apply_override(template, role_spec.template, role)
    return template


def apply_override(template: Mapping[str, Any], override: PodTemplateOverride, role: Role) -> dict[str, Any]:
    """``template`` with a SpiralJob's allow-listed additions merged in (see :class:`PodTemplateOverride`):
    labels, annotations, node selector and environment variables merge by key or name; tolerations
    and spread constraints are added; affinity and priority class are set.

    Raises:
        SpecError: a container other than the role's is named (lists the valid one).
    """
    names = {c.name for c in override.spec.containers}
    if names - {role.value}:
        raise SpecError(f"spec.{_spec_section(role)}.template.spec.containers names {sorted(names - {role.value})}; the only container is {role.value!r}")
    extra = override.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    pod = extra.get("spec", {})
    for key in ("tolerations", "topologySpreadConstraints"):
        if key in pod:
            pod[key] = [*template["spec"].get(key, []), *pod[key]]
    return merge_template(template, extra)


def _spec_section(role: Role) -> str:
    return {Role.ACTOR: "actor", Role.POLICY_LEARNER: "policyLearner", Role.DISCRIMINATOR_LEARNER: "discriminatorLearner", Role.REPLAY: "replay"}[role]


# ---------------------------------------------------------------------------------- children ---


_GRPC_SERVICE_PORT = {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}
_METRICS_SERVICE_PORT = {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP", "appProtocol": "http"}


def _role_spec(spec: SpiralJobSpec, role: Role) -> RoleSpec:
    return {
        Role.ACTOR: spec.actor,
        Role.POLICY_LEARNER: spec.policy_learner,
        Role.DISCRIMINATOR_LEARNER: spec.discriminator_learner,
        Role.REPLAY: spec.replay,
    }[role]


def desired_replicas(spec: SpiralJobSpec, role: Role, stopped: frozenset[Role]) -> int:
    """Pods of ``role``: none while suspended or stopped, else one per StatefulSet and ``actor.replicas`` actors."""
    if spec.run_policy.suspend or role in stopped:
        return 0
    return spec.actor.replicas if role == Role.ACTOR else 1


def render_service_account(name: str, namespace: str) -> dict[str, Any]:
    """ServiceAccount ``NAME-pods``: the identity of every pod of the job. No RoleBinding names it
    and no token is mounted: the pods need no API access, and a spec cannot pick another account."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, namespace, service_account_name(name), "job"),
        "automountServiceAccountToken": False,
    }


def render_config_map(name: str, namespace: str, config_yaml: str) -> dict[str, Any]:
    """ConfigMap ``NAME-config``: the TrainConfig every pod mounts at ``/etc/spiral/config.yaml``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, namespace, config_map_name(name), "job"),
        "data": {CONFIG_KEY: config_yaml},
    }


def render_checkpoint_claim(spec: SpiralJobSpec, name: str, namespace: str) -> dict[str, Any]:
    """PVC ``NAME-checkpoints`` (rendered only when ``checkpoint.existingClaim`` is unset)."""
    pvc_spec: dict[str, Any] = {
        "accessModes": [spec.checkpoint.access_mode.value],
        "resources": {"requests": {"storage": spec.checkpoint.size}},
    }
    if spec.checkpoint.storage_class_name:
        pvc_spec["storageClassName"] = spec.checkpoint.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(name, namespace, f"{name}-checkpoints", "job"),
        "spec": pvc_spec,
    }


def render_service(name: str, namespace: str, role: Role) -> dict[str, Any]:
    """Headless Service ``NAME-ROLE``: gRPC and metrics for servers, metrics only for the actors (clients)."""
    ports = [dict(_METRICS_SERVICE_PORT)] if role == Role.ACTOR else [dict(_GRPC_SERVICE_PORT), dict(_METRICS_SERVICE_PORT)]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, child_name(name, role), role.value),
        "spec": {
            # Headless: the single pod's address is resolved directly, so gRPC's long-lived HTTP/2
            # connections are not pinned through kube-proxy, and StatefulSets need one anyway.
            "clusterIP": "None",
            "selector": selector_labels(name, role),
            "ports": ports,
            # Peers start dialling before the learner is ready; they retry on their own.
            "publishNotReadyAddresses": True,
        },
    }


def render_statefulset(name: str, namespace: str, role: Role, replicas: int, template: dict[str, Any]) -> dict[str, Any]:
    """StatefulSet ``NAME-ROLE`` of a learner or the replay (one pod, its own headless Service)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(name, namespace, child_name(name, role), role.value),
        "spec": {
            "replicas": replicas,
            "serviceName": child_name(name, role),
            # Parallel: a crash-looping pod must not block its own replacement during a restart.
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": selector_labels(name, role)},
            "template": template,
        },
    }


def render_actor_deployment(name: str, namespace: str, replicas: int, template: dict[str, Any]) -> dict[str, Any]:
    """Deployment ``NAME-actor``: stateless actors, the target of the SpiralJob's scale subresource."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, child_name(name, Role.ACTOR), Role.ACTOR.value),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(name, Role.ACTOR)},
            # Actors are stateless: replace them freely, a few at a time.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "template": template,
        },
    }


def render_network_policy(spec: SpiralJobSpec, name: str, namespace: str) -> dict[str, Any]:
    """NetworkPolicy ``NAME-grpc``: gRPC only between the job's own pods, /metrics from the allowed namespaces.

    It selects pods by job, not by role, so it covers whichever roles the job runs.
    """
    metrics_from: dict[str, Any] = (
        {"namespaceSelector": {"matchLabels": dict(spec.monitoring.metrics_namespace_selector)}}
        if spec.monitoring.metrics_namespace_selector is not None
        else {"namespaceSelector": {}}
    )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, namespace, network_policy_name(name), "job"),
        "spec": {
            "podSelector": {"matchLabels": {JOB_NAME_LABEL: name}},
            "policyTypes": ["Ingress"],
            "ingress": [
                # gRPC (plaintext unless spec.tls) only between this job's own pods.
                {"from": [{"podSelector": {"matchLabels": {JOB_NAME_LABEL: name}}}], "ports": [{"protocol": "TCP", "port": GRPC_PORT}]},
                # /metrics for Prometheus and the operator's progress reads.
                {"from": [metrics_from], "ports": [{"protocol": "TCP", "port": METRICS_PORT}]},
            ],
        },
    }


def render_service_monitor(spec: SpiralJobSpec, name: str, namespace: str) -> dict[str, Any]:
    """ServiceMonitor ``NAME`` (when ``monitoring.serviceMonitor``): every Service of the job, port ``metrics``."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(name, namespace, name, "job"),
        "spec": {
            "selector": {"matchLabels": {JOB_NAME_LABEL: name, "app.kubernetes.io/managed-by": MANAGED_BY}},
            "namespaceSelector": {"matchNames": [namespace]},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": spec.monitoring.interval}],
        },
    }


def render_children(
    spec: SpiralJobSpec,
    name: str,
    namespace: str,
    *,
    restart_generation: int = 0,
    stopped: frozenset[Role] = frozenset(),
) -> list[dict[str, Any]]:
    """Every child object of SpiralJob ``namespace/name``, in creation order (config and storage first).

    Args:
        spec: the parsed spec.
        restart_generation: coordinated restarts so far; stamped on learner/replay pod templates.
        stopped: roles scaled to zero although the spec wants them (finished-job cleanup).
            ``runPolicy.suspend`` scales every role to zero by itself.

    Raises:
        SpecError: the spec does not make a valid TrainConfig, the job name would make invalid child
            names, or a template names another container.
    """
    check_job_name(name)
    config = to_train_config(spec, name, namespace)
    config_yaml = _config_yaml(config)
    digest = config_hash(config_yaml)
    roles = config.roles()

    children = [render_config_map(name, namespace, config_yaml), render_service_account(name, namespace)]
    if spec.checkpoint.existing_claim is None:
        children.append(render_checkpoint_claim(spec, name, namespace))
    for role in stateful_roles(roles):
        template = _pod_template(spec, name, role, _role_spec(spec, role), digest, restart_generation)
        children.append(render_service(name, namespace, role))
        children.append(render_statefulset(name, namespace, role, desired_replicas(spec, role, stopped), template))
    if Role.ACTOR in roles:
        # Actors keep no restart generation: they reconnect to restarted learners by themselves.
        actor_template = _pod_template(spec, name, Role.ACTOR, spec.actor, digest, 0)
        children.append(render_service(name, namespace, Role.ACTOR))
        children.append(render_actor_deployment(name, namespace, desired_replicas(spec, Role.ACTOR, stopped), actor_template))
    # The NetworkPolicy and the ServiceMonitor select by job, so they cover whichever roles it runs.
    children.append(render_network_policy(spec, name, namespace))
    if spec.monitoring.service_monitor:
        children.append(render_service_monitor(spec, name, namespace))
    return children
