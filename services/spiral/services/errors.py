"""Where the error hierarchy (:mod:`spiral.errors`) meets gRPC status codes: the one mapping.

The server interceptor (:mod:`spiral.services.server`) turns any exception a servicer raises into a
status with :func:`status_for`; the client boundary (:mod:`spiral.services.client`) turns a failed
RPC back into the same class with :func:`error_from_status`. :func:`check_protocol_version` is the
check every request handler makes first.
"""

from __future__ import annotations

import logging

import grpc

from spiral.errors import (
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SpiralServiceError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from spiral.v1 import PROTOCOL_VERSION

logger = logging.getLogger(__name__)

#: The status each error class travels as (and is rebuilt from on the client).
STATUS_CODES: dict[type[SpiralServiceError], grpc.StatusCode] = {
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceededError: grpc.StatusCode.DEADLINE_EXCEEDED,
    UnavailableError: grpc.StatusCode.UNAVAILABLE,
    CancelledError: grpc.StatusCode.CANCELLED,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    UnimplementedError: grpc.StatusCode.UNIMPLEMENTED,
    InternalError: grpc.StatusCode.INTERNAL,
}
_BY_CODE: dict[grpc.StatusCode, type[SpiralServiceError]] = {code: cls for cls, code in STATUS_CODES.items()}


def code_for(error: SpiralServiceError) -> grpc.StatusCode:
    """The status ``error`` travels as: its class's (or nearest base's) code, else UNKNOWN."""
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return grpc.StatusCode.UNKNOWN


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Map any exception raised while serving to ``(status code, details)``: the one mapping.

    Domain errors keep their code and message. ``TimeoutError`` means DEADLINE_EXCEEDED and
    ``NotImplementedError`` UNIMPLEMENTED; anything else is a bug: INTERNAL, with the type name
    in the details (the traceback is logged, never sent).
    """
    if isinstance(exc, SpiralServiceError):
        return code_for(exc), str(exc)
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc) or "timed out"
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED, str(exc) or "not implemented"
    logger.error("unexpected error while serving", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


def error_from_status(code: grpc.StatusCode, details: str | None, *, method: str = "", timeout: float | None = None) -> SpiralServiceError:
    """Build the domain error for a failed RPC; the message names the method, the status and the
    timeout. A status without a class of its own (e.g. ABORTED) becomes the base class."""
    cls = _BY_CODE.get(code, SpiralServiceError)
    where = f"{method}: " if method else ""
    text = f"{where}{code.name}: {details or '(no details)'}"
    if timeout is not None:
        text += f" (deadline {timeout:g} s)"
    return cls(text)


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
