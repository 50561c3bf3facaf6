"""The client boundary: channels (with TLS), deadlines, backoff, error translation.

Every client of a SPIRAL service (actors, learners, ``ReplayClient``, ``WeightsSubscriber``)
dials through :func:`create_channel` and translates a failed RPC with :func:`translate_rpc_error`
(or calls through :func:`call_unary`, which does it), so a failure always surfaces as a
:class:`~spiral.errors.SpiralServiceError` whose message names the method, the status and the
deadline. Whether to retry is the error's own answer (:attr:`~spiral.errors.SpiralServiceError.retryable`);
the waits between attempts come from :class:`Backoff`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

import grpc

from spiral.config import ConfigError, ServicesConfig
from spiral.errors import SpiralServiceError, UnavailableError
from spiral.services.errors import error_from_status
from spiral.services.tls import channel_credentials, is_loopback

T = TypeVar("T")


class Backoff(NamedTuple):
    """Exponential backoff with jitter: ``initial × multiplier^n`` capped at ``max_seconds``."""

    initial_seconds: float = 0.1
    max_seconds: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2  # ± fraction of each delay, so that restarted actors do not reconnect in lockstep

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The successive waits between attempts (endless)."""
        rng = rng or random.Random()
        delay = self.initial_seconds
        while True:
            yield max(0.0, delay * (1.0 + self.jitter * (2.0 * rng.random() - 1.0)))
            delay = min(self.max_seconds, delay * self.multiplier)


# ---------------------------------------------------------------------------------- channels ---


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
