"""The kube-controller-manager of the cluster-in-a-box: StatefulSet, Deployment, Job and garbage-collector controllers.

One thread polls the emulated API and, like the real controllers, only through it:

* **StatefulSet**: pods ``NAME-0 … NAME-(replicas-1)`` from the pod template, owned by the set; a
  pod whose template revision is outdated (``updateStrategy: RollingUpdate``) is deleted and comes
  back on the new revision once its old incarnation is gone; ``status.readyReplicas`` counts Ready pods.
* **Deployment**: pods ``NAME-<template hash>-<n>`` owned by the Deployment (no ReplicaSet in
  between); scaling creates or deletes pods, a template change replaces the old pods.
* **Job** (batch/v1): one pod ``NAME-<n>`` at a time from the template, owned by the Job, labelled
  ``job-name``; a Succeeded pod completes the Job (``status.succeeded``, condition ``Complete``), a
  Failed one is replaced until ``spec.backoffLimit`` failures, then the Job is ``Failed``
  (``BackoffLimitExceeded``). Not emulated: parallelism and completions above 1,
  ``activeDeadlineSeconds``, ``ttlSecondsAfterFinished``, pod failure policies.
* **Garbage collector**: an object whose every owner (``ownerReferences[].uid``) is gone is deleted,
  so deleting a SpiralJob removes its children and, through them, their pods (background propagation).

Not emulated: ReplicaSets, surge/unavailability budgets, ordered pod management, pod disruption.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import logging
import threading
from typing import Any

from spiral_operator.kube import KubeApi, KubeApiError

log = logging.getLogger(__name__)

#: Kinds whose objects can be owned by something, with their collection paths under a namespace.
COLLECTIONS: dict[str, str] = {
    "SpiralJob": "/apis/spiral.dev/v1alpha1/namespaces/{ns}/spiraljobs",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "PersistentVolumeClaim": "/api/v1/namespaces/{ns}/persistentvolumeclaims",
    "Service": "/api/v1/namespaces/{ns}/services",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    "StatefulSet": "/apis/apps/v1/namespaces/{ns}/statefulsets",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "Pod": "/api/v1/namespaces/{ns}/pods",
}


def template_hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions) and not pod["metadata"].get("deletionTimestamp")


def owned_by(pod: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(ref.get("uid") == owner["metadata"]["uid"] for ref in pod["metadata"].get("ownerReferences") or [])


class Controllers:
    """The four controllers of the module docstring, in one polling thread."""

    #: The garbage collector lists every kind; it runs on every this-many passes only.
    GC_EVERY_PASSES = 5

    def __init__(self, api: KubeApi, namespace: str, poll_seconds: float = 0.3) -> None:
        self.api = api
        self.namespace = namespace
        self.poll_seconds = poll_seconds
        self.errors: list[str] = []
        self._counter = 0
        self._passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="controllers", daemon=True)

    def start(self) -> "Controllers":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except KubeApiError as err:
                log.debug("controllers: API error %s", err)
            except Exception as err:  # noqa: BLE001 - keep going; the test reads the errors
                log.exception("controller pass failed")
                self.errors.append(repr(err))
            self._stop.wait(self.poll_seconds)

    def _list(self, kind: str) -> list[dict[str, Any]]:
        return (self.api.request("GET", COLLECTIONS[kind].format(ns=self.namespace)) or {}).get("items") or []

    def _delete(self, kind: str, name: str) -> None:
        try:
            self.api.request("DELETE", f"{COLLECTIONS[kind].format(ns=self.namespace)}/{name}")
        except KubeApiError as err:
            log.debug("delete %s %s: %s", kind, name, err)

    def sync(self) -> None:
        self._passes += 1
        collect = self._passes % self.GC_EVERY_PASSES == 0
        kinds = COLLECTIONS if collect else ("Pod", "StatefulSet", "Deployment", "Job")
        objects = {kind: self._list(kind) for kind in kinds}
        pods = objects["Pod"]
        for sts in objects["StatefulSet"]:
            self._statefulset(sts, [p for p in pods if owned_by(p, sts)])
        for deployment in objects["Deployment"]:
            self._deployment(deployment, [p for p in pods if owned_by(p, deployment)])
        for job in objects["Job"]:
            self._job(job, [p for p in pods if owned_by(p, job)])
        if collect:
            self._collect_garbage(objects)

    # ------------------------------------------------------------------------- workloads ---

    def _pod(self, owner: dict[str, Any], name: str, revision: str, extra_labels: dict[str, str]) -> dict[str, Any]:
        template = copy.deepcopy(owner["spec"]["template"])
        meta = template.get("metadata") or {}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {**(meta.get("labels") or {}), **extra_labels},
                "annotations": dict(meta.get("annotations") or {}),
                "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
                                     "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}],
            },  # fmt: skip
            "spec": template.get("spec") or {},
            "status": {"phase": "Pending"},
        }
        pod["metadata"]["labels"]["cluster.test/revision"] = revision
        return pod

    def _create(self, pod: dict[str, Any]) -> None:
        try:
            self.api.request("POST", COLLECTIONS["Pod"].format(ns=self.namespace), body=pod)
        except KubeApiError as err:
            if err.status != 409:  # 409: the old incarnation is still terminating; next pass
                raise

    def _status(self, kind: str, owner: dict[str, Any], status: dict[str, Any]) -> None:
        current = owner.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return
        path = f"{COLLECTIONS[kind].format(ns=self.namespace)}/{owner['metadata']['name']}/status"
        self.api.request("PATCH", path, body={"status": status}, content_type="application/merge-patch+json")

    def _statefulset(self, sts: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        name, replicas = sts["metadata"]["name"], int(sts["spec"].get("replicas", 1))
        revision = template_hash(sts["spec"]["template"])
        by_name = {p["metadata"]["name"]: p for p in pods}
        for ordinal in range(replicas):
            pod_name = f"{name}-{ordinal}"
            pod = by_name.get(pod_name)
            if pod is None:
                extra = {"statefulset.kubernetes.io/pod-name": pod_name, "apps.kubernetes.io/pod-index": str(ordinal)}
                new = self._pod(sts, pod_name, revision, extra)
                new["spec"] = {**new["spec"], "hostname": pod_name, "subdomain": sts["spec"].get("serviceName", name)}
                self._create(new)
            elif pod["metadata"]["labels"].get("cluster.test/revision") != revision and not pod["metadata"].get("deletionTimestamp"):
                self._delete("Pod", pod_name)  # RollingUpdate: replaced on the new revision
        for pod_name, pod in by_name.items():
            if int(pod_name.rsplit("-", 1)[1]) >= replicas and not pod["metadata"].get("deletionTimestamp"):
                self._delete("Pod", pod_name)
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        self._status("StatefulSet", sts, {
            "observedGeneration": sts["metadata"].get("generation"),
            "replicas": len(live),
            "readyReplicas": sum(1 for p in live if is_ready(p)),
            "currentRevision": revision,
            "updatedReplicas": sum(1 for p in live if p["metadata"]["labels"].get("cluster.test/revision") == revision),
        })  # fmt: skip

    def _deployment(self, deployment: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        name, replicas = deployment["metadata"]["name"], int(deployment["spec"].get("replicas", 1))
        revision = template_hash(deployment["spec"]["template"])
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        current = [p for p in live if p["metadata"]["labels"].get("cluster.test/revision") == revision]
        for pod in live:
            if pod not in current:
                self._delete("Pod", pod["metadata"]["name"])  # a new template replaces the old pods
        # Scale down the newest first (they have done the least work).
        for pod in sorted(current, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)[: max(0, len(current) - replicas)]:
            self._delete("Pod", pod["metadata"]["name"])
        for _ in range(replicas - len(current)):
            self._counter += 1
            self._create(self._pod(deployment, f"{name}-{revision[:8]}-{self._counter}", revision, {"pod-template-hash": revision[:8]}))
        self._status("Deployment", deployment, {
            "observedGeneration": deployment["metadata"].get("generation"),
            "replicas": len(live),
            "readyReplicas": sum(1 for p in current if is_ready(p)),
            "updatedReplicas": len(current),
        })  # fmt: skip

    def _job(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        status = job.get("status") or {}
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in status.get("conditions") or []):
            return  # finished: its pods stay for their logs
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        succeeded, failed = phases.count("Succeeded"), phases.count("Failed")
        active = sum(1 for p, phase in zip(pods, phases, strict=True) if phase in (None, "Pending", "Running") and not p["metadata"].get("deletionTimestamp"))
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if succeeded:
            condition = {"type": "Complete", "status": "True", "reason": "Completed", "lastTransitionTime": now}
            self._status("Job", job, {"active": 0, "succeeded": succeeded, "failed": failed, "completionTime": now, "conditions": [condition]})
            return
        if failed > int(job["spec"].get("backoffLimit", 6)):
            condition = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": now,
                         "message": "Job has reached the specified backoff limit"}  # fmt: skip
            self._status("Job", job, {"active": 0, "failed": failed, "conditions": [condition]})
            return
        if active == 0:
            self._counter += 1
            name = job["metadata"]["name"]
            self._create(self._pod(job, f"{name}-{self._counter}", template_hash(job["spec"]["template"]), {"job-name": name}))
        self._status("Job", job, {"active": max(active, 1), "failed": failed, "startTime": status.get("startTime") or now})

    # --------------------------------------------------------------------------------- gc ---

    def _collect_garbage(self, objects: dict[str, list[dict[str, Any]]]) -> None:
        uids = {o["metadata"].get("uid") for items in objects.values() for o in items}
        for kind, items in objects.items():
            for obj in items:
                refs = obj["metadata"].get("ownerReferences") or []
                if refs and not any(ref.get("uid") in uids for ref in refs) and not obj["metadata"].get("deletionTimestamp"):
                    log.info("garbage collector: deleting %s %s (its owner is gone)", kind, obj["metadata"]["name"])
                    self._delete(kind, obj["metadata"]["name"])
