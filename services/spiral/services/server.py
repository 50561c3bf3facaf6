"""``serve(...)``: the one way every SPIRAL service starts a gRPC server.

It binds the port (0 picks a free one), adds the ``grpc.health.v1`` health service, applies the
message size limit of :class:`~spiral.config.ServicesConfig`, optional TLS/mTLS (plaintext is
refused on a non-loopback address unless ``allow_insecure``), an interceptor that counts requests
and latency into ``spiral_grpc_requests_total`` / ``spiral_grpc_request_seconds`` and maps every
exception a servicer raises to a status code (:func:`spiral.services.errors.status_for`), and a
Prometheus ``/metrics`` HTTP endpoint on its own registry (plain HTTP: the job's NetworkPolicy
decides who may scrape it).

Bounded, whatever the clients do:

* Requests arrive as raw bytes and are decoded inside the interceptor, so undecodable bytes are an
  INVALID_ARGUMENT naming the method and message type (grpcio's own deserializer answered INTERNAL
  "Exception deserializing request!" and left its stream half-accounted: four of them made the
  server's stop hang forever).
* Every streaming method admits at most ``max_streams_per_method`` concurrent streams (the job's
  expected clients plus :data:`STREAM_MARGIN`); a further one gets RESOURCE_EXHAUSTED (retryable).
  The thread pool holds every admitted stream plus :data:`RESERVE_WORKERS`, so health checks and
  status calls always find a thread (one thread per open stream had let 64 actors freeze a learner,
  health check included).
* Shutdown is graceful and bounded: health flips to NOT_SERVING, in-flight calls get
  ``grace_seconds``, the wait for gRPC's own stop is cut off :data:`STOP_MARGIN_SECONDS` later, then
  the ``on_stop`` callbacks run (the replay buffer checkpoints there). A process whose server threads
  are still stuck afterwards exits anyway (:func:`spiral.services.runtime.run_service`).

With TLS, a second, plaintext server on ``127.0.0.1:services.health_port`` serves the same health
service only, for the pod's exec probes (:mod:`spiral.services.health_probe`): a kubelet probe
cannot present a client certificate. Signals are not handled here: each process has one trap,
:class:`spiral.process.StopFlag`, and stops its server when the flag is set.

Callers: the replay server (:mod:`spiral.services.replay_service`), the actor and both learners.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any, NamedTuple

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, start_http_server

from spiral.config import ConfigError, Role, ServicesConfig
from spiral.errors import InvalidArgumentError, ResourceExhaustedError
from spiral.fsio import atomic_write_text
from spiral.metrics import SpiralMetrics, create_metrics
from spiral.services.errors import status_for
from spiral.services.tls import is_loopback, server_credentials
from spiral.v1 import replay_pb2_grpc, services_pb2_grpc

logger = logging.getLogger(__name__)

#: Seconds in-flight calls get to finish on shutdown; below Kubernetes' default 30 s termination
#: grace so that the on-stop checkpoint still fits before SIGKILL.
DEFAULT_GRACE_SECONDS = 5.0
#: How long after the grace the wait for gRPC's own stop is cut off (it can hang on streams
#: grpcio lost track of); the checkpoint callbacks run either way.
STOP_MARGIN_SECONDS = 2.0
#: Concurrent streams per method beyond the job's expected clients (restarting actors whose old
#: stream is not torn down yet, a dashboard's `grpcurl`, tests).
STREAM_MARGIN = 8
#: Threads beyond all admitted streams: unary calls (health checks, GetStatus, Info) always find one.
RESERVE_WORKERS = 8
#: Streaming methods a server has at most (policy learner: SendTrajectories and SubscribeWeights;
#: replay: Insert and Sample; and everyone's health Watch); the thread pool holds a full quota of each.
STREAMING_METHODS = 3


class ServiceBinding(NamedTuple):
    """A servicer and the generated function that registers it; ``name`` is its health name."""

    name: str
    servicer: Any
    add_to_server: Callable[[Any, grpc.Server], None]


def replay_binding(servicer: replay_pb2_grpc.ReplayBufferServicer) -> ServiceBinding:
    return ServiceBinding("spiral.v1.ReplayBuffer", servicer, replay_pb2_grpc.add_ReplayBufferServicer_to_server)


def policy_learner_binding(servicer: services_pb2_grpc.PolicyLearnerServicer) -> ServiceBinding:
    return ServiceBinding("spiral.v1.PolicyLearner", servicer, services_pb2_grpc.add_PolicyLearnerServicer_to_server)


def discriminator_learner_binding(servicer: services_pb2_grpc.DiscriminatorLearnerServicer) -> ServiceBinding:
    return ServiceBinding("spiral.v1.DiscriminatorLearner", servicer, services_pb2_grpc.add_DiscriminatorLearnerServicer_to_server)


# -------------------------------------------------------------------------------- addresses ---


def format_address(host: str, port: int) -> str:
    """``host:port`` with IPv6 literals bracketed."""
    bare = host.strip("[]")
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


def check_bind_allowed(cfg: ServicesConfig) -> None:
    """Refuse plaintext on a non-loopback address unless ``allow_insecure``.

    Raises:
        ConfigError: names services.bind_address, services.tls.enabled and the two ways out.
    """
    if not cfg.tls.enabled and not cfg.allow_insecure and not is_loopback(cfg.bind_address):
        raise ConfigError(
            f"services.bind_address {cfg.bind_address!r} is not a loopback address and services.tls.enabled is false: "
            "refusing to serve plaintext; enable services.tls or set services.allow_insecure (inside a NetworkPolicy)"
        )


# ------------------------------------------------------------------------------ interceptor ---


def thread_budget(max_streams_per_method: int, min_workers: int) -> int:
    """Server threads for ``max_streams_per_method`` streams on each streaming method plus the
    reserve for unary calls, and never fewer than ``min_workers`` (``services.max_workers``)."""
    return max(min_workers, STREAMING_METHODS * max_streams_per_method + RESERVE_WORKERS)


def _message_name(deserializer: Callable[[bytes], Any] | None) -> str:
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    if descriptor is not None and descriptor.full_name:
        return str(descriptor.full_name)
    return str(getattr(owner, "__name__", "request"))


def _decoder(deserializer: Callable[[bytes], Any] | None, method: str) -> Callable[[bytes], Any]:
    """Decode one raw request; undecodable bytes are the client's fault, not an internal error."""
    if deserializer is None:
        return lambda raw: raw
    name = _message_name(deserializer)

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as err:  # protobuf's DecodeError has no stable public home across versions
            raise InvalidArgumentError(f"{method}: the {len(raw)} request bytes are not a valid {name}: {err}") from None

    return decode


class _StreamGate:
    """At most ``limit`` concurrent streams of one method. Thread-safe."""

    def __init__(self, method: str, limit: int) -> None:
        self.method = method
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def admit(self, context: grpc.ServicerContext) -> None:
        """Take a slot for this call, released when the RPC terminates (whatever ends it).

        Raises:
            ResourceExhaustedError: ``limit`` streams are already open (retryable).
        """
        if not self._slots.acquire(blocking=False):
            raise ResourceExhaustedError(
                f"{self.method}: {self.limit} concurrent streams are already open (the limit: the job's expected clients + "
                f"{STREAM_MARGIN}); retry later"
            )
        released = threading.Event()
        lock = threading.Lock()

        def release() -> None:
            with lock:
                if released.is_set():
                    return
                released.set()
            self._slots.release()

        # The callback fires when the RPC ends, even if its handler is still unwinding: a
        # cancelled stream frees its slot at once. A callback refused (RPC already over) releases now.
        if not context.add_callback(release):
            release()


class _ObservingInterceptor(grpc.ServerInterceptor):
    """Decodes requests, limits concurrent streams, counts calls by status code, times them, and
    maps servicer exceptions to status codes."""

    def __init__(self, metrics: SpiralMetrics, job: str, role: str, max_streams_per_method: int) -> None:
        self._metrics = metrics
        self._job = job
        self._role = role
        self._max_streams = max_streams_per_method
        self._gates: dict[str, _StreamGate] = {}
        self._gates_lock = threading.Lock()

    def _gate(self, method: str) -> _StreamGate:
        with self._gates_lock:
            gate = self._gates.get(method)
            if gate is None:
                gate = self._gates[method] = _StreamGate(method, self._max_streams)
            return gate

    def intercept_service(self, continuation, handler_call_details):  # noqa: ANN001 - grpc's signature
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.lstrip("/")
        decode = _decoder(handler.request_deserializer, method)
        # request_deserializer=None: grpcio hands over the raw bytes and `decode` runs in the handler.
        kwargs = {"request_deserializer": None, "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._wrap_unary(handler.unary_unary, method, decode, streaming=False), **kwargs)
        if handler.stream_unary:
            # A client stream (an actor's trajectories) lasts as long as the client wants: its
            # duration is not a latency, so it is counted but not timed.
            return grpc.stream_unary_rpc_method_handler(self._wrap_unary(handler.stream_unary, method, decode, streaming=True), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._wrap_stream(handler.unary_stream, method, decode, requests_stream=False), **kwargs)
        return grpc.stream_stream_rpc_method_handler(self._wrap_stream(handler.stream_stream, method, decode, requests_stream=True), **kwargs)

    def _record(self, method: str, code: grpc.StatusCode, seconds: float | None) -> None:
        self._metrics.grpc_requests.labels(self._job, self._role, method, code.name).inc()
        if seconds is not None:
            self._metrics.grpc_request_seconds.labels(self._job, self._role, method).observe(seconds)

    @staticmethod
    def _final_code(context: grpc.ServicerContext, failed: grpc.StatusCode | None) -> grpc.StatusCode:
        if failed is not None:
            return failed
        code = context.code()  # type: ignore[attr-defined]  # ServicerContext.code() exists since grpcio 1.38; the stubs lack it
        if isinstance(code, grpc.StatusCode):
            return code
        return grpc.StatusCode.OK if context.is_active() else grpc.StatusCode.CANCELLED

    @staticmethod
    def _status(context: grpc.ServicerContext, exc: Exception) -> tuple[grpc.StatusCode, str | None]:
        """The status for ``exc``; details None when the handler already aborted with its own."""
        existing = context.code()  # type: ignore[attr-defined]  # as in _final_code: missing from the stubs
        if isinstance(existing, grpc.StatusCode) and existing != grpc.StatusCode.OK:
            return existing, None
        return status_for(exc)

    @staticmethod
    def _decoded(request: Any, decode: Callable[[bytes], Any], stream: bool) -> Any:
        if not stream:
            return decode(request)
        return (decode(raw) for raw in request)

    def _wrap_unary(self, behavior: Callable, method: str, decode: Callable[[bytes], Any], *, streaming: bool) -> Callable:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            failed: grpc.StatusCode | None = None
            try:
                if streaming:
                    self._gate(method).admit(context)
                return behavior(self._decoded(request, decode, streaming), context)
            except Exception as exc:
                failed, details = self._status(context, exc)
                if details is None:
                    raise
                context.abort(failed, details)
            finally:
                self._record(method, self._final_code(context, failed), None if streaming else time.perf_counter() - start)

        return wrapped

    def _wrap_stream(self, behavior: Callable, method: str, decode: Callable[[bytes], Any], *, requests_stream: bool) -> Callable:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            start = time.perf_counter()
            timed = False
            failed: grpc.StatusCode | None = None
            try:
                self._gate(method).admit(context)
                for response in behavior(self._decoded(request, decode, requests_stream), context):
                    if not timed:
                        # Streams are timed to their first message: their length is the client's choice.
                        self._metrics.grpc_request_seconds.labels(self._job, self._role, method).observe(time.perf_counter() - start)
                        timed = True
                    yield response
            except Exception as exc:
                failed, details = self._status(context, exc)
                if details is None:
                    raise
                context.abort(failed, details)
            finally:
                self._record(method, self._final_code(context, failed), None if timed else time.perf_counter() - start)

        return wrapped


# ----------------------------------------------------------------------------------- server ---


class RunningServer:
    """A started server. ``stop()`` is idempotent and thread-safe; ``wait()`` blocks until stopped."""

    def __init__(
        self,
        server: grpc.Server,
        health_servicer: health.HealthServicer,
        host: str,
        port: int,
        metrics_http: Any | None,
        registry: CollectorRegistry,
        metrics: SpiralMetrics,
        grace_seconds: float,
        on_stop: Sequence[Callable[[], None]],
        before_stop: Sequence[Callable[[], None]] = (),
        *,
        executor: futures.ThreadPoolExecutor | None = None,
        health_server: grpc.Server | None = None,
        health_port: int | None = None,
        max_streams_per_method: int = 0,
        workers: int = 0,
    ) -> None:
        self._server = server
        self._executor = executor
        self._health_server = health_server
        #: The plaintext loopback health port (TLS servers only), else None.
        self.health_port = health_port
        self.max_streams_per_method = max_streams_per_method
        self.workers = workers
        #: False when gRPC's stop did not finish within grace + STOP_MARGIN_SECONDS (threads stuck).
        self.stopped_cleanly = True
        self.health = health_servicer
        self.host = host
        self.port = port
        self._metrics_http = metrics_http
        self.metrics_port: int | None = metrics_http.server_port if metrics_http is not None else None
        self.registry = registry
        self.metrics = metrics
        self.grace_seconds = grace_seconds
        self._on_stop = list(on_stop)
        self._before_stop = list(before_stop)
        self._lock = threading.Lock()
        self._stopping = False
        self._stopped = threading.Event()

    @property
    def address(self) -> str:
        """``host:port`` a client on this machine can dial (wildcard binds map to loopback)."""
        host = self.host.strip("[]")
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return format_address(host, self.port)

    def add_stop_callback(self, callback: Callable[[], None], *, before: bool = False) -> None:
        """Run ``callback`` after the server stopped serving, or with ``before`` as soon as a stop
        starts (e.g. ``WeightsPublisher.close`` so that open streams end instead of using the grace)."""
        (self._before_stop if before else self._on_stop).append(callback)

    def _run_callbacks(self, callbacks: Sequence[Callable[[], None]]) -> None:
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one failing callback must not skip the others (e.g. the checkpoint)
                logger.exception("stop callback %r failed", callback)

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stop gracefully: NOT_SERVING, ``grace_seconds`` for in-flight calls, then callbacks.

        Bounded: the wait for gRPC's stop ends ``STOP_MARGIN_SECONDS`` after the grace even if
        some stream never finishes (``stopped_cleanly`` is then False); the callbacks run either way.
        """
        with self._lock:
            already, self._stopping = self._stopping, True
        if already:
            self._stopped.wait()
            return
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        logger.info("stopping gRPC server on %s (grace %.1f s)", self.address, grace)
        self.health.enter_graceful_shutdown()
        self._run_callbacks(self._before_stop)
        stopped = self._server.stop(grace)
        if self._health_server is not None:
            self._health_server.stop(0)
        if not stopped.wait(timeout=grace + STOP_MARGIN_SECONDS):
            self.stopped_cleanly = False
            logger.error(
                "gRPC server on %s did not stop within %.1f s (a stream that never ends); checkpointing and exiting anyway",
                self.address, grace + STOP_MARGIN_SECONDS,
            )  # fmt: skip
        if self._executor is not None:
            # Idle workers exit now; a stuck one is left to the process exit (run_service).
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._run_callbacks(self._on_stop)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        self._stopped.set()
        logger.info("server on %s stopped", self.address)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped (or ``timeout``); returns whether it stopped.

        Polls so that signal handlers keep running in the main thread meanwhile.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped.is_set():
            remaining = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if remaining <= 0:
                return False
            self._stopped.wait(remaining)
        return True

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    bindings: Iterable[ServiceBinding],
    cfg: ServicesConfig,
    *,
    role: Role,
    job: str = "local",
    registry: CollectorRegistry | None = None,
    metrics: SpiralMetrics | None = None,
    grace_seconds: float | None = None,
    max_workers: int | None = None,
    expected_clients: int = 1,
    metrics_http: bool = True,
    on_stop: Sequence[Callable[[], None]] = (),
    before_stop: Sequence[Callable[[], None]] = (),
    ready_file: Path | None = None,
) -> RunningServer:
    """Start a gRPC server for ``bindings`` as configured by ``cfg`` and return it running.

    Args:
        bindings: the servicers (see :func:`replay_binding` and friends).
        cfg: port (0 = free), bind address, TLS, message size limit, metrics port (0 = free).
        role: the ``role`` label of the gRPC metrics.
        job: the ``spiral_job`` label of every metric (the SpiralJob name; ``local`` outside Kubernetes).
        registry, metrics: pass both when the servicers already update metrics created on
            ``registry``; otherwise a fresh registry and metric set are made.
        grace_seconds: how long in-flight calls may finish after a stop request
            (default ``cfg.shutdown_grace_seconds``).
        max_workers: at least this many gRPC server threads (default ``cfg.max_workers``); the pool
            is raised to hold every admitted stream plus a reserve (:func:`thread_budget`).
        expected_clients: how many peers hold a stream of one method at a time (the job's
            ``num_actors``); each streaming method admits that many plus :data:`STREAM_MARGIN`.
        metrics_http: serve ``registry`` on ``cfg.metrics_port`` (/metrics).
        on_stop: callbacks run after serving stopped (checkpoints).
        before_stop: callbacks run when a stop begins, before the grace period (close publishers
            and tables so that long streams end promptly).
        ready_file: once serving, write ``{"role", "address", "grpc_port", "metrics_port", "pid"}``
            there as JSON (atomically), so a launcher that asked for port 0 learns the ports.

    Raises:
        ConfigError: plaintext on a non-loopback address without allow_insecure, or unreadable
            TLS files.
        ValueError: ``metrics`` given without its ``registry``.
        OSError: the gRPC or metrics port cannot be bound (names the address).
    """
    bindings = list(bindings)
    check_bind_allowed(cfg)
    if metrics is not None and registry is None:
        raise ValueError("serve(): pass the registry the metrics were created on together with metrics")
    registry = registry if registry is not None else CollectorRegistry()
    metrics = metrics if metrics is not None else create_metrics(registry)

    options = [
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_send_message_length", cfg.max_message_bytes),
        # Without this, a second server could silently share a fixed port on Linux.
        ("grpc.so_reuseport", 0),
    ]
    max_streams = max(1, expected_clients) + STREAM_MARGIN
    workers = thread_budget(max_streams, max_workers or cfg.max_workers)
    executor = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"grpc-{role.value}")
    server = grpc.server(executor, interceptors=[_ObservingInterceptor(metrics, job, role.value, max_streams)], options=options)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for binding in bindings:
        binding.add_to_server(binding.servicer, server)
    health_server, health_port = (None, None)
    if cfg.tls.enabled:
        health_server, health_port = _loopback_health_server(health_servicer, cfg.health_port, role)

    address = format_address(cfg.bind_address, cfg.grpc_port)
    try:
        if cfg.tls.enabled:
            port = server.add_secure_port(address, server_credentials(cfg.tls))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as err:
        _discard(server, health_server, executor)
        raise OSError(f"cannot bind gRPC port {address} (services.grpc_port / services.bind_address): {err}") from None
    except ConfigError:
        _discard(server, health_server, executor)
        raise
    if port == 0:
        _discard(server, health_server, executor)
        raise OSError(f"cannot bind gRPC port {address} (services.grpc_port / services.bind_address)")

    httpd = None
    if metrics_http:
        try:
            httpd, _thread = start_http_server(cfg.metrics_port, addr=cfg.bind_address.strip("[]"), registry=registry)
        except OSError as err:
            _discard(server, health_server, executor)
            raise OSError(f"cannot bind metrics port {cfg.bind_address}:{cfg.metrics_port} (services.metrics_port): {err}") from None

    server.start()
    if health_server is not None:
        health_server.start()
    for binding in bindings:
        health_servicer.set(binding.name, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    grace = cfg.shutdown_grace_seconds if grace_seconds is None else grace_seconds
    running = RunningServer(
        server,
        health_servicer,
        cfg.bind_address,
        port,
        httpd,
        registry,
        metrics,
        grace,
        on_stop,
        before_stop,
        executor=executor,
        health_server=health_server,
        health_port=health_port,
        max_streams_per_method=max_streams,
        workers=workers,
    )
    logger.info(
        "%s serving %s on %s (%s), metrics on port %s",
        role.value,
        ", ".join(b.name for b in bindings) or "health only",
        running.address,
        "mTLS" if cfg.tls.enabled and cfg.tls.ca_file else "TLS" if cfg.tls.enabled else "plaintext",
        running.metrics_port,
    )
    if ready_file is not None:
        write_ready_file(Path(ready_file), running, role)
    return running


def write_ready_file(path: Path, running: RunningServer, role: Role) -> None:
    """Atomically write the bound ports as JSON (readers never see half a file)."""
    payload = {
        "role": role.value,
        "address": running.address,
        "grpc_port": running.port,
        "metrics_port": running.metrics_port,
        "health_port": running.health_port,
        "pid": os.getpid(),
    }
    atomic_write_text(path, json.dumps(payload))


def _loopback_health_server(health_servicer: health.HealthServicer, port: int, role: Role) -> tuple[grpc.Server, int]:
    """A plaintext server on 127.0.0.1 serving only ``health_servicer`` (shared with the TLS server,
    so NOT_SERVING on shutdown shows on both). Loopback only: nothing off the pod can reach it.

    Raises:
        OSError: the port cannot be bound (names services.health_port).
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"grpc-health-{role.value}"), options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        bound = server.add_insecure_port(format_address("127.0.0.1", port))
    except RuntimeError as err:
        raise OSError(f"cannot bind the loopback health port 127.0.0.1:{port} (services.health_port): {err}") from None
    if bound == 0:
        raise OSError(f"cannot bind the loopback health port 127.0.0.1:{port} (services.health_port)")
    return server, bound


def _discard(server: grpc.Server, health_server: grpc.Server | None, executor: futures.ThreadPoolExecutor) -> None:
    """Tear down a server that never started (a port could not be bound)."""
    server.stop(None)
    if health_server is not None:
        health_server.stop(None)
    executor.shutdown(wait=False, cancel_futures=True)
