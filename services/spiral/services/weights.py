"""Weights broadcast: the learner side (:class:`WeightsPublisher`) and the actor side
(:class:`WeightsSubscriber`) of the server-streaming ``SubscribeWeights`` RPC.

Both learners publish a new ``(version, state_dict)`` after updates; every subscriber (actors, the
policy learner following the discriminator) gets the newest version at once and then each newer
one. A version is serialized and chunked once, at publish time, and the same chunks go to every
subscriber, so a model over gRPC's 4 MB default message size streams and N subscribers cost one
encoding. A slow subscriber skips versions: after finishing one it gets the newest, never a queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

import grpc
import torch

from spiral.config import Role, ServicesConfig
from spiral.errors import CancelledError, DeadlineExceededError, FailedPreconditionError, InvalidArgumentError, SpiralServiceError
from spiral.metrics import SpiralMetrics
from spiral.services.client import Backoff, create_channel, translate_rpc_error
from spiral.services.errors import check_protocol_version
from spiral.services.tensor_codec import VersionedWeights, WeightsAssembler, chunk_payload, encode_state_dict
from spiral.v1 import PROTOCOL_VERSION, services_pb2_grpc, tensor_pb2

logger = logging.getLogger(__name__)

#: Longest accepted ``WeightsRequest.subscriber_id`` in UTF-8 bytes (a pod name has at most 253).
MAX_SUBSCRIBER_ID_BYTES = 256


class _Published(NamedTuple):
    version: int
    state_dict: dict[str, torch.Tensor]
    chunks: tuple[tensor_pb2.WeightsChunk, ...]
    total_bytes: int
    published_unix_seconds: float


class WeightsPublisher:
    """Holds the latest ``(version, state_dict)`` and serves ``SubscribeWeights`` streams.

    Thread-safe: one learner thread publishes while gRPC handler threads stream to subscribers.
    Use it inside a servicer::

        def SubscribeWeights(self, request, context):
            return self.publisher.stream(request, context)
    """

    def __init__(
        self,
        chunk_bytes: int = 1024 * 1024,
        *,
        metrics: SpiralMetrics | None = None,
        job: str = "local",
        role: Role = Role.POLICY_LEARNER,
        poll_seconds: float = 0.5,
    ) -> None:
        """
        Args:
            chunk_bytes: data bytes per chunk (``ServicesConfig.weight_chunk_bytes``).
            metrics: counts streamed bytes in ``spiral_weights_published_bytes_total``.
            poll_seconds: how often a waiting stream re-checks that its client is still there.

        Raises:
            ValueError: ``chunk_bytes`` < 1.
        """
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be ≥ 1, got {chunk_bytes}")
        self._chunk_bytes = chunk_bytes
        self._metrics = metrics
        self._labels = (job, role.value)
        self._poll = poll_seconds
        self._cond = threading.Condition()
        self._latest: _Published | None = None
        self._closed = False

    @classmethod
    def from_config(cls, cfg: ServicesConfig, **kwargs: object) -> WeightsPublisher:
        return cls(cfg.effective_weight_chunk_bytes, **kwargs)  # type: ignore[arg-type]

    def publish(self, version: int, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Make ``state_dict`` the current weights (copied and encoded now; wakes subscribers).

        Raises:
            ValueError: ``version`` is not greater than the current one (names both).
            InvalidArgumentError: a value is not a tensor with a wire dtype.
        """
        current = self.latest_version
        if current is not None and version <= current:
            raise ValueError(f"weights version must increase: got {version}, current is {current}")
        # Encoding outside the lock: a big model must not stall streams of the previous version.
        snapshot = {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}
        payload = encode_state_dict(snapshot)
        now = time.time()
        chunks = tuple(chunk_payload(version, payload, self._chunk_bytes, now))
        with self._cond:
            if self._latest is not None and version <= self._latest.version:
                raise ValueError(f"weights version must increase: got {version}, current is {self._latest.version}")
            self._latest = _Published(version, snapshot, chunks, len(payload), now)
            self._cond.notify_all()

    @property
    def latest_version(self) -> int | None:
        with self._cond:
            return None if self._latest is None else self._latest.version

    def latest(self) -> VersionedWeights | None:
        """The current weights (the publisher's own copy: do not modify the tensors)."""
        with self._cond:
            p = self._latest
        return None if p is None else VersionedWeights(p.version, p.state_dict, p.published_unix_seconds)

    def close(self) -> None:
        """End every open stream (normally) and refuse new ones; call before stopping the server."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _wait_for(self, min_version: int, is_active: Callable[[], bool]) -> _Published | None:
        with self._cond:
            while not self._closed and is_active():
                if self._latest is not None and self._latest.version >= min_version:
                    return self._latest
                self._cond.wait(self._poll)
        return None

    def stream(self, request: tensor_pb2.WeightsRequest, context: grpc.ServicerContext) -> Iterator[tensor_pb2.WeightsChunk]:
        """The body of a ``SubscribeWeights`` handler: newest version ≥ min_version, then each newer.

        Raises:
            FailedPreconditionError: protocol version mismatch, or the publisher is closed.
            InvalidArgumentError: negative ``min_version``.
        """
        check_protocol_version(request.protocol_version, message="WeightsRequest")
        if request.min_version < 0:
            raise InvalidArgumentError(f"WeightsRequest.min_version must be ≥ 0, got {request.min_version}")
        id_bytes = len(request.subscriber_id.encode("utf-8", "surrogatepass"))
        if id_bytes > MAX_SUBSCRIBER_ID_BYTES:  # it is logged: a 10 MB name must not reach the log
            raise InvalidArgumentError(f"WeightsRequest.subscriber_id is {id_bytes} bytes long; at most {MAX_SUBSCRIBER_ID_BYTES} are accepted")
        with self._cond:
            if self._closed:
                raise FailedPreconditionError("weights publisher is shut down (server stopping); reconnect to the new server")
        context.add_callback(self._wake)  # a cancelled client must not wait out a poll interval
        logger.info("weights subscriber %r (%s) from version %d", request.subscriber_id, context.peer(), request.min_version)
        next_version = request.min_version
        while True:
            published = self._wait_for(next_version, context.is_active)
            if published is None:
                return
            yield from published.chunks
            if self._metrics is not None:
                self._metrics.weights_published_bytes.labels(*self._labels).inc(published.total_bytes)
            next_version = published.version + 1


class _PermanentFailure(NamedTuple):
    error: SpiralServiceError


_STUBS: dict[Role, type[services_pb2_grpc.PolicyLearnerStub] | type[services_pb2_grpc.DiscriminatorLearnerStub]] = {
    Role.POLICY_LEARNER: services_pb2_grpc.PolicyLearnerStub,
    Role.DISCRIMINATOR_LEARNER: services_pb2_grpc.DiscriminatorLearnerStub,
}


class WeightsSubscriber:
    """Keeps the newest weights of one learner, fetched by a background thread.

    Reconnects with backoff when the stream breaks (learner restart, network) and resumes from the
    version after the one it holds. Stops for good on a permanent status (protocol mismatch,
    UNIMPLEMENTED, ...): :meth:`wait_for_version` then raises that error. Thread-safe.
    """

    def __init__(
        self,
        address: str,
        cfg: ServicesConfig,
        *,
        source: Role = Role.POLICY_LEARNER,
        min_version: int = 0,
        subscriber_id: str = "",
        backoff: Backoff = Backoff(initial_seconds=0.2, max_seconds=5.0),
        on_update: Callable[[VersionedWeights], None] | None = None,
        on_reconnect: Callable[[SpiralServiceError], None] | None = None,
        target_name_override: str | None = None,
    ) -> None:
        """
        Args:
            address: the learner's ``host:port``.
            source: ``Role.POLICY_LEARNER`` or ``Role.DISCRIMINATOR_LEARNER``.
            on_update: called in the background thread with each new version (keep it short).
            on_reconnect: called before each reconnect with the error (e.g. count a metric).

        Raises:
            ValueError: ``source`` is not a learner role (lists the valid ones).
        """
        if source not in _STUBS:
            raise ValueError(f"source must be one of {[r.value for r in _STUBS]}, got {source.value!r}")
        self._address = address
        self._channel = create_channel(address, cfg, target_name_override=target_name_override)
        self._stub = _STUBS[source](self._channel)
        self._method = f"spiral.v1.{_STUBS[source].__name__.removesuffix('Stub')}/SubscribeWeights"
        self._min_version = min_version
        self._subscriber_id = subscriber_id
        self._backoff = backoff
        self._on_update = on_update
        self._on_reconnect = on_reconnect
        self._cond = threading.Condition()
        self._latest: VersionedWeights | None = None
        self._failure: _PermanentFailure | None = None
        self._stopping = threading.Event()
        self._call: grpc.Future | None = None
        self._thread = threading.Thread(target=self._run, name=f"weights-{source.value}", daemon=True)
        self.num_reconnects = 0

    def start(self) -> WeightsSubscriber:
        self._thread.start()
        return self

    def latest(self) -> VersionedWeights | None:
        with self._cond:
            return self._latest

    def wait_for_version(self, min_version: int = 0, timeout: float | None = None) -> VersionedWeights:
        """Block until weights with ``version ≥ min_version`` arrived.

        Raises:
            DeadlineExceededError: not within ``timeout`` (names the version, the address and
                the version held).
            SpiralServiceError: the subscription failed permanently (e.g. FailedPreconditionError
                on a protocol mismatch).
            CancelledError: the subscriber was stopped.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._latest is not None and self._latest.version >= min_version:
                    return self._latest
                if self._failure is not None:
                    raise self._failure.error
                if self._stopping.is_set():
                    raise CancelledError(f"weights subscriber for {self._address} was stopped")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    held = "none" if self._latest is None else self._latest.version
                    raise DeadlineExceededError(
                        f"no weights version ≥ {min_version} from {self._address} within {timeout:g} s (holding {held})"
                    )
                self._cond.wait(remaining)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the stream, join the thread and close the channel."""
        self._stopping.set()
        call = self._call
        if call is not None:
            call.cancel()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._channel.close()

    def __enter__(self) -> WeightsSubscriber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_min_version(self) -> int:
        with self._cond:
            return self._min_version if self._latest is None else max(self._min_version, self._latest.version + 1)

    def _run(self) -> None:
        delays = self._backoff.delays()
        while not self._stopping.is_set():
            request = tensor_pb2.WeightsRequest(
                protocol_version=PROTOCOL_VERSION, min_version=self._next_min_version(), subscriber_id=self._subscriber_id
            )
            try:
                self._call = call = self._stub.SubscribeWeights(request)
                assembler = WeightsAssembler()
                for chunk in call:
                    weights = assembler.add(chunk)
                    if weights is None:
                        continue
                    with self._cond:
                        self._latest = weights
                        self._cond.notify_all()
                    delays = self._backoff.delays()  # a healthy stream resets the backoff
                    if self._on_update is not None:
                        try:
                            self._on_update(weights)
                        except Exception:  # a buggy callback must not end the subscription
                            logger.exception("weights on_update callback failed for version %d", weights.version)
                error: SpiralServiceError = CancelledError(f"{self._method}: the server ended the stream")
            except grpc.RpcError as err:
                if self._stopping.is_set():
                    break
                error = translate_rpc_error(err, method=self._method)
                if not error.retryable:  # the request or the contract is wrong: reconnecting cannot help
                    logger.error("weights subscription to %s failed permanently: %s", self._address, error)
                    with self._cond:
                        self._failure = _PermanentFailure(error)
                        self._cond.notify_all()
                    return
            except InvalidArgumentError as err:  # a corrupted stream: drop it and start over
                error = err
            if self._stopping.is_set():
                break
            delay = next(delays)
            self.num_reconnects += 1
            logger.warning("weights stream from %s broke (%s); reconnecting in %.2f s", self._address, error, delay)
            if self._on_reconnect is not None:
                self._on_reconnect(error)
            self._stopping.wait(delay)
