"""The one error mapping, the client-side translation, which errors are retryable, and backoff."""

from __future__ import annotations

import grpc
import pytest

from spiral.config import ConfigError
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
from spiral.services.client import Backoff, create_channel
from spiral.services.errors import check_protocol_version, code_for, error_from_status, status_for
from spiral.v1 import PROTOCOL_VERSION
from transport_helpers import services_config


@pytest.mark.parametrize(
    "exc, code",
    [
        (InvalidArgumentError("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (FailedPreconditionError("bad"), grpc.StatusCode.FAILED_PRECONDITION),
        (ResourceExhaustedError("bad"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (NotFoundError("bad"), grpc.StatusCode.NOT_FOUND),
        (DeadlineExceededError("bad"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (TimeoutError("bad"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (NotImplementedError("bad"), grpc.StatusCode.UNIMPLEMENTED),
        (RuntimeError("bad"), grpc.StatusCode.INTERNAL),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.name,
)
def test_status_for_maps_domain_errors(exc: BaseException, code: grpc.StatusCode) -> None:
    got, details = status_for(exc)
    assert got == code and "bad" in details


def test_unexpected_errors_name_their_type() -> None:
    assert status_for(KeyError("x"))[1] == "internal error: KeyError: 'x'"


@pytest.mark.parametrize(
    "cls, code",
    [
        (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
        (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
        (ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
        (UnavailableError, grpc.StatusCode.UNAVAILABLE),
        (CancelledError, grpc.StatusCode.CANCELLED),
        (InternalError, grpc.StatusCode.INTERNAL),
        (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else v.name,
)
def test_error_from_status_round_trips_the_class(cls: type[SpiralServiceError], code: grpc.StatusCode) -> None:
    err = error_from_status(code, "why", method="spiral.v1.X/Y", timeout=2.5)
    assert type(err) is cls and code_for(err) == code
    assert str(err) == f"spiral.v1.X/Y: {code.name}: why (deadline 2.5 s)"


def test_a_status_without_a_class_becomes_the_retryable_base_and_travels_as_unknown() -> None:
    err = error_from_status(grpc.StatusCode.ABORTED, "lost a race", method="spiral.v1.X/Y")
    assert type(err) is SpiralServiceError and err.retryable
    assert str(err) == "spiral.v1.X/Y: ABORTED: lost a race"
    assert status_for(err) == (grpc.StatusCode.UNKNOWN, str(err))


@pytest.mark.parametrize(
    "cls, retryable",
    [
        (InvalidArgumentError, False),
        (FailedPreconditionError, False),
        (UnimplementedError, False),
        (UnauthenticatedError, False),
        (PermissionDeniedError, False),
        (UnavailableError, True),
        (DeadlineExceededError, True),
        (ResourceExhaustedError, True),
        (CancelledError, True),
        (NotFoundError, True),
        (InternalError, True),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_only_a_wrong_request_or_contract_is_not_retryable(cls: type[SpiralServiceError], retryable: bool) -> None:
    """The rule actors and weight subscribers follow: give up only when resending cannot help."""
    assert cls.retryable is retryable and cls("x").retryable is retryable


def test_python_base_classes_let_callers_catch_broadly() -> None:
    assert isinstance(InvalidArgumentError("x"), ValueError)
    assert isinstance(DeadlineExceededError("x"), TimeoutError)
    assert isinstance(UnavailableError("x"), ConnectionError)


def test_protocol_version_mismatch_message() -> None:
    check_protocol_version(PROTOCOL_VERSION, message="M")
    with pytest.raises(FailedPreconditionError, match=rf"M\.protocol_version is 99 but this server speaks spiral\.v1 protocol version {PROTOCOL_VERSION}"):
        check_protocol_version(99, message="M")
    with pytest.raises(FailedPreconditionError, match=r"protocol_version is unset \(0\)"):
        check_protocol_version(0, message="M")


def test_backoff_delays_are_capped_and_jittered() -> None:
    delays = Backoff(1.0, 4.0, 2.0, jitter=0.25).delays()
    got = [next(delays) for _ in range(6)]
    for value, base in zip(got, [1, 2, 4, 4, 4, 4]):
        assert base * 0.75 <= value <= base * 1.25


def test_plaintext_channel_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"refusing a plaintext channel to '10\.1\.2\.3:50051'.*services\.tls"):
        create_channel("10.1.2.3:50051", services_config())
    create_channel("10.1.2.3:50051", services_config(allow_insecure=True)).close()
    create_channel("localhost:50051", services_config()).close()
