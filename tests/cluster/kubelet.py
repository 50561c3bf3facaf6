"""The test kubelet: runs every Pod of the emulated API as real local processes, one sandbox per pod.

A thread (:class:`Kubelet`) polls the API for Pods and, for each new one:

* resolves its volumes to folders: a ``configMap`` volume becomes a folder with the ConfigMap's keys
  as files, a ``persistentVolumeClaim`` the claim's folder ``BASE/pvcs/CLAIM`` (it outlives pods,
  as a volume does), an ``emptyDir`` a fresh folder; a pod whose ConfigMap or claim does not exist
  yet stays Pending until it does;
* starts :mod:`pod_sandbox` in new network, mount and UTS namespaces with the container's
  ``command``/``args`` and ``env`` on top of the image's environment (:data:`IMAGE_ENV`, the
  Dockerfile's ``ENV`` with ``/opt/spiral/bin`` being this virtualenv's ``bin``);
* runs the container's startup, readiness and liveness probes (gRPC health, through the pod's
  port sockets) and restarts the container when a liveness or startup probe gives up;
* writes the pod's ``status`` back: phase (Succeeded or Failed once a container that its
  ``restartPolicy`` does not restart has exited), the Ready condition, and a container status with
  ``state``, ``lastState.terminated.exitCode`` and ``restartCount``, as a kubelet reports them.

Pods are deleted gracefully: the kubelet puts a finalizer on each pod it runs, so a DELETE only
marks the pod (``deletionTimestamp``) until the kubelet stopped the sandbox (SIGTERM, SIGKILL after
the grace period) and removed its finalizer. A StatefulSet therefore never gets its replacement
while the old pod still runs — the effect of a real kubelet's graceful deletion.

It also keeps the Service tables the sandboxes proxy with (:class:`ServiceTable`): every Service
gets a virtual address ``fd00:5b1a::N`` (local to each pod's own network namespace, see
:mod:`pod_sandbox`) listed in each pod's ``/etc/hosts`` under its DNS names
(``NAME``, ``NAME.NS``, ``NAME.NS.svc``, ``NAME.NS.svc.cluster.local``), and its endpoints are the
pods its selector matches (ready ones, or all with ``publishNotReadyAddresses``).

Time runs faster than in a cluster: probe periods, crash-loop back-offs and grace periods are
scaled by :data:`TIME_SCALE` (a startup probe keeps its whole time budget). Security contexts, resource requests, node selection, image pulls and
every volume kind but the three above are not emulated.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spiral_operator.kube import KubeApi, KubeApiError

log = logging.getLogger(__name__)

SANDBOX = Path(__file__).with_name("pod_sandbox.py")
FINALIZER = "cluster.test/kubelet"
#: Probe periods, crash-loop back-offs and grace periods run this much faster than in a cluster.
TIME_SCALE = 0.1
#: The image's environment (the runtime stage's ``ENV`` in the Dockerfile); ``/opt/spiral/bin``
#: is this interpreter's virtualenv.
IMAGE_ENV: dict[str, str] = {
    "PATH": f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "HOME": "/tmp",
    "MPLCONFIGDIR": "/tmp/matplotlib",
    "MUJOCO_GL": "osmesa",
    "PYOPENGL_PLATFORM": "osmesa",
}


def now_rfc3339(seconds: float | None = None) -> str:
    moment = dt.datetime.fromtimestamp(seconds if seconds is not None else time.time(), dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json_atomically(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, sort_keys=True))
    os.replace(tmp, path)


def cpu_cores(quantity: Any) -> float | None:
    """A Kubernetes CPU quantity in cores (``"500m"`` → 0.5, ``2`` → 2.0); None when unset."""
    if quantity is None:
        return None
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


class PodStartError(RuntimeError):
    """The pod cannot start yet (a missing ConfigMap or claim) or at all (an unsupported field)."""


# ------------------------------------------------------------------------------- services ---


class ServiceTable:
    """Loopback addresses, ports and endpoints of every Service, as files the sandboxes read."""

    #: Virtual Service addresses: IPv6 unique-local, added to each pod's own loopback (see pod_sandbox).
    ADDRESS_PREFIX = "fd00:5b1a::"
    FIRST_ADDRESS = 10

    def __init__(self, base: Path) -> None:
        self.services_file = base / "services.json"
        self.endpoints_file = base / "endpoints.json"
        self.addresses: dict[str, str] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        write_json_atomically(self.services_file, {})
        write_json_atomically(self.endpoints_file, {})

    def address(self, key: str) -> str:
        if key not in self.addresses:
            self.addresses[key] = f"{self.ADDRESS_PREFIX}{self.FIRST_ADDRESS + len(self.addresses):x}"
        return self.addresses[key]

    def update(self, services: list[dict[str, Any]], pods: dict[str, "PodRuntime"], pod_objects: list[dict[str, Any]]) -> bool:
        """Refresh both tables from the API's Services and pods; True when the Service list changed."""
        table: dict[str, dict[str, Any]] = {}
        endpoints: dict[str, dict[str, Any]] = {}
        for svc in services:
            meta, spec = svc["metadata"], svc.get("spec") or {}
            key = f"{meta['namespace']}/{meta['name']}"
            table[key] = {"vip": self.address(key), "name": meta["name"], "namespace": meta["namespace"], "ports": spec.get("ports") or []}
            selected = []
            for pod in pod_objects:
                pmeta = pod["metadata"]
                runtime = pods.get(pmeta.get("uid", ""))
                if runtime is None or pmeta.get("namespace") != meta["namespace"] or pmeta.get("deletionTimestamp"):
                    continue
                labels = pmeta.get("labels") or {}
                if not spec.get("selector") or any(labels.get(k) != v for k, v in spec["selector"].items()):
                    continue
                selected.append({"pod": pmeta["name"], "dir": str(runtime.dir), "ready": runtime.ready, "ports": runtime.named_ports})
            endpoints[key] = {"endpoints": selected, "publish_not_ready": bool(spec.get("publishNotReadyAddresses"))}
        changed = table != self.services
        if changed:
            self.services = table
            write_json_atomically(self.services_file, table)
        if endpoints != self.endpoints:
            self.endpoints = endpoints
            write_json_atomically(self.endpoints_file, endpoints)
        return changed

    def hosts(self, namespace: str, hostname: str) -> str:
        """The ``/etc/hosts`` of a pod in ``namespace``: its own name and every Service's DNS names."""
        lines = [f"127.0.0.1 localhost {hostname}"]
        for info in self.services.values():
            name, ns = info["name"], info["namespace"]
            names = [f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
            lines.append(" ".join([info["vip"], *([name] if ns == namespace else []), *names]))
        return "\n".join(lines) + "\n"

    def resolve(self, host: str, port: int) -> str:
        """The Unix socket behind ``host:port`` (a Service DNS name): what a pod's proxy would dial.

        Raises:
            OSError: no such Service or port, or no endpoint serving it.
        """
        for key, info in self.services.items():
            name, ns = info["name"], info["namespace"]
            if host not in (f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"):
                continue
            entry = next((p for p in info["ports"] if p["port"] == port), None)
            if entry is None:
                raise OSError(f"Service {key} has no port {port} (ports: {[p['port'] for p in info['ports']]})")
            target = entry.get("targetPort", port)
            eps = self.endpoints.get(key) or {}
            for ep in eps.get("endpoints", []):
                if not (ep["ready"] or eps.get("publish_not_ready")):
                    continue
                number = ep["ports"].get(target) if isinstance(target, str) else target
                path = Path(ep["dir"]) / "ports" / f"{number}.sock"
                if number is not None and path.exists():
                    return str(path)
            raise OSError(f"Service {key} has no endpoint serving port {port} (targetPort {target!r})")
        raise OSError(f"no Service answers to {host!r}")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, host: str, timeout: float) -> None:
        super().__init__(host, timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def http_get(table: ServiceTable, url: str, timeout: float = 3.0) -> str:
    """GET ``url`` (``http://SERVICE.NS.svc:PORT/path``) through the Service emulation.

    Raises:
        OSError: unresolvable, unreachable or not HTTP 200.
    """
    parts = urlsplit(url)
    return get_over_socket(table.resolve(parts.hostname or "", parts.port or 80), parts.hostname or "", parts.path or "/", timeout)


def get_over_socket(socket_path: str, host: str, path: str, timeout: float = 3.0) -> str:
    """An HTTP GET of ``path`` over a pod's port socket (what ``kubectl port-forward`` gives).

    Raises:
        OSError: unreachable or not HTTP 200.
    """
    connection = _UnixHTTPConnection(socket_path, host, timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode()
    except (http.client.HTTPException, ValueError) as err:
        raise OSError(f"GET {path} from {host}: {err}") from err
    finally:
        connection.close()
    if response.status != 200:
        raise OSError(f"GET {path} from {host}: HTTP {response.status}")
    return body


# ----------------------------------------------------------------------------------- pods ---


@dataclass
class Probe:
    kind: str
    spec: dict[str, Any]
    failures: int = 0
    next_run: float = 0.0
    running: bool = False

    @property
    def period(self) -> float:
        return max(0.2, float(self.spec.get("periodSeconds", 10)) * TIME_SCALE)

    @property
    def threshold(self) -> int:
        """Failures in a row that count. A startup probe keeps its whole time budget (period ×
        threshold, 5 minutes in the manifests) at the faster period: a slow start (imports under a
        CPU limit on a busy machine) is exactly what it allows for."""
        threshold = int(self.spec.get("failureThreshold", 3))
        return round(threshold / TIME_SCALE) if self.kind == "startupProbe" else threshold


@dataclass
class PodRuntime:
    """One pod this kubelet runs: its folder, sandbox process and probe state."""

    name: str
    namespace: str
    uid: str
    dir: Path
    named_ports: dict[str, int]
    probe_ports: list[int]
    sandbox: subprocess.Popen[bytes] | None = None
    container: dict[str, Any] = field(default_factory=dict)
    probes: dict[str, Probe] = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    container_start: float | None = None
    start_time: str = field(default_factory=now_rfc3339)
    terminating: bool = False
    last_status: dict[str, Any] | None = None

    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.dir / "status.json").read_text())
        except (OSError, ValueError):
            return {"state": "waiting", "reason": "ContainerCreating", "restart_count": 0, "last_exit_code": None}

    @property
    def container_pid(self) -> int | None:
        return self.state().get("container_pid")

    @property
    def log_path(self) -> Path:
        return self.dir / "container.log"


class Kubelet:
    """Runs the pods of ``namespace`` (see the module docstring); :meth:`start` / :meth:`stop`."""

    def __init__(self, api: KubeApi, namespace: str, base: Path, poll_seconds: float = 0.2) -> None:
        self.api = api
        self.namespace = namespace
        self.base = base
        self.poll_seconds = poll_seconds
        self.table = ServiceTable(base)
        self.pods: dict[str, PodRuntime] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.RLock()  # probe callbacks may run inside a pass
        self._probe_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="probe")
        self._channels: dict[str, grpc.Channel] = {}
        self._thread = threading.Thread(target=self._run, name="kubelet", daemon=True)

    # ------------------------------------------------------------------------ lifecycle ---

    def start(self) -> "Kubelet":
        (self.base / "pods").mkdir(parents=True, exist_ok=True)
        (self.base / "pvcs").mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop every sandbox (SIGTERM, then SIGKILL) and the kubelet thread."""
        self._stop.set()
        self._thread.join(30)
        self._probe_pool.shutdown(wait=False, cancel_futures=True)
        for channel in self._channels.values():
            channel.close()

    def _run(self) -> None:
        # Sandboxes are forked from this thread: PR_SET_PDEATHSIG follows the forking thread, so
        # this thread lives until every sandbox is gone.
        try:
            while not self._stop.is_set():
                try:
                    self.sync()
                except KubeApiError as err:
                    log.debug("kubelet: API error %s", err)
                except Exception as err:  # noqa: BLE001 - keep the node alive; the test reads errors
                    log.exception("kubelet pass failed")
                    self.errors.append(repr(err))
                self._stop.wait(self.poll_seconds)
        finally:
            for runtime in list(self.pods.values()):
                self._kill(runtime)

    # ----------------------------------------------------------------------------- pass ---

    def sync(self) -> None:
        found = self.api.request("GET", f"/api/v1/namespaces/{self.namespace}/pods") or {}
        pods = found.get("items") or []
        services = (self.api.request("GET", f"/api/v1/namespaces/{self.namespace}/services") or {}).get("items") or []
        live = {p["metadata"].get("uid"): p for p in pods}
        with self._lock:
            if self.table.update(services, self.pods, pods):
                for runtime in self.pods.values():
                    self._write_hosts(runtime)
            for uid, pod in live.items():
                runtime = self.pods.get(uid)
                if runtime is None and not pod["metadata"].get("deletionTimestamp"):
                    self._admit(pod)
                elif runtime is not None and pod["metadata"].get("deletionTimestamp"):
                    self._terminate(runtime)
            for uid, runtime in list(self.pods.items()):
                if uid not in live:
                    self._terminate(runtime)  # deleted without grace (no finalizer): stop at once
                self._reap(runtime, live.get(uid))
            for uid, runtime in self.pods.items():
                if not runtime.terminating and uid in live:
                    self._probe(runtime)
                    self._report(runtime, live[uid])

    # ---------------------------------------------------------------------------- admit ---

    def _admit(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        containers = spec.get("containers") or []
        if len(containers) != 1:
            raise PodStartError(f"pod {meta['name']}: the test kubelet runs pods with exactly one container, got {len(containers)}")
        container = containers[0]
        runtime = PodRuntime(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            dir=self.base / "pods" / meta["uid"][:12],
            named_ports={p["name"]: int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name")},
            probe_ports=[],
        )
        try:
            mounts = self._mounts(runtime, spec, container)
        except PodStartError as err:
            log.debug("pod %s stays Pending: %s", meta["name"], err)
            return  # retried on the next pass
        runtime.dir.mkdir(parents=True, exist_ok=True)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if container.get(kind):
                probe = container[kind]
                if "grpc" not in probe:
                    raise PodStartError(f"pod {meta['name']}: {kind} {probe}: the test kubelet runs gRPC probes only")
                runtime.probes[kind] = Probe(kind, probe)
                runtime.probe_ports.append(int(probe["grpc"]["port"]))
        env = dict(IMAGE_ENV)
        for item in container.get("env") or []:
            if "value" not in item:
                raise PodStartError(f"pod {meta['name']}: env {item['name']} uses valueFrom, which the test kubelet does not resolve")
            env[item["name"]] = str(item["value"])
        ports = sorted({*runtime.named_ports.values(), *(int(p["containerPort"]) for p in container.get("ports") or []), *runtime.probe_ports})
        runtime.container = {"command": list(container.get("command") or []), "args": list(container.get("args") or []), "env": env,
                             "ports": ports, "workingDir": container.get("workingDir")}  # fmt: skip
        if not runtime.container["command"]:
            raise PodStartError(f"pod {meta['name']}: no command (the image has no ENTRYPOINT)")
        self._write_hosts(runtime)
        grace = float(spec.get("terminationGracePeriodSeconds", 30))
        pod_file = {
            "name": runtime.name,
            "hostname": spec.get("hostname") or runtime.name,
            "kubelet_pid": os.getpid(),
            "mounts": mounts,
            "hosts_file": str(runtime.dir / "hosts"),
            "container": runtime.container,
            "grace_seconds": max(3.0, grace * TIME_SCALE),
            "restart_backoff": [0.0, 300 * TIME_SCALE],
            "restart_policy": spec.get("restartPolicy", "Always"),
            "cpu_limit": cpu_cores(((container.get("resources") or {}).get("limits") or {}).get("cpu")),
            "services_file": str(self.table.services_file),
            "endpoints_file": str(self.table.endpoints_file),
        }
        write_json_atomically(runtime.dir / "pod.json", pod_file)
        # The finalizer first: a pod deleted from now on waits until its sandbox has stopped.
        self.api.request("PATCH", f"/api/v1/namespaces/{self.namespace}/pods/{runtime.name}",
                         body={"metadata": {"finalizers": [FINALIZER]}}, content_type="application/merge-patch+json")  # fmt: skip
        log_file = open(runtime.dir / "sandbox.log", "ab")  # noqa: SIM115 - owned by the child
        runtime.sandbox = subprocess.Popen(
            ["unshare", "--net", "--mount", "--uts", "--", sys.executable, str(SANDBOX), str(runtime.dir)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log_file.close()
        self.pods[runtime.uid] = runtime

    def _mounts(self, runtime: PodRuntime, spec: dict[str, Any], container: dict[str, Any]) -> list[dict[str, Any]]:
        """Host folders for the container's volumeMounts.

        Raises:
            PodStartError: a ConfigMap or claim does not exist yet, or an unsupported volume kind.
        """
        sources: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            name = volume["name"]
            if "configMap" in volume:
                cm_name = volume["configMap"]["name"]
                cm = self.api.request("GET", f"/api/v1/namespaces/{self.namespace}/configmaps/{cm_name}")
                if cm is None:
                    raise PodStartError(f"ConfigMap {cm_name} not found")
                folder = runtime.dir / "volumes" / name
                folder.mkdir(parents=True, exist_ok=True)
                data = cm.get("data") or {}
                items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] not in data:
                        raise PodStartError(f"ConfigMap {cm_name} has no key {item['key']!r}")
                    (folder / item["path"]).write_text(data[item["key"]])
                sources[name] = folder
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if self.api.request("GET", f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims/{claim}") is None:
                    raise PodStartError(f"PersistentVolumeClaim {claim} not found")
                sources[name] = self.base / "pvcs" / claim
                sources[name].mkdir(parents=True, exist_ok=True)
            elif "emptyDir" in volume:
                sources[name] = runtime.dir / "volumes" / name
                sources[name].mkdir(parents=True, exist_ok=True)
            else:
                raise PodStartError(f"volume {name}: the test kubelet maps configMap, persistentVolumeClaim and emptyDir volumes only, got {sorted(volume)}")
        mounts = []
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in sources:
                raise PodStartError(f"volumeMount {mount['name']} names no volume of the pod")
            source = sources[mount["name"]] / mount["subPath"] if mount.get("subPath") else sources[mount["name"]]
            if not source.exists():
                raise PodStartError(f"volumeMount {mount['name']}: subPath {mount.get('subPath')!r} does not exist in the volume")
            mounts.append({"source": str(source), "target": mount["mountPath"], "read_only": bool(mount.get("readOnly"))})
        return mounts

    def _write_hosts(self, runtime: PodRuntime) -> None:
        # Rewritten in place, not replaced: the sandbox bind-mounted this very file as /etc/hosts.
        with open(runtime.dir / "hosts", "a+") as handle:
            handle.seek(0)
            handle.truncate()
            handle.write(self.table.hosts(runtime.namespace, runtime.name))

    # ------------------------------------------------------------------------- probes ---

    def _channel(self, path: str) -> grpc.Channel:
        if path not in self._channels:
            self._channels[path] = grpc.insecure_channel(f"unix:{path}")
        return self._channels[path]

    def _check(self, runtime: PodRuntime, probe: Probe) -> bool:
        grpc_probe = probe.spec["grpc"]
        path = str(runtime.dir / "ports" / f"{int(grpc_probe['port'])}.sock")
        timeout = float(probe.spec.get("timeoutSeconds", 1))
        try:
            reply = health_pb2_grpc.HealthStub(self._channel(path)).Check(
                health_pb2.HealthCheckRequest(service=grpc_probe.get("service", "")), timeout=timeout
            )
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def _probe(self, runtime: PodRuntime) -> None:
        state = runtime.state()
        if state.get("state") != "running":
            runtime.ready = runtime.started = False
            runtime.container_start = None
            return
        if runtime.container_start != state.get("started_at"):
            # A new container: probes start over (startup first, then readiness and liveness).
            runtime.container_start = state.get("started_at")
            runtime.ready = runtime.started = "startupProbe" not in runtime.probes
            for probe in runtime.probes.values():
                probe.failures, probe.next_run, probe.running = 0, time.monotonic() + float(probe.spec.get("initialDelaySeconds", 0)) * TIME_SCALE, False
            if "readinessProbe" in runtime.probes:
                runtime.ready = False
        for kind, probe in runtime.probes.items():
            if probe.running or time.monotonic() < probe.next_run:
                continue
            if (kind == "startupProbe") == runtime.started:
                continue  # the startup probe runs alone, until it passes
            probe.running = True
            started_at = runtime.container_start
            future = self._probe_pool.submit(self._check, runtime, probe)
            future.add_done_callback(lambda f, r=runtime, k=kind, p=probe, s=started_at: self._probed(r, k, p, s, f))

    def _probed(self, runtime: PodRuntime, kind: str, probe: Probe, started_at: Any, future: concurrent.futures.Future[bool]) -> None:
        with self._lock:
            probe.running = False
            probe.next_run = time.monotonic() + probe.period
            if runtime.container_start != started_at or runtime.terminating:
                return  # the container changed meanwhile: this result is stale
            ok = not future.cancelled() and future.exception() is None and future.result()
            probe.failures = 0 if ok else probe.failures + 1
            if kind == "startupProbe" and ok:
                runtime.started = True
                runtime.ready = "readinessProbe" not in runtime.probes
            elif kind == "readinessProbe":
                if ok:
                    runtime.ready = True
                elif probe.failures >= probe.threshold:
                    runtime.ready = False
            if not ok and kind in ("startupProbe", "livenessProbe") and probe.failures >= probe.threshold:
                log.info("pod %s: %s failed %d times; restarting the container", runtime.name, kind, probe.failures)
                probe.failures = 0
                if runtime.sandbox is not None and runtime.sandbox.poll() is None:
                    runtime.sandbox.send_signal(signal.SIGUSR1)

    # ------------------------------------------------------------------------- status ---

    def _report(self, runtime: PodRuntime, pod: dict[str, Any]) -> None:
        state = runtime.state()
        current: dict[str, Any]
        if state.get("state") == "running":
            current = {"running": {"startedAt": now_rfc3339(state.get("started_at"))}}
        elif state.get("state") == "terminated":
            current = {"terminated": {"exitCode": state.get("exit_code"), "reason": "Completed" if state.get("exit_code") == 0 else "Error"}}
        else:
            current = {"waiting": {"reason": state.get("reason", "ContainerCreating")}}
        container_status: dict[str, Any] = {
            "name": (pod["spec"]["containers"][0]).get("name"),
            "image": (pod["spec"]["containers"][0]).get("image"),
            "ready": runtime.ready,
            "started": runtime.started,
            "restartCount": int(state.get("restart_count", 0)),
            "state": current,
        }
        if state.get("last_exit_code") is not None:
            code = int(state["last_exit_code"])
            container_status["lastState"] = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}
        ever_started = int(state.get("restart_count", 0)) > 0 or state.get("state") != "waiting" or state.get("last_exit_code") is not None
        phase = "Running" if ever_started else "Pending"
        if state.get("state") == "terminated" and (pod.get("spec") or {}).get("restartPolicy", "Always") != "Always":
            phase = "Succeeded" if state.get("exit_code") == 0 else "Failed"  # not restarted: the pod is done
        status = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "startTime": runtime.start_time,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": str(runtime.ready)},
                {"type": "Ready", "status": str(runtime.ready)},
            ],
            "containerStatuses": [container_status],
        }
        if status != runtime.last_status:
            self.api.request("PATCH", f"/api/v1/namespaces/{self.namespace}/pods/{runtime.name}/status",
                             body={"status": status}, content_type="application/merge-patch+json")  # fmt: skip
            runtime.last_status = status

    # ---------------------------------------------------------------------- termination ---

    def _terminate(self, runtime: PodRuntime) -> None:
        if runtime.terminating:
            return
        runtime.terminating = True
        runtime.ready = False
        if runtime.sandbox is not None and runtime.sandbox.poll() is None:
            runtime.sandbox.send_signal(signal.SIGTERM)

    def _reap(self, runtime: PodRuntime, pod: dict[str, Any] | None) -> None:
        if runtime.sandbox is None or runtime.sandbox.poll() is None:
            return
        if not runtime.terminating:
            self.errors.append(f"sandbox of pod {runtime.name} exited by itself with code {runtime.sandbox.returncode}; see {runtime.dir / 'sandbox.log'}")
            runtime.terminating = True
        if pod is not None:
            try:
                self.api.request("PATCH", f"/api/v1/namespaces/{self.namespace}/pods/{runtime.name}",
                                 body={"metadata": {"finalizers": []}}, content_type="application/merge-patch+json")  # fmt: skip
            except KubeApiError as err:
                log.debug("pod %s: finalizer removal failed (%s); retrying", runtime.name, err)
                return
        del self.pods[runtime.uid]

    def _kill(self, runtime: PodRuntime) -> None:
        if runtime.sandbox is None or runtime.sandbox.poll() is not None:
            return
        runtime.sandbox.send_signal(signal.SIGTERM)
        try:
            runtime.sandbox.wait(10)
        except subprocess.TimeoutExpired:
            runtime.sandbox.kill()
            runtime.sandbox.wait()

    # ---------------------------------------------------------------------------- access ---

    def runtime(self, pod_name: str) -> PodRuntime | None:
        """The running (not terminating) pod called ``pod_name``, if any."""
        with self._lock:
            return next((r for r in self.pods.values() if r.name == pod_name and not r.terminating), None)
