"""The operator running for real (``kopf.operator``) against KMock, Kopf's Kubernetes API emulator.

KMock stores objects and streams watch events but runs no controllers, so the tests play the
StatefulSet/Deployment controllers and the kubelet: they patch ``status.readyReplicas`` and create
or patch pods. The policy learner's /metrics is a real prometheus_client HTTP server fed by
``spiral.metrics``.

KMock also records every request, so each test ends with an RBAC audit: every request the operator
sent (Kopf's and :class:`KubeApi`'s, told from the test's own by the User-Agent) must be allowed by
:data:`spiral_operator.rbac.REQUIRED_RULES` in a Role of the watched namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from wsgiref.simple_server import WSGIServer

import jsonpatch
import kmock
import kopf
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, make_server

from spiral.metrics import create_metrics
from spiral_operator.handlers import Deps, build_registry, build_settings
from spiral_operator.kube import KubeApi
from spiral_operator.metrics import create_operator_metrics
from spiral_operator.progress import url_fetcher
from spiral_operator.rbac import REQUIRED_RULES, Grant, grants

NS = "ns1"
JOB = "paint"
JOBS = "spiral.dev/v1alpha1/spiraljobs"
INTERVAL = 0.2
#: User-Agent of the test's own API calls (creating and patching jobs), left out of the RBAC audit.
TEST_USER_AGENT = "spiral-tests"


def _declare_resources(server: kmock.KubernetesEmulator) -> None:
    server.resources[JOBS] = kmock.ResourceInfo(
        kind="SpiralJob", singular="spiraljob", namespaced=True, subresources={"status", "scale"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"}, shortnames={"sj"},
    )
    for key, kind in [("v1/pods", "Pod"), ("v1/events", "Event"), ("v1/services", "Service"), ("v1/configmaps", "ConfigMap"),
                      ("v1/serviceaccounts", "ServiceAccount"),
                      ("v1/persistentvolumeclaims", "PersistentVolumeClaim"), ("apps/v1/statefulsets", "StatefulSet"),
                      ("apps/v1/deployments", "Deployment"), ("networking.k8s.io/v1/networkpolicies", "NetworkPolicy"),
                      ("monitoring.coreos.com/v1/servicemonitors", "ServiceMonitor"), ("batch/v1/jobs", "Job")]:
        server.resources[key] = kmock.ResourceInfo(kind=kind, namespaced=True, verbs={"get", "list", "watch", "create", "patch", "delete"})
    # Kopf waits for these two to be discoverable before it starts watching anything.
    server.resources["v1/namespaces"] = kmock.ResourceInfo(kind="Namespace", namespaced=False, verbs={"get", "list", "watch"})
    server.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs={"get", "list", "watch"})


class VersionedEmulator(kmock.KubernetesEmulator):
    """KMock plus three API-server behaviours Kopf relies on.

    * Every write gets a new resourceVersion: Kopf skips events older than its own last patch by
      comparing them, and guards its JSON patches with a ``test`` on it.
    * A failed JSON-patch ``test`` is HTTP 422 (Kopf then retries on the next cycle), not 500.
    * ``metadata.generateName`` makes a unique name (Kopf's Events use it).
    * A created object gets a ``metadata.uid`` and ``generation`` 1 when it has none.
    """

    _counter = itertools.count(2)

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and request.action in (kmock.action.CREATE, kmock.action.UPDATE):
            version = str(next(self._counter))
            if isinstance(request.data, dict):
                meta = request.data.setdefault("metadata", {})
                if request.action == kmock.action.CREATE and not meta.get("name") and meta.get("generateName"):
                    meta["name"] = f"{meta['generateName']}{version}"
                if request.action == kmock.action.CREATE:
                    # Kopf keeps per-object memory by uid: two objects the operator created itself
                    # (a population's members) would otherwise share one, and one would never be handled.
                    meta.setdefault("uid", f"uid-{uuid.uuid4()}")
                    meta.setdefault("generation", 1)
                meta["resourceVersion"] = version
            elif isinstance(request.data, list):
                request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
        return await super()._handle(request)

    async def _render_error(self, exc: Exception) -> Any:
        if isinstance(exc, jsonpatch.JsonPatchTestFailed):
            exc = kmock.KubernetesError(status=422, reason="Invalid", message=str(exc))
        return await super()._render_error(exc)


# ------------------------------------------------------------------------------------ RBAC ---

#: Discovery URLs (Kopf's resource scan): non-resource URLs that the default ``system:discovery``
#: ClusterRole grants every authenticated user, so the chart need not.
_DISCOVERY = re.compile(r"^/(version|api|api/v1|apis|apis/[^/]+/[^/]+)/?$")
_WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def rbac_grant(request: Any) -> Grant | None:
    """The (apiGroup, resource[/subresource], verb) the API server's RBAC authoriser checks for a
    request, as in Kubernetes' RequestInfo; None for a non-resource URL."""
    if request.resource is None or not request.resource.plural:
        return None
    resource = f"{request.resource.plural}/{request.subresource}" if request.subresource else request.resource.plural
    method = str(request.method.value).upper()
    if method == "GET":
        verb = "watch" if request.params.get("watch") in ("true", "1") else "get" if request.name else "list"
    elif method == "DELETE":
        verb = "delete" if request.name else "deletecollection"
    else:
        verb = _WRITE_VERBS[method]
    return Grant(request.resource.group or "", resource, verb)


def audit(server: kmock.KubernetesEmulator) -> tuple[set[Grant], list[str]]:
    """(grants the operator used, requests REQUIRED_RULES in a Role of namespace NS would deny)."""
    allowed = grants(REQUIRED_RULES)
    used: set[Grant] = set()
    denied: list[str] = []
    for request in list(server):
        if request.headers.get("User-Agent") == TEST_USER_AGENT:
            continue
        where = f"{request.method.value} {request.url.path} (User-Agent {request.headers.get('User-Agent')!r})"
        grant = rbac_grant(request)
        if grant is None:
            if str(request.method.value).upper() != "GET" or not _DISCOVERY.match(request.url.path):
                denied.append(f"{where}: a non-resource URL other than discovery")
            continue
        used.add(grant)
        if grant not in allowed:
            denied.append(f"{where}: needs {grant}, which REQUIRED_RULES does not grant")
        if request.namespace != NS:
            denied.append(f"{where}: outside the watched namespace {NS!r}, so a Role there cannot allow it")
    return used, denied


pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60), pytest.mark.kmock(cls=VersionedEmulator)]


class Learner:
    """A stand-in policy learner process: just its real Prometheus endpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = create_metrics(self.registry)
        self.server: WSGIServer = make_server("127.0.0.1", 0, make_wsgi_app(self.registry), ThreadingWSGIServer)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Cluster:
    """Test-side API calls (in a thread: KMock serves on this event loop) and controller emulation."""

    def __init__(self, server: kmock.KubernetesEmulator) -> None:
        self.server = server
        self.api = KubeApi.for_host(str(server.url), user_agent=TEST_USER_AGENT)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def create_job(self, spec: dict[str, Any], name: str = JOB) -> None:
        body = {"apiVersion": "spiral.dev/v1alpha1", "kind": "SpiralJob",
                "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1, "resourceVersion": "1"}, "spec": spec}
        await self.call(self.api.request, "POST", f"/apis/spiral.dev/v1alpha1/namespaces/{NS}/spiraljobs", body=body)

    async def patch_job(self, spec: dict[str, Any], generation: int, name: str = JOB) -> None:
        body = {"metadata": {"generation": generation}, "spec": spec}
        await self.call(self.api.request, "PATCH", f"/apis/spiral.dev/v1alpha1/namespaces/{NS}/spiraljobs/{name}", body=body,
                        content_type="application/merge-patch+json")

    async def delete_job(self, name: str = JOB) -> None:
        await self.call(self.api.request, "DELETE", f"/apis/spiral.dev/v1alpha1/namespaces/{NS}/spiraljobs/{name}")

    def job(self, name: str = JOB) -> dict[str, Any] | None:
        return self.obj(JOBS, name)

    def obj(self, resource: str, name: str) -> dict[str, Any] | None:
        try:
            found = self.server.objects[resource, NS, name]
        except KeyError:
            return None
        return None if found.deleted else found.raw

    def writes(self, resource: str, name: str) -> int:
        """How many versions the emulator holds for an object (1 = created, never patched)."""
        return len(self.server.objects[resource, NS, name].history)

    async def set_ready(self, resource: str, name: str, ready: int) -> None:
        await eventually(lambda: self.obj(resource, name), what=name)
        self.server.objects[resource, NS, name].patch({"status": {"readyReplicas": ready}})

    async def all_ready(self, job: str = JOB, actors: int = 2, stateful: tuple[str, ...] = ("policy-learner", "discriminator-learner", "replay")) -> None:
        for role in stateful:
            await self.set_ready("apps/v1/statefulsets", f"{job}-{role}", 1)
        await self.set_ready("apps/v1/deployments", f"{job}-actor", actors)

    async def put_pod(self, role: str, *, uid: str, restarts: int = 0, exit_code: int | None = None, generation: int = 0,
                      phase: str = "Running", job: str = JOB) -> None:
        name = f"{job}-{role}-0"
        status: dict[str, Any] = {"name": role, "restartCount": restarts, "state": {"running": {}}}
        if exit_code is not None:
            status["lastState"] = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": NS, "uid": uid,
                            "labels": {"spiral.dev/job-name": job, "spiral.dev/role": role},
                            "annotations": {"spiral.dev/restart-generation": str(generation)}},
               "status": {"phase": phase, "containerStatuses": [status]}}
        self.server.objects["v1/pods", NS, name] = pod

    def events(self) -> list[dict[str, Any]]:
        return [obj.raw for (res, ns, _), obj in self.server.objects.items() if res.plural == "events" and not obj.deleted]

    def event_reasons(self) -> list[str]:
        return [e.get("reason", "") for e in self.events()]


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with contextlib.suppress(KeyError, TypeError, AssertionError, IndexError):
            result = check()
            if result:
                return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in job.get("status", {}).get("conditions", []) if c["type"] == type_), None)


#: A discriminator-reward job, so every role is rendered (l2 jobs have no replay or discriminator learner).
SPEC: dict[str, Any] = {
    "image": "ghcr.io/spiral-k8s/spiral:0.1.0",
    "reward": {"kind": "discriminator"},
    "training": {"totalFrames": 100000},
    "actor": {"replicas": 2, "minReplicas": 1, "maxReplicas": 4},
    "runPolicy": {"backoffLimit": 1},
}


@pytest_asyncio.fixture()
async def running(kmock: kmock.KubernetesEmulator) -> AsyncIterator[tuple[Cluster, Learner, CollectorRegistry]]:
    _declare_resources(kmock)
    learner = Learner()
    operator_registry = CollectorRegistry()
    deps = Deps(api=KubeApi.for_host(str(kmock.url)), fetch_metrics=url_fetcher(learner.url, 1.0),
                metrics=create_operator_metrics(operator_registry))

    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=str(kmock.url).rstrip("/"), insecure=True)

    settings = build_settings()
    settings.watching.reconnect_backoff = 0.1
    registry = build_registry(monitor_interval=INTERVAL, login=login)
    # Kopf gets its own thread and event loop (Kopf's "embedding" pattern): at exit it cancels every
    # task of its loop, which must not include pytest's; KMock keeps serving on the test's loop.
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(kopf.operator(
        registry=registry, settings=settings, namespaces=[NS], standalone=True,
        stop_flag=stop, ready_flag=ready, memo=kopf.Memo(deps=deps))), daemon=True)
    thread.start()
    assert await asyncio.to_thread(ready.wait, 10), "operator did not start"
    try:
        yield Cluster(kmock), learner, operator_registry
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive(), "operator did not stop"
        learner.close()
    _, denied = audit(kmock)
    assert not denied, "the operator made requests its RBAC rules deny:\n" + "\n".join(denied)


async def test_create_renders_owned_children_and_status(running: Any) -> None:
    cluster, learner, registry = running
    await cluster.create_job(SPEC)
    sts = await eventually(lambda: cluster.obj("apps/v1/statefulsets", f"{JOB}-policy-learner"), what="policy learner")
    owner = sts["metadata"]["ownerReferences"][0]
    assert owner == {"apiVersion": "spiral.dev/v1alpha1", "kind": "SpiralJob", "name": JOB, "uid": f"uid-{JOB}",
                     "controller": True, "blockOwnerDeletion": True}
    for resource, name in [("v1/configmaps", f"{JOB}-config"), ("v1/persistentvolumeclaims", f"{JOB}-checkpoints"),
                           ("apps/v1/deployments", f"{JOB}-actor"), ("v1/services", f"{JOB}-replay"),
                           ("networking.k8s.io/v1/networkpolicies", f"{JOB}-grpc")]:
        child = await eventually(lambda: cluster.obj(resource, name), what=name)
        assert child["metadata"]["ownerReferences"][0]["uid"] == f"uid-{JOB}"
    job = await eventually(lambda: (j := cluster.job()) and condition(j, "Created") and j, what="Created condition")
    assert job["status"]["phase"] == "Created"
    assert job["status"]["actorSelector"] == f"spiral.dev/job-name={JOB},spiral.dev/role=actor"
    assert job["status"]["observedGeneration"] == 1

    # The "controllers" report ready pods; the learner exports progress.
    learner.metrics.learner_frames.labels(JOB).inc(4321)
    learner.metrics.learner_policy_version.labels(JOB).set(12)
    await cluster.all_ready()
    job = await eventually(lambda: (j := cluster.job())["status"]["phase"] == "Running" and j.get("status", {}).get("progress") and j,
                           what="Running with progress")
    assert condition(job, "Running")["status"] == "True"
    assert job["status"]["actors"] == {"desired": 2, "ready": 2}
    assert job["status"]["progress"]["frames"] == 4321
    assert job["status"]["progress"]["policyVersion"] == 12
    await eventually(lambda: "ChildrenCreated" in cluster.event_reasons(), what="ChildrenCreated event")
    assert registry.get_sample_value("spiral_operator_reconciles_total", {"handler": "create", "result": "success"}) == 1


async def test_reconcile_is_idempotent_and_scaling_touches_only_actors(running: Any) -> None:
    cluster, _, _ = running
    await cluster.create_job(SPEC)
    await eventually(lambda: cluster.job() and condition(cluster.job(), "Created"), what="created")
    await asyncio.sleep(INTERVAL * 4)  # several monitor passes, each a full reconcile

    def versions() -> dict[tuple[str, str], int]:
        return {(res.plural, name): len(obj.history) for (res, _, name), obj in cluster.server.objects.items()
                if res.plural not in ("events", "spiraljobs")}

    before = versions()
    assert len(before) == 12  # 11 children + the job's ServiceAccount
    assert set(before.values()) == {1}, before  # created once, never re-written

    await cluster.patch_job({"actor": {"replicas": 3}}, generation=2)
    await eventually(lambda: cluster.obj("apps/v1/deployments", f"{JOB}-actor")["spec"]["replicas"] == 3, what="actors scaled")
    await asyncio.sleep(INTERVAL * 3)
    after = versions()
    assert {key for key in after if after[key] != before[key]} == {("deployments", f"{JOB}-actor")}
    assert after[("deployments", f"{JOB}-actor")] == 2  # one patch
    await eventually(lambda: cluster.job()["status"]["observedGeneration"] == 2, what="observedGeneration")


async def test_suspend_scales_everything_to_zero_and_resume_restores(running: Any) -> None:
    cluster, _, _ = running
    await cluster.create_job(SPEC)
    await eventually(lambda: cluster.obj("apps/v1/deployments", f"{JOB}-actor"), what="actors")
    await cluster.patch_job({"runPolicy": {"suspend": True}}, generation=2)
    await eventually(lambda: cluster.job()["status"]["phase"] == "Suspended", what="Suspended")
    for role in ("policy-learner", "discriminator-learner", "replay"):
        assert cluster.obj("apps/v1/statefulsets", f"{JOB}-{role}")["spec"]["replicas"] == 0
    assert cluster.obj("apps/v1/deployments", f"{JOB}-actor")["spec"]["replicas"] == 0
    assert condition(cluster.job(), "Suspended")["status"] == "True"
    assert cluster.obj("v1/persistentvolumeclaims", f"{JOB}-checkpoints") is not None  # the checkpoint survives

    await cluster.patch_job({"runPolicy": {"suspend": False}}, generation=3)
    await eventually(lambda: cluster.obj("apps/v1/deployments", f"{JOB}-actor")["spec"]["replicas"] == 2, what="resumed")
    assert cluster.obj("apps/v1/statefulsets", f"{JOB}-policy-learner")["spec"]["replicas"] == 1
    job = await eventually(lambda: (j := cluster.job()) and condition(j, "Suspended")["status"] == "False" and j, what="resumed status")
    assert condition(job, "Suspended")["reason"] == "Resumed"
    assert job["status"]["phase"] != "Suspended"


async def test_learner_crash_triggers_one_coordinated_restart_then_backoff_fails(running: Any) -> None:
    cluster, _, _ = running
    await cluster.create_job(SPEC)  # backoffLimit 1
    await eventually(lambda: cluster.obj("apps/v1/statefulsets", f"{JOB}-replay"), what="children")
    await cluster.all_ready()
    for role in ("policy-learner", "discriminator-learner", "replay"):
        await cluster.put_pod(role, uid=f"{role}-a")
    await eventually(lambda: cluster.job()["status"]["phase"] == "Running", what="Running")

    # The learner and, in its wake, the replay crash: one incident, one restart.
    await cluster.put_pod("policy-learner", uid="policy-learner-a", restarts=1, exit_code=1)
    await cluster.put_pod("replay", uid="replay-a", restarts=1, exit_code=2)
    job = await eventually(lambda: (j := cluster.job())["status"].get("restartCount") == 1 and j, what="restart 1")
    assert job["status"]["phase"] == "Restarting"
    assert condition(job, "Restarting")["reason"] == "CoordinatedRestart"
    for role in ("policy-learner", "discriminator-learner", "replay"):
        template = cluster.obj("apps/v1/statefulsets", f"{JOB}-{role}")["spec"]["template"]
        assert template["metadata"]["annotations"]["spiral.dev/restart-generation"] == "1"
    # Old-generation pods were deleted so all three come back together.
    await eventually(lambda: all(cluster.obj("v1/pods", f"{JOB}-{r}-0") is None for r in ("policy-learner", "discriminator-learner", "replay")),
                     what="old pods deleted")
    assert cluster.obj("apps/v1/deployments", f"{JOB}-actor")["spec"]["template"]["metadata"]["annotations"]["spiral.dev/restart-generation"] == "0"
    await asyncio.sleep(INTERVAL * 3)
    assert cluster.job()["status"]["restartCount"] == 1  # counted once

    # The StatefulSets bring the pods back on generation 1; the job runs again.
    for role in ("policy-learner", "discriminator-learner", "replay"):
        await cluster.put_pod(role, uid=f"{role}-b", generation=1)
    job = await eventually(lambda: (j := cluster.job())["status"]["phase"] == "Running" and j, what="Running again")
    assert condition(job, "Restarting")["status"] == "False"

    # A second crash exceeds backoffLimit 1 → Failed, and cleanPodPolicy Running stops all but the learner.
    await cluster.put_pod("discriminator-learner", uid="discriminator-learner-b", restarts=1, exit_code=137, generation=1)
    job = await eventually(lambda: (j := cluster.job())["status"]["phase"] == "Failed" and j, what="Failed")
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    assert "backoffLimit is 1" in condition(job, "Failed")["message"]
    assert job["status"]["restartCount"] == 1
    await eventually(lambda: cluster.obj("apps/v1/deployments", f"{JOB}-actor")["spec"]["replicas"] == 0, what="cleanup")
    assert cluster.obj("apps/v1/statefulsets", f"{JOB}-replay")["spec"]["replicas"] == 0
    assert cluster.obj("apps/v1/statefulsets", f"{JOB}-policy-learner")["spec"]["replicas"] == 1
    # Events are posted asynchronously by Kopf's poster task.
    await eventually(lambda: {"CoordinatedRestart", "BackoffLimitExceeded"} <= set(cluster.event_reasons()), what="events")


async def test_learner_exit_zero_succeeds_and_ttl_deletes_the_job(running: Any) -> None:
    cluster, _, _ = running
    await cluster.create_job({**SPEC, "runPolicy": {"ttlSecondsAfterFinished": 1, "cleanPodPolicy": "All"}})
    await eventually(lambda: cluster.obj("apps/v1/statefulsets", f"{JOB}-replay"), what="children")
    await cluster.all_ready()
    await cluster.put_pod("policy-learner", uid="pl", restarts=1, exit_code=0)
    job = await eventually(lambda: (j := cluster.job()) and j["status"]["phase"] == "Succeeded" and j, what="Succeeded")
    assert condition(job, "Succeeded")["reason"] == "BudgetReached"
    await eventually(lambda: cluster.obj("apps/v1/statefulsets", f"{JOB}-policy-learner")["spec"]["replicas"] == 0, what="All cleaned")
    await eventually(lambda: cluster.job() is None, timeout=10, what="TTL deletion")


async def test_invalid_spec_fails_with_a_message_and_no_retry_loop(running: Any) -> None:
    cluster, _, registry = running
    # Passes a sloppy schema check but not the operator: l2 reward needs a conditional job.
    await cluster.create_job({**SPEC, "reward": {"kind": "l2"}, "mode": "unconditional"})
    job = await eventually(lambda: (j := cluster.job()) and j.get("status", {}).get("phase") == "Failed" and j, what="Failed")
    failed = condition(job, "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert "reward.kind 'l2' needs a target" in failed["message"]
    assert cluster.obj("apps/v1/statefulsets", f"{JOB}-policy-learner") is None
    # Decided once, not retried: the create handler and the first timer pass may both see the new
    # object, but afterwards nothing repeats (no crash loop, no event storm).
    await eventually(lambda: "InvalidSpec" in cluster.event_reasons(), what="InvalidSpec event")
    await asyncio.sleep(INTERVAL * 2)
    settled = cluster.event_reasons().count("InvalidSpec")
    errors = registry.get_sample_value("spiral_operator_reconcile_errors_total", {"handler": "create", "kind": "permanent"}) or 0
    await asyncio.sleep(INTERVAL * 4)
    assert settled <= 2 and cluster.event_reasons().count("InvalidSpec") == settled
    assert errors <= 1
    assert (registry.get_sample_value("spiral_operator_reconcile_errors_total", {"handler": "create", "kind": "permanent"}) or 0) == errors
    # Fixing the spec starts the job over.
    await cluster.patch_job({"mode": "conditional"}, generation=2)
    await eventually(lambda: cluster.obj("apps/v1/statefulsets", f"{JOB}-policy-learner"), what="children after fix")
    await eventually(lambda: cluster.job()["status"]["phase"] == "Created", what="Created after fix")


#: What only a population parent asks for: its member SpiralJobs (read by name, created) and its copy Jobs.
POPULATION_GRANTS = {Grant("spiral.dev", "spiraljobs", "get"), Grant("spiral.dev", "spiraljobs", "create"),
                     Grant("batch", "jobs", "get"), Grant("batch", "jobs", "create")}


async def test_a_population_runs_members_and_one_exploit_stops_copies_and_resumes_the_worse_member(running: Any, kmock: kmock.KubernetesEmulator) -> None:
    """Issue #16 on the operator: a parent of two members. The stand-in learner exports both members'
    updates and held-out L2 (labelled by member job); the test plays the StatefulSet controllers and
    the batch Job controller (it sets the copy Job's status; nothing copies files here — the
    cluster-in-a-box test and ``spiral population copy-checkpoint``'s own test do)."""
    cluster, learner, registry = running
    spec = {**SPEC, "reward": {"kind": "l2"}, "population": {"size": 2, "readyAfterUpdates": 5, "exploit": {"fraction": 0.5}}}
    await cluster.create_job(spec)
    members = [await eventually(lambda slot=slot: cluster.job(f"{JOB}-m{slot}"), what=f"member {slot}") for slot in (0, 1)]
    for slot, member in enumerate(members):
        assert member["metadata"]["ownerReferences"][0]["uid"] == f"uid-{JOB}"
        assert member["metadata"]["labels"]["spiral.dev/population"] == JOB and member["metadata"]["labels"]["spiral.dev/member"] == str(slot)
        assert "population" not in member["spec"] and member["spec"]["hyperparametersConfigMap"] == f"{JOB}-m{slot}-hyperparameters"
        assert member["spec"]["runPolicy"]["suspend"] is False
    seeds = [m["spec"]["training"]["seed"] for m in members]
    assert seeds[1] == seeds[0] + 1  # each member its own seed
    config_maps = [await eventually(lambda slot=slot: cluster.obj("v1/configmaps", f"{JOB}-m{slot}-hyperparameters"), what="ConfigMap") for slot in (0, 1)]
    before = [json.loads(c["data"]["hyperparameters.json"]) for c in config_maps]
    assert set(before[0]) == set(before[1]) == {"learning_rate", "entropy_coef"}  # l2 reward: no critic
    assert before[0] != before[1]  # member 0 trains with the configured values, the others with values explored around them
    # The parent runs no workloads of its own; each member is reconciled as a SpiralJob of its own.
    assert cluster.obj("apps/v1/statefulsets", f"{JOB}-policy-learner") is None
    for slot in (0, 1):
        await cluster.all_ready(job=f"{JOB}-m{slot}", stateful=("policy-learner",))

    # Both members report; member 1 is worse. Ready after 5 updates since first seen.
    for slot, l2 in ((0, 0.1), (1, 0.3)):
        learner.metrics.learner_policy_version.labels(f"{JOB}-m{slot}").set(3)
        learner.metrics.learner_l2.labels(f"{JOB}-m{slot}", "held_out").set(l2)
    await eventually(lambda: cluster.job()["status"]["population"].get("bestMember") == 0, what="members measured")
    parent = cluster.job()
    assert parent["status"]["phase"] == "Running" and parent["status"]["population"]["exploits"] == 0
    await eventually(lambda: registry.get_sample_value("spiral_operator_population_member_metric", {"namespace": NS, "job": JOB, "member": "1"}) == 0.3,
                     what="member metric gauge")
    for slot in (0, 1):
        learner.metrics.learner_policy_version.labels(f"{JOB}-m{slot}").set(20)

    # 1. Stopping: only member 1 is suspended; member 0 keeps training.
    await eventually(lambda: cluster.job(f"{JOB}-m1")["spec"]["runPolicy"]["suspend"] is True, what="member 1 stopping")
    assert cluster.job(f"{JOB}-m0")["spec"]["runPolicy"]["suspend"] is False
    await eventually(lambda: "PopulationExploit" in cluster.event_reasons(), what="PopulationExploit event")
    exploit_event = next(e for e in cluster.events() if e["reason"] == "PopulationExploit")
    assert "member 1 (held_out_l2 0.3)" in exploit_event["message"] and "member 0 (held_out_l2 0.1" in exploit_event["message"]

    # 2. Copying: member 1 is Suspended with no learner pods left, so the copy Job is created.
    copy_job = await eventually(lambda: cluster.obj("batch/v1/jobs", f"{JOB}-m1-exploit-1"), what="copy Job")
    assert copy_job["metadata"]["ownerReferences"][0]["uid"] == f"uid-{JOB}"
    pod = copy_job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"] == ["spiral", "population", "copy-checkpoint", "/source/checkpoints", "/target/checkpoints"]
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"source": {"claimName": f"{JOB}-m0-checkpoints", "readOnly": True}, "target": {"claimName": f"{JOB}-m1-checkpoints"}}
    await eventually(lambda: cluster.job()["status"]["population"]["members"][1]["exploit"]["stage"] == "Copying", what="Copying stage")

    # 3. The Job succeeds: member 1 resumes from the copy with member 0's seed and explored hyperparameters.
    kmock.objects["batch/v1/jobs", NS, f"{JOB}-m1-exploit-1"].patch({"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}})
    await eventually(lambda: cluster.job(f"{JOB}-m1")["spec"]["runPolicy"]["suspend"] is False, what="member 1 resumed")
    resumed = cluster.job(f"{JOB}-m1")
    assert resumed["spec"]["training"]["seed"] == seeds[0]  # its checkpoint was trained with member 0's seed
    after = json.loads(cluster.obj("v1/configmaps", f"{JOB}-m1-hyperparameters")["data"]["hyperparameters.json"])
    assert after != before[1] and set(after) == set(before[1])
    record = await eventually(lambda: (r := cluster.job()["status"]["population"]["members"][1]) and "exploit" not in r and r, what="exploit done")
    assert [step["source"] for step in record["lineage"]] == [0]
    await eventually(lambda: "PopulationExplore" in cluster.event_reasons(), what="PopulationExplore event")
    labels = {"namespace": NS, "job": JOB, "member": "1"}
    await eventually(lambda: registry.get_sample_value("spiral_operator_population_member_exploits", labels) == 1, what="exploit gauge")
    assert registry.get_sample_value("spiral_operator_population_member_source", labels) == 0
    assert registry.get_sample_value("spiral_operator_population_best_member", {"namespace": NS, "job": JOB}) == 0
    for name, value in after.items():
        assert registry.get_sample_value("spiral_operator_population_member_hyperparameter", {**labels, "name": name}) == value
    assert cluster.job()["status"]["population"]["exploits"] == 1
    used, _ = audit(kmock)
    assert POPULATION_GRANTS <= used


async def test_autoscaler_adds_an_actor_while_the_learner_starves_and_removes_one_while_actors_wait(running: Any) -> None:
    cluster, learner, _ = running
    spec = {**SPEC, "actor": {"replicas": 2, "minReplicas": 1, "maxReplicas": 3, "autoscaling": {"enabled": True, "cooldownSeconds": 0}}}
    #: Seconds per second the stand-in learner's wait counters grow by: first it starves, later the actors wait.
    rates = {"learner": 0.8, "actors": 0.0}

    async def count_waits() -> None:
        while True:
            learner.metrics.learner_data_wait.labels(JOB).inc(rates["learner"] * 0.1)
            learner.metrics.learner_actor_wait.labels(JOB).inc(rates["actors"] * 0.1)
            await asyncio.sleep(0.1)

    counting = asyncio.create_task(count_waits())
    try:
        await cluster.create_job(spec)
        await eventually(lambda: cluster.obj("apps/v1/deployments", f"{JOB}-actor"), what="actors")
        await cluster.all_ready(actors=2)
        await eventually(lambda: cluster.job()["spec"]["actor"]["replicas"] == 3, timeout=20, what="scaled up to 3")
        await eventually(lambda: cluster.obj("apps/v1/deployments", f"{JOB}-actor")["spec"]["replicas"] == 3, what="deployment scaled")
        await cluster.set_ready("apps/v1/deployments", f"{JOB}-actor", 3)
        await asyncio.sleep(3)
        assert cluster.job()["spec"]["actor"]["replicas"] == 3  # bounded by maxReplicas
        rates.update(learner=0.0, actors=2.0)  # three actors waiting on a busy learner: two are enough
        await eventually(lambda: cluster.job()["spec"]["actor"]["replicas"] == 2, timeout=20, what="scaled down")
        await eventually(lambda: cluster.event_reasons().count("ActorsScaled") >= 2, what="ActorsScaled events")
        assert cluster.job()["status"]["autoscaling"]["actorWaitRatio"] > 1.2
    finally:
        counting.cancel()


async def test_l2_job_runs_with_a_policy_learner_and_actors_only(running: Any) -> None:
    cluster, _, _ = running
    await cluster.create_job({**SPEC, "reward": {"kind": "l2"}})
    await eventually(lambda: cluster.job() and condition(cluster.job(), "Created"), what="created")
    for resource in ("apps/v1/statefulsets", "v1/services"):
        assert cluster.obj(resource, f"{JOB}-policy-learner") is not None
        assert cluster.obj(resource, f"{JOB}-replay") is None and cluster.obj(resource, f"{JOB}-discriminator-learner") is None
    await cluster.all_ready(stateful=("policy-learner",))
    job = await eventually(lambda: (j := cluster.job())["status"]["phase"] == "Running" and j, what="Running without replay")
    assert condition(job, "Running")["message"] == "policy-learner and actors are ready"
    assert "replay" not in job["status"] and "discriminatorLearner" not in job["status"]


async def test_delete_releases_the_job(running: Any) -> None:
    cluster, _, _ = running
    await cluster.create_job(SPEC)
    await eventually(lambda: cluster.job() and "spiral.dev/finalizer" in cluster.job()["metadata"].get("finalizers", []), what="finalizer")
    await cluster.delete_job()
    await eventually(lambda: cluster.job() is None, what="job deleted")


async def test_operator_needs_every_rbac_rule_and_reverts_drift_in_its_children(running: Any, kmock: kmock.KubernetesEmulator) -> None:
    """A job's whole life (children incl. a ServiceMonitor, drift, restart, success, TTL) uses each
    requested grant of REQUIRED_RULES: the list has nothing to spare (the fixture checks nothing is missing)."""
    cluster, _, _ = running
    spec = {**SPEC, "monitoring": {"serviceMonitor": True},
            "runPolicy": {"backoffLimit": 1, "ttlSecondsAfterFinished": 1, "cleanPodPolicy": "All"}}
    await cluster.create_job(spec)
    children = [("v1/configmaps", f"{JOB}-config"), ("v1/serviceaccounts", f"{JOB}-pods"),
                ("v1/persistentvolumeclaims", f"{JOB}-checkpoints"), ("v1/services", f"{JOB}-replay"),
                ("apps/v1/statefulsets", f"{JOB}-replay"), ("apps/v1/deployments", f"{JOB}-actor"),
                ("networking.k8s.io/v1/networkpolicies", f"{JOB}-grpc"), ("monitoring.coreos.com/v1/servicemonitors", JOB)]
    for resource, name in children:
        await eventually(lambda: cluster.obj(resource, name), what=f"{resource} {name}")

    # Someone edits a label the operator owns on every child: the next pass patches it back.
    for resource, name in children:
        cluster.server.objects[resource, NS, name].patch({"metadata": {"labels": {"spiral.dev/job-name": "edited"}}})
    for resource, name in children:
        await eventually(lambda: cluster.obj(resource, name)["metadata"]["labels"]["spiral.dev/job-name"] == JOB, what=f"{name} reverted")

    # A learner crash: the coordinated restart deletes the old pods.
    await cluster.all_ready()
    for role in ("policy-learner", "discriminator-learner", "replay"):
        await cluster.put_pod(role, uid=f"{role}-a")
    await eventually(lambda: cluster.job()["status"]["phase"] == "Running", what="Running")
    await cluster.put_pod("policy-learner", uid="policy-learner-a", restarts=1, exit_code=1)
    await eventually(lambda: cluster.obj("v1/pods", f"{JOB}-replay-0") is None, what="old pods deleted")

    # The learner finishes: Succeeded, then the TTL deletes the job.
    await cluster.put_pod("policy-learner", uid="policy-learner-b", restarts=1, exit_code=0, generation=1)
    await eventually(lambda: cluster.job() is None, what="TTL deletion")
    await eventually(lambda: "BudgetReached" in cluster.event_reasons(), what="events")

    used, denied = audit(kmock)
    assert not denied, denied
    # A single job asks for everything but the population's grants (used by the population test above).
    requested = grants(rule for rule in REQUIRED_RULES if rule.requested) - POPULATION_GRANTS
    assert sorted(requested - used) == [], "granted but never used; drop them from REQUIRED_RULES or explain"
    assert used == requested
