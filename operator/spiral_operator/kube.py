"""The few Kubernetes API calls the operator makes, over the official client's ``ApiClient``.

One generic create-or-patch (:meth:`KubeApi.apply`) serves every child kind, so reconciling is
idempotent: an object that already matches is left alone (no write, no new resourceVersion); one that
differs is updated with server-side apply (field manager ``spiral-operator``), which also removes
fields the operator stopped rendering. Not thread-safe per call site beyond what urllib3's pool gives;
Kopf may call it from several handler threads, which the pool supports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import kubernetes.client
import kubernetes.config

FIELD_MANAGER = "spiral-operator"
#: Sent with every call, so audit logs (and the RBAC test) can tell the operator's own requests from Kopf's.
USER_AGENT = "spiral-operator"

#: kind → (plural, namespaced) for every kind the operator touches.
_RESOURCES: dict[str, str] = {
    "ConfigMap": "configmaps",
    "ServiceAccount": "serviceaccounts",
    "Service": "services",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "Pod": "pods",
    "StatefulSet": "statefulsets",
    "Deployment": "deployments",
    "NetworkPolicy": "networkpolicies",
    "ServiceMonitor": "servicemonitors",
    "SpiralJob": "spiraljobs",
    "Job": "jobs",
    "Event": "events",
}

ApplyResult = Literal["created", "patched", "unchanged"]


class KubeApiError(RuntimeError):
    """An API call failed; ``status`` is the HTTP status (0 when the server was unreachable)."""

    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        super().__init__(f"{method} {path} failed with HTTP {status}: {message}")
        self.status = status
        self.api_message = message


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    """``/api/v1/namespaces/NS/services`` or ``/apis/GROUP/VERSION/namespaces/NS/PLURAL``.

    Raises:
        KeyError: a kind the operator does not manage.
    """
    plural = _RESOURCES[kind]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}"


def object_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    return f"{collection_path(api_version, kind, namespace)}/{name}"


def is_subset(desired: Any, actual: Any) -> bool:
    """True when every field of ``desired`` has the same value in ``actual`` (server defaults ignored)."""
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(k in actual and is_subset(v, actual[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(actual, list) and len(desired) == len(actual) and all(is_subset(d, a) for d, a in zip(desired, actual, strict=True))
    # Scalars: Python's == already treats the server's 1.0 and our 1 as equal.
    return desired == actual


class KubeApi:
    """Generic JSON calls through ``kubernetes.client.ApiClient`` (auth, TLS and proxies come from it)."""

    def __init__(self, api_client: kubernetes.client.ApiClient, request_timeout: float = 10.0, user_agent: str = USER_AGENT) -> None:
        api_client.user_agent = user_agent
        self._client = api_client
        self._timeout = request_timeout

    @classmethod
    def from_environment(cls) -> KubeApi:
        """In-cluster service-account credentials, else the local kubeconfig."""
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()
        return cls(kubernetes.client.ApiClient())

    @classmethod
    def for_host(cls, host: str, user_agent: str = USER_AGENT) -> KubeApi:
        """An unauthenticated client for ``host`` (tests against a local API emulator)."""
        configuration = kubernetes.client.Configuration()
        configuration.host = host.rstrip("/")
        return cls(kubernetes.client.ApiClient(configuration), user_agent=user_agent)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        """One API call; returns the decoded JSON, or None on 404.

        Raises:
            KubeApiError: any other non-2xx status, or the server unreachable (status 0).
        """
        headers = {"Accept": "application/json", "Content-Type": content_type}
        _, url, headers, body, _ = self._client.param_serialize(
            method, path, query_params=list((query or {}).items()), header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            response = self._client.call_api(method, url, headers, body, _request_timeout=self._timeout)
            response.read()
        except (kubernetes.client.ApiException, OSError) as err:
            raise KubeApiError(getattr(err, "status", 0) or 0, method, path, str(err)) from err
        if response.status == 404:
            return None
        text = response.data.decode("utf-8") if response.data else ""
        if not 200 <= response.status < 300:
            try:
                message = json.loads(text).get("message", text)
            except ValueError:
                message = text
            raise KubeApiError(response.status, method, path, message)
        return json.loads(text) if text else {}

    # ------------------------------------------------------------------------------------------

    def apply(self, manifest: Mapping[str, Any]) -> ApplyResult:
        """Create ``manifest`` or bring the live object in line with it.

        Raises:
            KubeApiError: rejected (4xx: usually a bad value in the spec) or the server failed.
        """
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        path = object_path(api_version, kind, namespace, name)
        live = self.request("GET", path)
        if live is None:
            created = self.request(
                "POST", collection_path(api_version, kind, namespace), query={"fieldManager": FIELD_MANAGER}, body=dict(manifest)
            )
            if created is None:
                raise KubeApiError(404, "POST", collection_path(api_version, kind, namespace), f"the API has no {kind} resource (is its CRD installed?)")
            return "created"
        if is_subset(manifest, live):
            return "unchanged"
        self.request(
            "PATCH",
            path,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=dict(manifest),
            content_type="application/apply-patch+yaml",
        )
        return "patched"

    def create_if_absent(self, manifest: Mapping[str, Any]) -> ApplyResult:
        """Create ``manifest`` unless an object of its name exists; never patch (for objects whose spec
        is immutable, such as a batch/v1 Job's template).

        Raises:
            KubeApiError: rejected or the server failed (409, created meanwhile, counts as existing).
        """
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        if self.get(api_version, kind, namespace, name) is not None:
            return "unchanged"
        try:
            self.request("POST", collection_path(api_version, kind, namespace), query={"fieldManager": FIELD_MANAGER}, body=dict(manifest))
        except KubeApiError as err:
            if err.status != 409:
                raise
            return "unchanged"
        return "created"

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.request("GET", object_path(api_version, kind, namespace, name))

    def list(self, api_version: str, kind: str, namespace: str, match_labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Objects whose labels include ``match_labels`` (also filtered here, for servers that ignore selectors)."""
        selector = ",".join(f"{k}={v}" for k, v in match_labels.items())
        found = self.request("GET", collection_path(api_version, kind, namespace), query={"labelSelector": selector}) or {}
        items = found.get("items") or []
        return [
            item for item in items if all((item.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in match_labels.items())
        ]

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete with background propagation (owned children are garbage-collected); False if already gone."""
        path = object_path(api_version, kind, namespace, name)
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        return self.request("DELETE", path, body=body) is not None

