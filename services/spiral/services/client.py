"""The client boundary: channels (with TLS), deadlines, retries with backoff, error translation.

Every client of a SPIRAL service (actors, learners, ``ReplayClient``, ``WeightsSubscriber``)
dials through :func:`create_channel` and calls through :func:`call_unary` / :func:`iter_stream`,
so a failed RPC always surfaces as a :class:`~spiral.services.errors.SpiralServiceError` whose
message names the method, the status and the deadline.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

import grpc

from spiral.config import ConfigError, ServicesConfig, TLSConfig
from spiral.services.errors import (
    DeadlineExceededError,
    SpiralServiceError,
    UnavailableError,
    error_from_status,
)
from spiral.services.server import is_loopback, read_pem

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Backoff(NamedTuple):
    """Exponential backoff with jitter: ``initial × multiplier^n`` capped at ``max_seconds``."""

    initial_seconds: float = 0.1
    max_seconds: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2  # ± fraction of each delay, so that restarted actors do not reconnect in lockstep
    max_attempts: int | None = None  # None = retry until the deadline (or forever)

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The successive waits between attempts (endless)."""
        rng = rng or random.Random()
        delay = self.initial_seconds
        while True:
            yield max(0.0, delay * (1.0 + self.jitter * (2.0 * rng.random() - 1.0)))
            delay = min(self.max_seconds, delay * self.multiplier)


# ---------------------------------------------------------------------------------- channels ---


def channel_credentials(tls: TLSConfig) -> grpc.ChannelCredentials:
    """TLS credentials: ``ca_file`` verifies the server; ``cert_file``/``key_file`` are presented
    as the client certificate (needed when the server requires mTLS).

    Raises:
        ConfigError: a PEM file cannot be read.
    """
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(tls.ca_file, "ca_file"),
        private_key=read_pem(tls.key_file, "key_file"),
        certificate_chain=read_pem(tls.cert_file, "cert_file"),
    )


def create_channel(
    address: str,
    cfg: ServicesConfig,
    *,
    target_name_override: str | None = None,
    options: list[tuple[str, Any]] | None = None,
) -> grpc.Channel:
    """Dial ``address`` (``host:port``) with ``cfg``'s TLS and message size limit.

    Args:
        target_name_override: the name to check the server certificate against, when it differs
            from the host in ``address`` (tests dialing 127.0.0.1 with a ``localhost`` cert).

    Raises:
        ConfigError: plaintext to a non-loopback host without ``services.allow_insecure``.
    """
    opts = [
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_send_message_length", cfg.max_message_bytes),
        *(options or []),
    ]
    if cfg.tls.enabled:
        if target_name_override:
            opts.append(("grpc.ssl_target_name_override", target_name_override))
        return grpc.secure_channel(address, channel_credentials(cfg.tls), options=opts)
    host = address.rsplit(":", 1)[0]
    if not cfg.allow_insecure and not is_loopback(host):
        raise ConfigError(
            f"refusing a plaintext channel to {address!r}: it is not a loopback address and services.tls.enabled is false; "
            "enable services.tls or set services.allow_insecure"
        )
    return grpc.insecure_channel(address, options=opts)


def wait_for_ready(channel: grpc.Channel, timeout: float, *, address: str = "") -> None:
    """Block until the channel connects.

    Raises:
        UnavailableError: not connected within ``timeout`` seconds (names the address).
    """
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise UnavailableError(f"could not connect to {address or 'the server'} within {timeout:g} s") from None


# --------------------------------------------------------------------------------- calling ---


def translate_rpc_error(err: grpc.RpcError, *, method: str, timeout: float | None = None) -> SpiralServiceError:
    """A failed RPC as the matching :class:`SpiralServiceError` (message: method, status, deadline)."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return error_from_status(code, details, method=method, timeout=timeout)


def call_unary(
    rpc: Callable[..., T],
    request: Any,
    *,
    method: str,
    timeout: float,
    metadata: tuple[tuple[str, str], ...] | None = None,
) -> T:
    """Call a unary (or stream-unary) stub method with a deadline.

    Raises:
        SpiralServiceError: the subclass matching the status (DeadlineExceededError names the
            timeout).
    """
    try:
        return rpc(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as err:
        raise translate_rpc_error(err, method=method, timeout=timeout) from None


def iter_stream(responses: Iterator[T], *, method: str, timeout: float | None = None) -> Iterator[T]:
    """Iterate a response stream, translating a failure into a :class:`SpiralServiceError`."""
    try:
        yield from responses
    except grpc.RpcError as err:
        raise translate_rpc_error(err, method=method, timeout=timeout) from None


def with_backoff(
    fn: Callable[[], T],
    *,
    what: str,
    backoff: Backoff = Backoff(),
    retry_on: tuple[type[BaseException], ...] = (UnavailableError,),
    deadline_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, retrying ``retry_on`` errors with exponential backoff.

    Args:
        what: names the operation in log lines and the final error.
        deadline_seconds: give up once this much time has passed (None = only ``max_attempts``).
        on_retry: called with (attempt number, error, delay) before each wait, e.g. to count
            reconnects in a metric.

    Raises:
        DeadlineExceededError: the deadline passed; the message names ``what``, the attempts and
            the last error (which is chained).
        Exception: the last error once ``backoff.max_attempts`` is spent, or any error not in
            ``retry_on`` at once.
    """
    start = time.monotonic()
    delays = backoff.delays()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except retry_on as err:
            if backoff.max_attempts is not None and attempt >= backoff.max_attempts:
                raise
            delay = next(delays)
            elapsed = time.monotonic() - start
            if deadline_seconds is not None and elapsed + delay > deadline_seconds:
                raise DeadlineExceededError(
                    f"{what}: gave up after {attempt} attempts in {elapsed:.1f} s (deadline {deadline_seconds:g} s); last error: {err}"
                ) from err
            logger.warning("%s failed (attempt %d): %s; retrying in %.2f s", what, attempt, err, delay)
            if on_retry is not None:
                on_retry(attempt, err, delay)
            sleep(delay)
