"""One emulated pod: the part of a kubelet, a container runtime and kube-proxy that lives *inside* the pod.

The test kubelet (:mod:`kubelet`) starts this script as ``unshare --net --mount --uts -- python
pod_sandbox.py POD_DIR``, so it runs as the first process of its own network, mount and UTS
namespaces, and reads ``POD_DIR/pod.json`` (written by the kubelet). It then

1. brings up the loopback interface of its network namespace and sets the host name to the pod's name;
2. builds the pod's filesystem view: a tmpfs root that mirrors the host's (each entry bind-mounted),
   with every ``volumeMount`` bound at its ``mountPath`` (read-only where the manifest says so) and
   a private ``/etc/hosts`` that names every Service; it then ``chroot``\\ s into it, so nothing is
   created on the host's own ``/`` (``/checkpoints`` and ``/etc/spiral`` exist only in here);
3. forwards traffic, as kube-proxy would: each Service has a virtual address (in every pod's
   ``/etc/hosts``), which this sandbox adds to the loopback interface of the pod's own network
   namespace, with a listener on each Service port that forwards a connection to the Service's
   ``targetPort`` on an endpoint pod; that pod's sandbox accepts it on a Unix socket,
   ``POD_DIR/ports/<containerPort>.sock``, and connects to ``127.0.0.1:<containerPort>`` inside its
   own network namespace. Unix sockets are filesystem objects, so they cross network namespaces;
   no address outside the pods' own namespaces is ever used.

   The virtual addresses are IPv6 (``fd00:5b1a::N``) because any IPv4 address in the pod's
   namespace is covered by the container's own ``0.0.0.0`` listeners on the same ports (a cluster's
   Service IPs are not local to the pod; ours have to be). The listeners are bound before the
   container starts, so its wildcard gRPC bind falls back from dual-stack to IPv4, and both coexist;
4. runs the container's ``command``/``args`` with its ``env``, restarts it when it exits as its
   ``restartPolicy`` says (``Always``: every exit; ``OnFailure``: a non-zero exit; ``Never``: none;
   with a crash-loop back-off), and records its state in ``POD_DIR/status.json`` for the kubelet.
   A container that is not restarted stays terminated; the sandbox waits for SIGTERM. A CPU limit below one core is enforced by pausing the
   container (SIGSTOP/SIGCONT) for the rest of each 100 ms period, the way the CFS quota throttles it.

Signals: SIGTERM stops the pod (SIGTERM to the container, SIGKILL after the grace period, then
exit 0); SIGUSR1 restarts the container (a failed liveness or startup probe). The sandbox dies with
the test process (``PR_SET_PDEATHSIG``) and the container with the sandbox (``setpriv --pdeathsig``).

Only the standard library is imported here: this process forks the container, and a process with
gRPC threads must not fork (see ``spiral/launch/parent.py``).
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)
_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_REC = 1, 32, 4096, 16384
_PR_SET_PDEATHSIG = 1
#: The CFS scheduler period a CPU quota is counted in (Linux default 100 ms).
CPU_PERIOD_SECONDS = 0.1
#: How often the sandbox re-reads the Service and endpoint tables the kubelet writes.
TABLE_POLL_SECONDS = 0.2


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    if _libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), flags, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target} ({fstype}, flags {flags}): {os.strerror(errno)}")


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- namespaces ---


def loopback_up() -> None:
    """``ip link set lo up`` without iproute2 (SIOCGIFFLAGS / SIOCSIFFLAGS on an ``ifreq``)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, siocgifflags, request))[1]
        if not flags & iff_up:
            fcntl.ioctl(s, siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


def add_loopback_address(address: str) -> None:
    """``ip -6 addr add ADDRESS/128 dev lo nodad`` without iproute2 (one RTM_NEWADDR netlink request).

    Raises:
        OSError: the kernel refused (other than "already there").
    """
    rtm_newaddr, nlm_f_request, nlm_f_ack, nlm_f_create, nlm_f_excl = 20, 0x1, 0x4, 0x400, 0x200
    ifa_address, ifa_local, ifa_f_nodad, nlmsg_error = 1, 2, 0x2, 2
    raw = socket.inet_pton(socket.AF_INET6, address)
    body = struct.pack("=BBBBI", socket.AF_INET6, 128, ifa_f_nodad, 0, socket.if_nametoindex("lo"))
    body += struct.pack("=HH", 4 + len(raw), ifa_local) + raw + struct.pack("=HH", 4 + len(raw), ifa_address) + raw
    message = struct.pack("=IHHII", 16 + len(body), rtm_newaddr, nlm_f_request | nlm_f_ack | nlm_f_create | nlm_f_excl, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:  # NETLINK_ROUTE
        s.bind((0, 0))
        s.send(message)
        reply = s.recv(4096)
    kind = struct.unpack_from("=H", reply, 4)[0]
    error = -struct.unpack_from("=i", reply, 16)[0] if kind == nlmsg_error else 0
    if error not in (0, 17):  # 17 = EEXIST
        raise OSError(error, f"adding {address} to lo: {os.strerror(error)}")


def _mirror(source: str, target: str) -> None:
    """Fill the (empty, tmpfs) directory ``target`` with bind mounts of every entry of ``source``."""
    for entry in sorted(os.listdir(source)):
        src, dst = os.path.join(source, entry), os.path.join(target, entry)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        elif os.path.isdir(src):
            os.mkdir(dst)
            _mount(src, dst, None, _MS_BIND | _MS_REC)
        elif os.path.exists(src):
            open(dst, "w").close()
            _mount(src, dst, None, _MS_BIND)


def _make_path(root: str, path: str, is_file: bool) -> str:
    """``root + path``, created: an ancestor that exists only as a mirror of the host is turned
    into a tmpfs mirror first, so the new entry never lands on the host's filesystem."""
    parts = [p for p in path.split("/") if p]
    current = root
    for i, part in enumerate(parts):
        host_dir = "/" + "/".join(parts[:i])
        nxt = os.path.join(current, part)
        last = i == len(parts) - 1
        if not os.path.lexists(nxt):
            if not _is_tmpfs_mirror(current):
                # `current` is a bind mount of the host's directory: shadow it with a tmpfs mirror.
                _libc.umount2(current.encode(), 2)  # MNT_DETACH
                _mount("tmpfs", current, "tmpfs", 0)
                _mirror(host_dir, current)
                _TMPFS_MIRRORS.add(current)
            if last and is_file:
                open(nxt, "w").close()
            else:
                os.mkdir(nxt)
                _TMPFS_MIRRORS.add(nxt)  # a fresh directory in a tmpfs: entries can be added to it
        current = nxt
    return current


_TMPFS_MIRRORS: set[str] = set()


def _is_tmpfs_mirror(path: str) -> bool:
    return path in _TMPFS_MIRRORS


def build_root(root: str, mounts: list[dict[str, Any]], hosts_file: str) -> None:
    """The pod's filesystem under ``root`` (a tmpfs mirror of ``/``), its volumes and ``/etc/hosts``."""
    os.makedirs(root, exist_ok=True)
    _mount("tmpfs", root, "tmpfs", 0)
    _mirror("/", root)
    _TMPFS_MIRRORS.add(root)
    for mount in [*mounts, {"source": hosts_file, "target": "/etc/hosts", "read_only": True}]:
        source = mount["source"]
        target = _make_path(root, mount["target"], is_file=os.path.isfile(source))
        _mount(source, target, None, _MS_BIND)
        if mount.get("read_only"):
            _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)


# -------------------------------------------------------------------------------- traffic ---


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError):
            pass


async def _splice(a: tuple[asyncio.StreamReader, asyncio.StreamWriter], b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    await asyncio.gather(_pump(a[0], b[1]), _pump(b[0], a[1]))


class Tables:
    """The kubelet's Service and endpoint tables (JSON files), re-read when they change."""

    def __init__(self, services_file: str, endpoints_file: str) -> None:
        self.paths = {"services": services_file, "endpoints": endpoints_file}
        self.data: dict[str, dict[str, Any]] = {"services": {}, "endpoints": {}}
        self.mtimes: dict[str, float] = {}

    def refresh(self) -> None:
        for key, path in self.paths.items():
            try:
                mtime = os.stat(path).st_mtime_ns
                if self.mtimes.get(key) != mtime:
                    self.data[key] = json.loads(Path(path).read_text())
                    self.mtimes[key] = mtime
            except (OSError, ValueError):
                pass

    def backend(self, service: str, port: dict[str, Any]) -> str | None:
        """The Unix socket of an endpoint pod serving ``port`` (a Service port entry) of ``service``."""
        info = self.data["endpoints"].get(service) or {}
        for endpoint in info.get("endpoints", []):
            if not (endpoint["ready"] or info.get("publish_not_ready")):
                continue
            target = port.get("targetPort", port["port"])
            number = endpoint["ports"].get(target) if isinstance(target, str) else target
            if number is None:
                continue  # the pod declares no container port of that name
            path = os.path.join(endpoint["dir"], "ports", f"{number}.sock")
            if os.path.exists(path):
                return path
        return None


class Proxy:
    """Outbound Service listeners (127.0.0.N:port → an endpoint's socket) and inbound container ports."""

    def __init__(self, tables: Tables, pod_dir: str, container_ports: list[int]) -> None:
        self.tables = tables
        self.pod_dir = pod_dir
        self.container_ports = container_ports
        self.listening: set[tuple[str, int]] = set()
        self.addresses: set[str] = set()
        self.loop = asyncio.new_event_loop()

    def start(self) -> None:
        """Listen on the container ports' sockets and every Service known now, before the container starts."""
        threading.Thread(target=self.loop.run_forever, name="proxy", daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._inbound(), self.loop).result(10)
        asyncio.run_coroutine_threadsafe(self._listen_to_services(), self.loop).result(10)
        asyncio.run_coroutine_threadsafe(self._watch_services(), self.loop)

    async def _inbound(self) -> None:
        ports_dir = os.path.join(self.pod_dir, "ports")
        os.makedirs(ports_dir, exist_ok=True)
        for port in self.container_ports:

            async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int = port) -> None:
                try:
                    upstream = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    writer.close()  # nothing listens on the port yet: like a refused connection
                    return
                await _splice((reader, writer), upstream)

            path = os.path.join(ports_dir, f"{port}.sock")
            if os.path.exists(path):
                os.unlink(path)
            await asyncio.start_unix_server(accept, path=path)

    async def _watch_services(self) -> None:
        while True:
            await asyncio.sleep(TABLE_POLL_SECONDS)
            await self._listen_to_services()

    async def _listen_to_services(self) -> None:
        self.tables.refresh()
        for service, info in self.tables.data["services"].items():
            if info["vip"] not in self.addresses:
                add_loopback_address(info["vip"])
                self.addresses.add(info["vip"])
            for port in info["ports"]:
                key = (info["vip"], port["port"])
                if key in self.listening:
                    continue

                async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, service: str = service, port: dict[str, Any] = port) -> None:
                    self.tables.refresh()
                    path = self.tables.backend(service, port)
                    if path is None:
                        writer.close()  # no endpoint (yet): the client sees a reset and retries
                        return
                    try:
                        upstream = await asyncio.open_unix_connection(path)
                    except OSError:
                        writer.close()
                        return
                    await _splice((reader, writer), upstream)

                # asyncio sets IPV6_V6ONLY: the listener covers this address alone.
                await asyncio.start_server(accept, host=key[0], port=key[1])
                self.listening.add(key)


# ------------------------------------------------------------------------------ container ---


class Container:
    """The pod's one container: started, restarted on exit, throttled, stopped. Main thread only."""

    def __init__(
        self, spec: dict[str, Any], pod_dir: str, cpu_limit: float | None, backoff: tuple[float, float], restart_policy: str = "Always"
    ) -> None:
        self.spec = spec
        self.restart_policy = restart_policy
        self.pod_dir = pod_dir
        self.cpu_limit = cpu_limit
        self.backoff = backoff
        self.process: subprocess.Popen[bytes] | None = None
        self.restart_count = 0
        self.last_exit_code: int | None = None
        self.stop_requested = threading.Event()
        self.restart_requested = threading.Event()
        self.status_path = Path(pod_dir) / "status.json"
        self.log = open(os.path.join(pod_dir, "container.log"), "ab", buffering=0)  # noqa: SIM115

    def write_status(self, state: str, **extra: Any) -> None:
        write_json_atomically(
            self.status_path,
            {
                "sandbox_pid": os.getpid(),
                "container_pid": self.process.pid if self.process is not None and self.process.poll() is None else None,
                "state": state,
                "restart_count": self.restart_count,
                "last_exit_code": self.last_exit_code,
                "time": time.time(),
                **extra,
            },
        )

    def _start(self) -> None:
        command = [*self.spec["command"], *self.spec.get("args", [])]
        self.log.write(f"==> {time.strftime('%H:%M:%S')} starting (restart {self.restart_count}): {command}\n".encode())
        # setpriv: the container gets SIGKILL if this sandbox dies, whatever killed it.
        self.process = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "--", *command],
            env=self.spec["env"],
            cwd=self.spec.get("workingDir") or "/",
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.write_status("running", started_at=time.time())

    def _throttle(self) -> None:
        """Pause the container for the part of each CPU period beyond its quota (a limit < 1 core)."""
        assert self.cpu_limit is not None
        run, pause = self.cpu_limit * CPU_PERIOD_SECONDS, (1 - self.cpu_limit) * CPU_PERIOD_SECONDS
        while not self.stop_requested.is_set():
            process = self.process
            time.sleep(run)
            if process is None or process.poll() is not None:
                continue
            try:
                os.killpg(process.pid, signal.SIGSTOP)
                time.sleep(pause)
                os.killpg(process.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def _terminate(self, grace: float) -> int:
        assert self.process is not None
        process = self.process
        try:
            os.killpg(process.pid, signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            return process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.wait()

    @staticmethod
    def exit_code(returncode: int) -> int:
        """What Kubernetes reports: 128 + signal for a container killed by a signal."""
        return 128 - returncode if returncode < 0 else returncode

    def run(self, grace: float) -> None:
        if self.cpu_limit is not None and self.cpu_limit < 1:
            threading.Thread(target=self._throttle, name="cpu-quota", daemon=True).start()
        delay = self.backoff[0]
        while not self.stop_requested.is_set():
            self._start()
            assert self.process is not None
            while self.process.poll() is None and not self.stop_requested.is_set() and not self.restart_requested.is_set():
                self.stop_requested.wait(0.05)
            if self.stop_requested.is_set():
                code = self.exit_code(self._terminate(grace))
                self.last_exit_code = code
                self.write_status("terminated", exit_code=code)
                return
            if self.restart_requested.is_set():
                self.restart_requested.clear()
                code = self.exit_code(self._terminate(grace))
            else:
                code = self.exit_code(self.process.returncode)
            self.last_exit_code = code
            self.log.write(f"==> {time.strftime('%H:%M:%S')} exited with code {code}\n".encode())
            if self.restart_policy == "Never" or (self.restart_policy == "OnFailure" and code == 0):
                self.write_status("terminated", exit_code=code)  # done: the pod is Succeeded or Failed
                self.stop_requested.wait()
                return
            self.write_status("waiting", reason="CrashLoopBackOff", exit_code=code)
            # Restarted (Always, or OnFailure after a failure) after a growing back-off.
            if self.stop_requested.wait(delay):
                self.write_status("terminated", exit_code=code)
                return
            delay = min(max(delay * 2, self.backoff[0] or 0.5), self.backoff[1])
            self.restart_count += 1


# ----------------------------------------------------------------------------------- main ---


def main(pod_dir: str) -> None:
    pod = json.loads(Path(pod_dir, "pod.json").read_text())
    _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != pod["kubelet_pid"]:
        sys.exit(1)  # the test process went away before prctl took effect
    loopback_up()
    socket.sethostname(pod["hostname"])
    build_root(os.path.join(pod_dir, "root"), pod["mounts"], pod["hosts_file"])
    os.chroot(os.path.join(pod_dir, "root"))
    os.chdir("/")
    container = Container(pod["container"], pod_dir, pod.get("cpu_limit"), tuple(pod["restart_backoff"]), pod.get("restart_policy", "Always"))
    container.write_status("waiting", reason="ContainerCreating")
    Proxy(Tables(pod["services_file"], pod["endpoints_file"]), pod_dir, pod["container"]["ports"]).start()
    signal.signal(signal.SIGTERM, lambda *_: container.stop_requested.set())
    signal.signal(signal.SIGUSR1, lambda *_: container.restart_requested.set())
    container.run(pod["grace_seconds"])


if __name__ == "__main__":
    main(sys.argv[1])
