"""The one exception hierarchy of SPIRAL's data structures and services, free of any transport.

The replay table, the tensor codec, the trajectory checks and the servicers raise these; the gRPC
boundary (:mod:`spiral.services.errors`) maps each class to a status code on the server and back to
the same class on the client. So a caller catches ``ResourceExhaustedError`` whether the table is in
its own process or behind a socket (the Reverb ``errors.py`` pattern), and :mod:`spiral.replay`
needs no gRPC to raise them.

Each class says whether trying again can help (:attr:`SpiralServiceError.retryable`): only when the
request or the contract itself is wrong (a bad argument, a protocol mismatch, missing credentials)
is it ``False``; a peer that is away, busy or restarting may answer the same request later.
"""

from __future__ import annotations

from typing import ClassVar


class SpiralServiceError(Exception):
    """Base of every service error (also what an unknown gRPC status becomes on the client)."""

    #: Whether the same request may succeed later (reconnect and resend with backoff).
    retryable: ClassVar[bool] = True


class InvalidArgumentError(SpiralServiceError, ValueError):
    """The request itself is wrong (bad dtype/shape/bytes, unknown table); retrying cannot help."""

    retryable = False


class NotFoundError(SpiralServiceError, LookupError):
    """A named thing (a replay table) does not exist; it may after a restart with another config."""


class FailedPreconditionError(SpiralServiceError):
    """The system is not in a state to serve this (protocol mismatch, server shutting down)."""

    retryable = False


class ResourceExhaustedError(SpiralServiceError):
    """A size or rate limit was hit (message too large, rate limiter would block forever)."""


class DeadlineExceededError(SpiralServiceError, TimeoutError):
    """A wait ran out of time (an RPC deadline, or a rate-limited insert/sample)."""


class UnavailableError(SpiralServiceError, ConnectionError):
    """The peer cannot be reached or is restarting; retry with backoff."""


class CancelledError(SpiralServiceError):
    """The call was cancelled (by the client, or because the server closed the resource)."""


class UnauthenticatedError(SpiralServiceError):
    """No or invalid credentials (TLS client certificate); resending the same call cannot help."""

    retryable = False


class PermissionDeniedError(SpiralServiceError):
    """Authenticated, but not allowed to make this call."""

    retryable = False


class UnimplementedError(SpiralServiceError, NotImplementedError):
    """The peer does not implement the method (another release)."""

    retryable = False


class InternalError(SpiralServiceError):
    """A bug or an unexpected failure on the server side; a restarted server may not repeat it."""
