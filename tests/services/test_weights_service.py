"""Weights broadcast over a real server: N then N+1, a 10 MB model under a 4 MB message limit,
version checks, reconnects."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
import torch
from prometheus_client import CollectorRegistry

from spiral.config import Role
from spiral.metrics import create_metrics
from spiral.services.client import Backoff
from spiral.errors import CancelledError, DeadlineExceededError, FailedPreconditionError
from spiral.services.server import policy_learner_binding, serve
from spiral.services.tensor_codec import WeightsAssembler
from spiral.services.weights import WeightsPublisher, WeightsSubscriber
from spiral.v1 import PROTOCOL_VERSION, services_pb2_grpc, tensor_pb2, trajectory_pb2
from transport_helpers import services_config

FOUR_MB = 4 * 1024 * 1024


class _Learner(services_pb2_grpc.PolicyLearnerServicer):
    """The smallest policy learner: it only serves weights and its version."""

    def __init__(self, publisher: WeightsPublisher) -> None:
        self.publisher = publisher

    def SubscribeWeights(self, request, context):  # noqa: ANN001, ANN201, N802
        return self.publisher.stream(request, context)

    def GetStatus(self, request, context):  # noqa: ANN001, ANN201, N802
        return trajectory_pb2.LearnerStatus(version=self.publisher.latest_version or 0)


def start(publisher: WeightsPublisher, registry: CollectorRegistry | None = None, metrics=None, **cfg):  # noqa: ANN001, ANN003, ANN201
    return serve(
        [policy_learner_binding(_Learner(publisher))],
        services_config(**cfg),
        role=Role.POLICY_LEARNER,
        grace_seconds=0.2,
        before_stop=[publisher.close],
        registry=registry,
        metrics=metrics,
    )


def small_state(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((4, 4), value), "b": torch.arange(3)}


def test_subscriber_receives_version_n_then_n_plus_1() -> None:
    registry = CollectorRegistry()
    metrics = create_metrics(registry)
    publisher = WeightsPublisher(chunk_bytes=64, metrics=metrics, role=Role.POLICY_LEARNER)
    publisher.publish(3, small_state(3.0))
    with start(publisher, registry, metrics) as running, WeightsSubscriber(running.address, services_config(), subscriber_id="t") as sub:
        first = sub.wait_for_version(0, timeout=10)
        assert first.version == 3 and torch.equal(first.state_dict["w"], torch.full((4, 4), 3.0))
        publisher.publish(4, small_state(4.0))
        second = sub.wait_for_version(4, timeout=10)
        assert second.version == 4 and torch.equal(second.state_dict["w"], torch.full((4, 4), 4.0))
        assert torch.equal(second.state_dict["b"], torch.arange(3))
        assert second.published_unix_seconds <= time.time()
        assert sub.latest() is second
        # Version 3 was streamed in full before the stream could move on to version 4.
        assert registry.get_sample_value("spiral_weights_published_bytes_total", {"spiral_job": "local", "role": "policy-learner"}) >= 64


def test_a_10_mb_state_dict_streams_under_a_4_mb_message_limit_and_round_trips() -> None:
    state = {"a": torch.randn(1024, 1024), "b": torch.randn(1536, 1024), "c": torch.randint(0, 9, (100,))}
    cfg = dict(max_message_bytes=FOUR_MB)
    publisher = WeightsPublisher(chunk_bytes=1024 * 1024)
    publisher.publish(1, state)
    with start(publisher, **cfg) as running:
        with grpc.insecure_channel(running.address, options=[("grpc.max_receive_message_length", FOUR_MB)]) as channel:
            stub = services_pb2_grpc.PolicyLearnerStub(channel)
            call = stub.SubscribeWeights(tensor_pb2.WeightsRequest(protocol_version=PROTOCOL_VERSION), timeout=30)
            assembler, sizes, weights = WeightsAssembler(), [], None
            for chunk in call:
                sizes.append(chunk.ByteSize())
                weights = assembler.add(chunk)
                if weights is not None:
                    call.cancel()
                    break
    assert weights is not None and len(sizes) >= 10 and max(sizes) < FOUR_MB
    assert all(torch.equal(weights.state_dict[k], v) for k, v in state.items())


def test_min_version_waits_for_a_newer_publish() -> None:
    publisher = WeightsPublisher()
    publisher.publish(1, small_state(1.0))
    with start(publisher) as running, grpc.insecure_channel(running.address) as channel:
        stub = services_pb2_grpc.PolicyLearnerStub(channel)
        call = stub.SubscribeWeights(tensor_pb2.WeightsRequest(protocol_version=PROTOCOL_VERSION, min_version=2), timeout=10)
        threading.Timer(0.3, lambda: publisher.publish(2, small_state(2.0))).start()
        start_time = time.monotonic()
        chunk = next(iter(call))
        call.cancel()
        assert chunk.version == 2 and time.monotonic() - start_time >= 0.25


def test_protocol_mismatch_stops_the_subscriber_with_failed_precondition() -> None:
    publisher = WeightsPublisher()
    publisher.publish(1, small_state(1.0))
    with start(publisher) as running, grpc.insecure_channel(running.address) as channel:
        stub = services_pb2_grpc.PolicyLearnerStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.SubscribeWeights(tensor_pb2.WeightsRequest(protocol_version=0), timeout=5))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "WeightsRequest.protocol_version is unset (0)" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            list(stub.SubscribeWeights(tensor_pb2.WeightsRequest(protocol_version=PROTOCOL_VERSION, min_version=-1), timeout=5))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_subscriber_reconnects_after_the_learner_restarts() -> None:
    publisher = WeightsPublisher()
    publisher.publish(1, small_state(1.0))
    running = start(publisher)
    port = running.port
    reconnects: list[str] = []
    sub = WeightsSubscriber(running.address, services_config(), backoff=Backoff(0.05, 0.2), on_reconnect=lambda e: reconnects.append(str(e))).start()
    try:
        assert sub.wait_for_version(1, timeout=10).version == 1
        running.stop()
        restarted_publisher = WeightsPublisher()
        restarted_publisher.publish(2, small_state(2.0))
        with start(restarted_publisher, grpc_port=port):
            assert sub.wait_for_version(2, timeout=10).version == 2
        assert reconnects, "the subscriber must have noticed the restart"
        with pytest.raises(DeadlineExceededError, match=r"no weights version ≥ 3 from 127\.0\.0\.1:\d+ within 0\.1 s \(holding 2\)"):
            sub.wait_for_version(3, timeout=0.1)
    finally:
        sub.stop()
    with pytest.raises(CancelledError, match="stopped"):
        sub.wait_for_version(3, timeout=1)


def test_publisher_versions_must_increase_and_closed_publishers_refuse_subscribers() -> None:
    publisher = WeightsPublisher()
    publisher.publish(2, small_state(2.0))
    with pytest.raises(ValueError, match="weights version must increase: got 2, current is 2"):
        publisher.publish(2, small_state(2.0))
    assert publisher.latest().version == 2
    publisher.close()
    with pytest.raises(FailedPreconditionError, match="shut down"):
        next(publisher.stream(tensor_pb2.WeightsRequest(protocol_version=PROTOCOL_VERSION), context=None))  # type: ignore[arg-type]


def test_subscriber_surfaces_permanent_errors() -> None:
    class _Old(_Learner):
        def SubscribeWeights(self, request, context):  # noqa: ANN001, ANN201, N802
            raise FailedPreconditionError("server speaks protocol 2")

    publisher = WeightsPublisher()
    with serve([policy_learner_binding(_Old(publisher))], services_config(), role=Role.POLICY_LEARNER, grace_seconds=0) as running:
        with WeightsSubscriber(running.address, services_config(), backoff=Backoff(0.01, 0.01)) as sub:
            with pytest.raises(FailedPreconditionError, match="server speaks protocol 2"):
                sub.wait_for_version(0, timeout=10)
