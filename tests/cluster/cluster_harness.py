"""The cluster-in-a-box: an emulated API server, the real operator, controllers and a kubelet that runs pods as processes.

:class:`Cluster` starts, in this test process:

* :class:`cluster_api.ApiServer` — KMock with the API-server behaviours the others rely on;
* the real operator: :func:`spiral_operator.handlers.build_registry` and ``build_settings``, run by
  ``kopf.operator`` on its own thread and event loop (what ``spiral-operator`` runs, minus its flag
  parsing and metrics port), reading the learner's ``/metrics`` at the URL it builds itself
  (:func:`spiral_operator.progress.metrics_url`) through the Service emulation;
* :class:`cluster_controllers.Controllers` — StatefulSets, Deployments, garbage collection;
* :class:`kubelet.Kubelet` — every pod as ``spiral serve …`` in its own namespaces (:mod:`pod_sandbox`).

Everything it creates lives in one folder (``/var/tmp/spiral-cluster-*``: not under ``/tmp``, which
each pod replaces with its ``emptyDir``), removed at :meth:`Cluster.stop`.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import kopf
import kubernetes
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from cluster_api import JOBS, NAMESPACE, ApiServer
from cluster_controllers import Controllers
from kubelet import Kubelet, get_over_socket, http_get
from spiral_operator.handlers import Deps, build_registry, build_settings
from spiral_operator.kube import KubeApi
from spiral_operator.metrics import create_operator_metrics
from spiral_operator.progress import metrics_url

T = TypeVar("T")
TEST_USER_AGENT = "spiral-cluster-tests"
#: Seconds between the operator's monitor passes (``--monitor-interval``; 10 in the chart).
MONITOR_INTERVAL = 0.5


def api_client(url: str, user_agent: str) -> KubeApi:
    """A client of the emulated API server that opens a connection per request.

    Kept-alive connections to the emulated server occasionally went unanswered under load (the
    request sat until urllib3's timeout and retries, 10 s each), stalling the operator's passes.
    """
    configuration = kubernetes.client.Configuration()
    configuration.host = url
    client = kubernetes.client.ApiClient(configuration)
    client.set_default_header("Connection", "close")
    return KubeApi(client, user_agent=user_agent)


def namespaces_usable() -> str | None:
    """None when ``unshare`` can make network, mount and UTS namespaces here, else why not."""
    try:
        probe = subprocess.run(["unshare", "--net", "--mount", "--uts", "--", "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unshare is not usable: {err}"
    if probe.returncode != 0:
        return f"unshare --net --mount --uts failed (needs root or CAP_SYS_ADMIN/CAP_NET_ADMIN): {probe.stderr.strip()}"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    # Services get IPv6 addresses on each pod's loopback (see pod_sandbox): check that works here.
    check = "; ".join([
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})",
        "from pod_sandbox import add_loopback_address, loopback_up",
        "loopback_up(); add_loopback_address('fd00:5b1a::1')",
    ])  # fmt: skip
    probe = subprocess.run(["unshare", "--net", "--", sys.executable, "-c", check], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot add an IPv6 address to a network namespace's loopback (is IPv6 disabled?): {probe.stderr.strip()[-300:]}"
    return None


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2, explain: Callable[[], str] | None = None) -> T:
    """Poll until ``predicate()`` is truthy (exceptions count as not yet); fail naming ``what``
    and, when given, what ``explain()`` says then (e.g. :meth:`Cluster.debug_dump`)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (KeyError, TypeError, IndexError, AttributeError, OSError, ValueError) as err:
            last_error = err
        if time.monotonic() > deadline:
            details = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}" + (f" (last error: {last_error!r})" if last_error else "") + details)
        time.sleep(interval)


def parse_metrics(text: str) -> dict[str, float]:
    """``name{label="v",…}`` → value, labels sorted (Prometheus text format)."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()) if k != "spiral_job")
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


class Cluster:
    """The whole box; :meth:`start` / :meth:`stop`, plus what the tests do and read."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="spiral-cluster-", dir="/var/tmp"))
        self.apiserver = ApiServer()
        self.api: KubeApi | None = None
        self.kubelet: Kubelet | None = None
        self.controllers: Controllers | None = None
        self.operator_registry = CollectorRegistry()
        self._operator_stop = threading.Event()
        self._operator_thread: threading.Thread | None = None

    # ------------------------------------------------------------------------ lifecycle ---

    def start(self) -> "Cluster":
        self.apiserver.start()
        url = self.apiserver.url
        self.api = api_client(url, TEST_USER_AGENT)
        self.controllers = Controllers(api_client(url, "kube-controller-manager"), NAMESPACE).start()
        self.kubelet = Kubelet(api_client(url, "kubelet"), NAMESPACE, self.base).start()
        self._start_operator(url)
        return self

    def _start_operator(self, url: str) -> None:
        table = self.kubelet.table  # type: ignore[union-attr]

        def fetch(name: str, namespace: str) -> str:
            return http_get(table, metrics_url(name, namespace), timeout=2.0)

        deps = Deps(api=api_client(url, "spiral-operator"), fetch_metrics=fetch, metrics=create_operator_metrics(self.operator_registry))

        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=url, insecure=True)

        settings = build_settings()
        settings.watching.reconnect_backoff = 0.2
        registry = build_registry(monitor_interval=MONITOR_INTERVAL, login=login)
        ready = threading.Event()
        self._operator_thread = threading.Thread(
            target=lambda: asyncio.run(kopf.operator(registry=registry, settings=settings, namespaces=[NAMESPACE], standalone=True,
                                                     stop_flag=self._operator_stop, ready_flag=ready, memo=kopf.Memo(deps=deps))),
            name="operator", daemon=True,
        )  # fmt: skip
        self._operator_thread.start()
        if not ready.wait(20):
            raise RuntimeError("the operator did not start within 20 s")

    def stop(self) -> None:
        self._operator_stop.set()
        if self._operator_thread is not None:
            self._operator_thread.join(15)
        if self.kubelet is not None:
            self.kubelet.stop()
        if self.controllers is not None:
            self.controllers.stop()
        self.apiserver.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    @property
    def errors(self) -> list[str]:
        return [*(self.kubelet.errors if self.kubelet else []), *(self.controllers.errors if self.controllers else [])]

    # --------------------------------------------------------------------------- writes ---

    def _jobs_path(self, name: str | None = None) -> str:
        base = f"/apis/spiral.dev/v1alpha1/namespaces/{NAMESPACE}/spiraljobs"
        return f"{base}/{name}" if name else base

    def create_job(self, name: str, spec: dict[str, Any]) -> None:
        body = {"apiVersion": "spiral.dev/v1alpha1", "kind": "SpiralJob", "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}
        self.api.request("POST", self._jobs_path(), body=body)  # type: ignore[union-attr]

    def patch_job(self, name: str, spec: dict[str, Any]) -> None:
        self.api.request("PATCH", self._jobs_path(name), body={"spec": spec}, content_type="application/merge-patch+json")  # type: ignore[union-attr]

    def scale(self, name: str, replicas: int) -> dict[str, Any]:
        """``kubectl scale sj NAME --replicas N``: a patch of the scale subresource."""
        return self.api.request("PATCH", f"{self._jobs_path(name)}/scale", body={"spec": {"replicas": replicas}},  # type: ignore[union-attr]
                                content_type="application/merge-patch+json") or {}  # fmt: skip

    def delete_job(self, name: str) -> None:
        self.api.request("DELETE", self._jobs_path(name))  # type: ignore[union-attr]

    # ---------------------------------------------------------------------------- reads ---

    def job(self, name: str) -> dict[str, Any] | None:
        return self.api.request("GET", self._jobs_path(name))  # type: ignore[union-attr]

    def status(self, name: str) -> dict[str, Any]:
        return (self.job(name) or {}).get("status") or {}

    def pods(self, job: str, role: str | None = None) -> list[dict[str, Any]]:
        labels = {"spiral.dev/job-name": job, **({"spiral.dev/role": role} if role else {})}
        return self.api.list("v1", "Pod", NAMESPACE, labels)  # type: ignore[union-attr]

    def obj(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return self.api.get(api_version, kind, NAMESPACE, name)  # type: ignore[union-attr]

    def events(self, job: str) -> list[dict[str, Any]]:
        found = self.api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/events") or {}  # type: ignore[union-attr]
        return [e for e in found.get("items") or [] if (e.get("involvedObject") or {}).get("name") == job]

    def event_reasons(self, job: str) -> list[str]:
        return [e.get("reason", "") for e in self.events(job)]

    def pod_metrics(self, pod_name: str, port: int = 9400) -> dict[str, float]:
        """The pod's ``/metrics`` on ``port``, read through its port socket (``kubectl port-forward``).

        Raises:
            OSError: the pod is not running or does not answer.
        """
        runtime = self.kubelet.runtime(pod_name)  # type: ignore[union-attr]
        if runtime is None:
            raise OSError(f"pod {pod_name} is not running")
        return parse_metrics(get_over_socket(str(runtime.dir / "ports" / f"{port}.sock"), pod_name, "/metrics"))

    def container_pid(self, pod_name: str) -> int | None:
        runtime = self.kubelet.runtime(pod_name)  # type: ignore[union-attr]
        return None if runtime is None else runtime.container_pid

    def container_log(self, pod_name: str) -> str:
        runtime = self.kubelet.runtime(pod_name)  # type: ignore[union-attr]
        return "" if runtime is None else runtime.log_path.read_text(errors="replace")

    def pvc_folder(self, claim: str) -> Path:
        return self.base / "pvcs" / claim

    def debug_dump(self, job: str) -> str:
        """Phase, conditions and the tail of every pod's log: what a failing test prints."""
        lines = [f"job {job} status: {self.status(job)}"]
        for runtime in list(self.kubelet.pods.values()) if self.kubelet else []:
            tail = runtime.log_path.read_text(errors="replace")[-1500:] if runtime.log_path.exists() else ""
            sandbox = (runtime.dir / "sandbox.log").read_text(errors="replace")[-800:] if (runtime.dir / "sandbox.log").exists() else ""
            lines.append(f"--- pod {runtime.name} ready={runtime.ready} state={runtime.state()}\n{tail}\n[sandbox] {sandbox}")
        lines.append(f"errors: {self.errors}")
        return "\n".join(lines)


__all__ = ["JOBS", "NAMESPACE", "Cluster", "namespaces_usable", "parse_metrics", "wait_for"]
