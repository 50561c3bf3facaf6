"""The emulated Kubernetes API server of the cluster-in-a-box: KMock plus the API-server behaviours the operator, the controllers and the kubelet rely on.

KMock stores objects and serves list/watch/get/create/patch/delete. :class:`ClusterEmulator` adds:

* ``metadata.uid``, ``creationTimestamp`` and ``generation`` on create, a new ``resourceVersion`` on
  every write, and ``generation + 1`` when a write touches ``spec`` (``observedGeneration`` and
  Kopf's event ordering depend on them); ``generateName`` makes a unique name (Kopf's Events);
* ``labelSelector`` on list requests (equality selectors, ``k=v,k2=v2``), so each job sees only its own pods;
* the SpiralJob ``scale`` subresource, mapped onto the spec and status through the paths the
  generated CRD declares (:func:`spiral_operator.crd.build_crd`), as ``kubectl scale`` uses it;
* HTTP 422 for a failed JSON-patch ``test`` (Kopf then retries), not 500;
* a request log that holds only the requests in flight: KMock scans it to match each request, and
  over a whole job's life the scan made every request slower until the operator's passes stalled.

It runs on its own event loop in a background thread (:class:`ApiServer`), so the tests, the
controllers and the kubelet all talk to it over HTTP like real clients.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import threading
import uuid
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock

from spiral_operator.crd import build_crd

NAMESPACE = "spiral-e2e"
JOBS = "spiral.dev/v1alpha1/spiraljobs"
#: The namespaced kinds the operator, the controllers and the kubelet read or write.
RESOURCES: dict[str, str] = {
    "v1/pods": "Pod",
    "v1/events": "Event",
    "v1/services": "Service",
    "v1/configmaps": "ConfigMap",
    "v1/serviceaccounts": "ServiceAccount",
    "v1/persistentvolumeclaims": "PersistentVolumeClaim",
    "apps/v1/statefulsets": "StatefulSet",
    "apps/v1/deployments": "Deployment",
    "networking.k8s.io/v1/networkpolicies": "NetworkPolicy",
    "monitoring.coreos.com/v1/servicemonitors": "ServiceMonitor",
    "batch/v1/jobs": "Job",
}


@functools.cache
def _scale_paths() -> dict[str, str]:
    """The CRD's scale subresource: ``specReplicasPath`` etc. (``.spec.actor.replicas``)."""
    return build_crd()["spec"]["versions"][0]["subresources"]["scale"]


def _get_path(obj: dict[str, Any], path: str) -> Any:
    node: Any = obj
    for key in path.strip(".").split("."):
        node = (node or {}).get(key)
    return node


def _nested(path: str, value: Any) -> dict[str, Any]:
    """``.spec.actor.replicas`` → ``{"spec": {"actor": {"replicas": value}}}``."""
    result: Any = value
    for key in reversed(path.strip(".").split(".")):
        result = {key: result}
    return result


def selector_matches(selector: str | None, labels: dict[str, str] | None) -> bool:
    """An equality-based label selector (``k=v,k2==v2``); empty matches everything."""
    labels = labels or {}
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.replace("==", "=").partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """KMock with the API-server behaviours listed in the module docstring."""

    _versions: Any = attrs.field(factory=lambda: itertools.count(2), init=False)
    _in_flight: list[kmock.Request] = attrs.field(factory=list, init=False)

    def _bump(self, request: kmock.Request) -> None:
        version = str(next(self._versions))
        if isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if request.action == kmock.action.CREATE:
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = f"{meta['generateName']}{version}"
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
                meta.setdefault("generation", 1)
            elif "spec" in request.data and request.subresource in (None, "scale"):
                meta["generation"] = self._generation(request) + 1
            meta["resourceVersion"] = version
        elif isinstance(request.data, list):
            if any(str(op.get("path", "")).startswith("/spec") for op in request.data):
                request.data.append({"op": "replace", "path": "/metadata/generation", "value": self._generation(request) + 1})
            request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})

    def _generation(self, request: kmock.Request) -> int:
        try:
            current = self.objects[request.resource, request.namespace, request.name]
        except KeyError:
            return 1
        return int((current.raw.get("metadata") or {}).get("generation", 1))

    def _stored(self, request: kmock.Request) -> dict[str, Any] | None:
        try:
            found = self.objects[request.resource, request.namespace, request.name]
        except KeyError:
            return None
        return None if found.deleted else found.raw

    def _scale(self, obj: dict[str, Any]) -> dict[str, Any]:
        paths = _scale_paths()
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {k: obj["metadata"].get(k) for k in ("name", "namespace", "uid", "resourceVersion")},
            "spec": {"replicas": _get_path(obj, paths["specReplicasPath"]) or 0},
            "status": {"replicas": _get_path(obj, paths["statusReplicasPath"]) or 0, "selector": _get_path(obj, paths["labelSelectorPath"]) or ""},
        }

    async def _handle(self, request: kmock.Request) -> Any:
        # KMock matches each request against its reactions by scanning its request log, so a log that
        # grows without bound makes every request slower than the last (30 ms after a few hundred,
        # and the operator's passes stall). Keep only the requests still being served: the tests
        # read the objects, not the log.
        self._in_flight.append(request)
        self._requests[:] = [r for r in self._requests if any(r is f for f in self._in_flight)]
        try:
            return await self._serve(request)
        finally:
            self._in_flight[:] = [f for f in self._in_flight if f is not request]

    async def _serve(self, request: kmock.Request) -> Any:
        if request.resource is not None and request.subresource == "scale":
            stored = self._stored(request)
            if stored is None:
                raise kmock.KubernetesObjectNotFoundError()
            if request.action == kmock.action.UPDATE and isinstance(request.data, dict):
                replicas = (request.data.get("spec") or {}).get("replicas")
                request.data.clear()
                request.data.update(_nested(_scale_paths()["specReplicasPath"], replicas))
                # The write lands on the object's spec, as the API server does it (KMock patches the
                # object whatever the subresource; _bump counts it as a spec write).
                self._bump(request)
                await super()._handle(request)
                stored = self._stored(request) or stored
            return aiohttp.web.json_response(self._scale(stored))
        if request.resource is not None and request.action in (kmock.action.CREATE, kmock.action.UPDATE):
            self._bump(request)
        return await super()._handle(request)

    async def _serve_list(self, request: kmock.Request) -> Any:
        result = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            result["items"] = [o for o in result["items"] if selector_matches(selector, (o.get("metadata") or {}).get("labels"))]
        return result

    async def _render_error(self, exc: Exception) -> Any:
        if isinstance(exc, jsonpatch.JsonPatchTestFailed):
            exc = kmock.KubernetesError(status=422, reason="Invalid", message=str(exc))
        return await super()._render_error(exc)


def declare_resources(server: kmock.KubernetesEmulator) -> None:
    server.resources[JOBS] = kmock.ResourceInfo(
        kind="SpiralJob", singular="spiraljob", namespaced=True, subresources={"status", "scale"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"}, shortnames={"sj"},
    )  # fmt: skip
    for key, kind in RESOURCES.items():
        server.resources[key] = kmock.ResourceInfo(kind=kind, namespaced=True, subresources={"status"}, verbs={"get", "list", "watch", "create", "patch", "delete"})
    # Kopf waits for these two to be discoverable before it watches anything.
    server.resources["v1/namespaces"] = kmock.ResourceInfo(kind="Namespace", namespaced=False, verbs={"get", "list", "watch"})
    server.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs={"get", "list", "watch"}
    )


class ApiServer:
    """:class:`ClusterEmulator` served over HTTP on 127.0.0.1, on its own event loop and thread."""

    def __init__(self) -> None:
        self.emulator: ClusterEmulator | None = None
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), name="api-server", daemon=True)

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
            declare_resources(emulator)
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stopped.wait()

    def start(self) -> "ApiServer":
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("the emulated API server did not start within 15 s")
        return self

    def stop(self) -> None:
        if self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)
