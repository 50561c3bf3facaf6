"""The one error mapping, the client-side translation, and retries with backoff."""

from __future__ import annotations

import grpc
import pytest

from spiral.config import ConfigError
from spiral.services.client import Backoff, create_channel, with_backoff
from spiral.services.errors import (
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    SpiralServiceError,
    UnavailableError,
    check_protocol_version,
    error_from_status,
    status_for,
)
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


@pytest.mark.parametrize("cls", [InvalidArgumentError, FailedPreconditionError, ResourceExhaustedError, DeadlineExceededError, UnavailableError, CancelledError, InternalError])
def test_error_from_status_round_trips_the_class(cls: type[SpiralServiceError]) -> None:
    err = error_from_status(cls.code, "why", method="spiral.v1.X/Y", timeout=2.5)
    assert type(err) is cls
    assert str(err) == f"spiral.v1.X/Y: {cls.code.name}: why (deadline 2.5 s)"


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


def test_with_backoff_retries_retryable_errors_with_growing_delays() -> None:
    calls, sleeps = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise UnavailableError("down")
        return "up"

    retries = []
    result = with_backoff(flaky, what="dial", backoff=Backoff(0.1, 1.0, 2.0, jitter=0.0), sleep=sleeps.append, on_retry=lambda n, e, d: retries.append(n))
    assert result == "up" and len(calls) == 4
    assert sleeps == [0.1, 0.2, 0.4] and retries == [1, 2, 3]


def test_with_backoff_does_not_retry_other_errors() -> None:
    def bad() -> None:
        raise InvalidArgumentError("no")

    sleeps: list[float] = []
    with pytest.raises(InvalidArgumentError):
        with_backoff(bad, what="x", sleep=sleeps.append)
    assert sleeps == []


def test_with_backoff_gives_up_at_the_deadline_or_attempt_limit() -> None:
    def down() -> None:
        raise UnavailableError("down")

    with pytest.raises(DeadlineExceededError, match=r"dial: gave up after 1 attempts .*deadline 0\.05 s.*last error: down"):
        with_backoff(down, what="dial", backoff=Backoff(1.0, 1.0, jitter=0.0), deadline_seconds=0.05, sleep=lambda s: None)
    with pytest.raises(UnavailableError):
        with_backoff(down, what="dial", backoff=Backoff(0.0, 0.0, max_attempts=3), sleep=lambda s: None)


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
