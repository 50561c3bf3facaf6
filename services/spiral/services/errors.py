"""One exception hierarchy for the SPIRAL services, and the one place it meets gRPC status codes.

Servicers and the data structures under them raise these domain errors; the server interceptor
(:mod:`spiral.services.server`) turns any exception into a status with :func:`status_for`, and the
client boundary (:mod:`spiral.services.client`) turns a failed RPC back into the same classes with
:func:`error_from_status`. So a caller catches ``ResourceExhaustedError`` whether the table is in
its own process or behind a socket (the Reverb ``errors.py`` pattern).
"""

from __future__ import annotations

import logging

import grpc

from spiral.v1 import PROTOCOL_VERSION

logger = logging.getLogger(__name__)


class SpiralServiceError(Exception):
    """Base of every service error; ``code`` is the gRPC status it travels as."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN


class InvalidArgumentError(SpiralServiceError, ValueError):
    """The request itself is wrong (bad dtype/shape/bytes, unknown table); retrying cannot help."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(SpiralServiceError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPreconditionError(SpiralServiceError):
    """The system is not in a state to serve this (protocol mismatch, server shutting down)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhaustedError(SpiralServiceError):
    """A size or rate limit was hit (message too large, rate limiter would block forever)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceededError(SpiralServiceError, TimeoutError):
    """A wait ran out of time (an RPC deadline, or a rate-limited insert/sample)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnavailableError(SpiralServiceError, ConnectionError):
    """The peer cannot be reached or is restarting; retry with backoff."""

    code = grpc.StatusCode.UNAVAILABLE


class CancelledError(SpiralServiceError):
    """The call was cancelled (by the client, or because the server closed the resource)."""

    code = grpc.StatusCode.CANCELLED


class UnauthenticatedError(SpiralServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class UnimplementedError(SpiralServiceError, NotImplementedError):
    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(SpiralServiceError):
    """A bug or an unexpected failure on the server side."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[SpiralServiceError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        FailedPreconditionError,
        ResourceExhaustedError,
        DeadlineExceededError,
        UnavailableError,
        CancelledError,
        UnauthenticatedError,
        UnimplementedError,
        InternalError,
    )
}

#: Codes worth retrying with backoff: the peer may come back or the limit may clear.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED})


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Map any exception raised while serving to ``(status code, details)``: the one mapping.

    Domain errors keep their code and message. ``TimeoutError`` means DEADLINE_EXCEEDED and
    ``NotImplementedError`` UNIMPLEMENTED; anything else is a bug: INTERNAL, with the type name
    in the details (the traceback is logged, never sent).
    """
    if isinstance(exc, SpiralServiceError):
        return exc.code, str(exc)
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc) or "timed out"
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED, str(exc) or "not implemented"
    logger.error("unexpected error while serving", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


def error_from_status(code: grpc.StatusCode, details: str | None, *, method: str = "", timeout: float | None = None) -> SpiralServiceError:
    """Build the domain error for a failed RPC; the message names the method and the timeout."""
    cls = _BY_CODE.get(code, SpiralServiceError)
    where = f"{method}: " if method else ""
    text = f"{where}{code.name}: {details or '(no details)'}"
    if timeout is not None:
        text += f" (deadline {timeout:g} s)"
    err = cls(text)
    if cls is SpiralServiceError:
        err.code = code
    return err


def check_protocol_version(version: int, *, message: str) -> None:
    """Refuse a request whose ``protocol_version`` differs from :data:`spiral.v1.PROTOCOL_VERSION`.

    Raises:
        FailedPreconditionError: names the message type, both versions and what to do.
    """
    if version != PROTOCOL_VERSION:
        got = "unset (0)" if version == 0 else str(version)
        raise FailedPreconditionError(
            f"{message}.protocol_version is {got} but this server speaks spiral.v1 protocol version "
            f"{PROTOCOL_VERSION}: run the same spiral release on client and server"
        )
