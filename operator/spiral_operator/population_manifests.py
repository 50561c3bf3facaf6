"""Render a population parent's children as plain manifests — pure, like :mod:`manifests`.

For parent ``NAME`` and each slot: the member SpiralJob ``NAME-m<slot>``, its hyperparameters
ConfigMap ``NAME-m<slot>-hyperparameters`` and, during an exploit, the copy Job
``NAME-m<slot>-exploit-<n>``. The handlers adopt each (owner references), so deleting the parent
deletes the whole population.

A member's spec is the parent's as stored (so a parent spec edit reaches every member at the next
pass) minus ``population`` and ``runPolicy.ttlSecondsAfterFinished`` (the parent's TTL deletes the
population), with its own ``training.seed``, ``hyperparametersConfigMap``, ``runPolicy.suspend``
(the parent's, or true while an exploit stops it) and the actor count its own autoscaler chose.
The explored hyperparameters stay out of the member's spec: a spec change rolls its pods, while the
ConfigMap reaches the running learners without a restart.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from spiral.config import Role
from spiral_operator.crd import GROUP, VERSION
from spiral_operator.manifests import (
    MANAGED_BY,
    checkpoint_claim_name,
    container_security_context,
    labels,
    pod_security_context,
    selector_labels,
    service_account_name,
)
from spiral_operator.population import (
    MEMBER_LABEL,
    POPULATION_LABEL,
    MemberRecord,
    hyperparameters_config_map_name,
    member_name,
)
from spiral_operator.spec import HYPERPARAMETERS_KEY, AccessMode, SpiralJobSpec

#: Where the copy Job mounts the two members' checkpoint volumes; each member's run writes its
#: checkpoints under ``checkpoints/`` of its volume (the run's output_dir).
COPY_SOURCE_DIR = "/source"
COPY_TARGET_DIR = "/target"
#: A copy is a few files of a few MB; ten minutes covers a slow volume attach.
COPY_DEADLINE_SECONDS = 600
#: A finished copy Job is kept this long for its logs, then deleted by Kubernetes.
COPY_TTL_SECONDS = 3600


def member_labels(parent: str, slot: int) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "spiral",
        "app.kubernetes.io/instance": parent,
        "app.kubernetes.io/component": "population-member",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        POPULATION_LABEL: parent,
        MEMBER_LABEL: str(slot),
    }


def render_member(
    parent_spec: Mapping[str, Any], parent: str, namespace: str, record: MemberRecord, *, suspended: bool, actor_replicas: int | None
) -> dict[str, Any]:
    """Member SpiralJob ``parent-m<slot>`` (see the module docstring).

    ``actor_replicas``: the live member's ``spec.actor.replicas`` (its autoscaler's), None to take the parent's.
    """
    slot = record.member.slot
    spec = copy.deepcopy(dict(parent_spec))
    spec.pop("population", None)
    spec["training"] = {**(spec.get("training") or {}), "seed": record.seed}
    spec["hyperparametersConfigMap"] = hyperparameters_config_map_name(parent, slot)
    run_policy = {k: v for k, v in (spec.get("runPolicy") or {}).items() if k != "ttlSecondsAfterFinished"}
    spec["runPolicy"] = {**run_policy, "suspend": bool(suspended)}
    if actor_replicas is not None:
        spec["actor"] = {**(spec.get("actor") or {}), "replicas": actor_replicas}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpiralJob",
        "metadata": {"name": member_name(parent, slot), "namespace": namespace, "labels": member_labels(parent, slot)},
        "spec": spec,
    }


def hyperparameters_json(record: MemberRecord) -> str:
    """The ConfigMap's ``hyperparameters.json``: what :func:`spiral.learning.hyperparameters.parse_hyperparameters` reads."""
    return json.dumps({name.value: float(value) for name, value in record.member.hyperparameters.items()}, sort_keys=True)


def render_hyperparameters_config_map(parent: str, namespace: str, record: MemberRecord) -> dict[str, Any]:
    slot = record.member.slot
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": hyperparameters_config_map_name(parent, slot), "namespace": namespace, "labels": member_labels(parent, slot)},
        "data": {HYPERPARAMETERS_KEY: hyperparameters_json(record)},
    }


def render_copy_job(spec: SpiralJobSpec, parent: str, namespace: str, target: int, source: int, job_name: str) -> dict[str, Any]:
    """batch/v1 Job ``job_name``: copies member ``source``'s newest checkpoints over member ``target``'s.

    The source keeps training; its volume is mounted read-only and the copy reads each file through
    an open handle (``spiral.launch.population.copy_checkpoint``). With ReadWriteOnce claims the pod
    must run on the source's node (pod affinity to its policy learner), where the target's claim is
    then attached too: on a zonal volume in another zone the Job fails its deadline and the exploit
    is dropped with a warning Event (use ReadWriteMany storage for populations across zones).
    """
    source_member, target_member = member_name(parent, source), member_name(parent, target)
    pod_labels = {**labels(parent, "exploit"), MEMBER_LABEL: str(target)}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "serviceAccountName": service_account_name(target_member),
        "securityContext": pod_security_context(),
        "containers": [
            {
                "name": "copy-checkpoint",
                "image": spec.image,
                "imagePullPolicy": spec.image_pull_policy.value,
                "command": ["spiral", "population", "copy-checkpoint", f"{COPY_SOURCE_DIR}/checkpoints", f"{COPY_TARGET_DIR}/checkpoints"],
                "env": [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONUNBUFFERED", "value": "1"}],
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                "securityContext": container_security_context(),
                "volumeMounts": [
                    {"name": "source", "mountPath": COPY_SOURCE_DIR, "readOnly": True},
                    {"name": "target", "mountPath": COPY_TARGET_DIR},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }
        ],
        "volumes": [
            {"name": "source", "persistentVolumeClaim": {"claimName": checkpoint_claim_name(source_member, spec), "readOnly": True}},
            {"name": "target", "persistentVolumeClaim": {"claimName": checkpoint_claim_name(target_member, spec)}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
    }
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in spec.image_pull_secrets]
    learner = spec.policy_learner  # the copy runs where the learners run (their node pool)
    if learner.node_selector:
        pod_spec["nodeSelector"] = dict(learner.node_selector)
    if learner.tolerations:
        pod_spec["tolerations"] = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in learner.tolerations]
    if spec.checkpoint.access_mode == AccessMode.READ_WRITE_ONCE:
        pod_spec["affinity"] = {
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": selector_labels(source_member, Role.POLICY_LEARNER)}, "topologyKey": "kubernetes.io/hostname"}
                ]
            }
        }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "namespace": namespace, "labels": pod_labels},
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": COPY_DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": COPY_TTL_SECONDS,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }
