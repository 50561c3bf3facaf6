"""serve(): ports, health, metrics endpoint, message limits, error mapping and bad input — on a
real server on a free loopback port."""

from __future__ import annotations

import re
import urllib.request

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spiral.config import ConfigError, Role
from spiral.errors import DeadlineExceededError
from spiral.services.replay_client import DEFAULT_TABLE
from spiral.services.replay_service import start_replay_server
from spiral.services.server import discriminator_learner_binding, serve
from spiral.services.tls import is_loopback
from spiral.services.tensor_codec import ImageBatch, images_to_proto, tensor_to_proto
from spiral.v1 import PROTOCOL_VERSION, replay_pb2, replay_pb2_grpc, services_pb2_grpc, trajectory_pb2
from transport_helpers import services_config, train_config

MAX_MESSAGE = 256 * 1024


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    cfg = train_config(tmp_path_factory.mktemp("replay"), services={"max_message_bytes": MAX_MESSAGE}, canvas_size=64)
    server = start_replay_server(cfg, grace_seconds=0.5)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(replay):  # noqa: ANN001, ANN201
    # A raw channel with a bigger send limit than the server's, so oversized messages reach it.
    channel = grpc.insecure_channel(replay.address, options=[("grpc.max_send_message_length", 8 * MAX_MESSAGE)])
    yield replay_pb2_grpc.ReplayBufferStub(channel)
    channel.close()


def good_info(stub) -> replay_pb2.InfoResponse:  # noqa: ANN001
    return stub.Info(replay_pb2.InfoRequest(protocol_version=PROTOCOL_VERSION), timeout=5)


def insert(stub, images: replay_pb2.Images, version: int = PROTOCOL_VERSION, table: str = DEFAULT_TABLE) -> list:  # noqa: ANN001
    request = replay_pb2.InsertRequest(protocol_version=version, table=table, images=images, timeout_seconds=1)
    return list(stub.Insert(iter([request]), timeout=5))


def test_port_zero_binds_a_free_port_and_health_is_serving(replay) -> None:  # noqa: ANN001
    assert replay.server.port > 0 and replay.server.metrics_port > 0
    with grpc.insecure_channel(replay.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "spiral.v1.ReplayBuffer"):
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_metrics_endpoint_counts_requests_by_method_and_code(replay, stub) -> None:  # noqa: ANN001
    good_info(stub)
    with pytest.raises(grpc.RpcError):
        stub.Info(replay_pb2.InfoRequest(protocol_version=99), timeout=5)
    text = urllib.request.urlopen(f"http://127.0.0.1:{replay.server.metrics_port}/metrics", timeout=5).read().decode()
    ok = re.search(r'spiral_grpc_requests_total\{code="OK",method="spiral\.v1\.ReplayBuffer/Info",role="replay",spiral_job="local"\} (\d+)', text)
    failed = re.search(r'spiral_grpc_requests_total\{code="FAILED_PRECONDITION",method="spiral\.v1\.ReplayBuffer/Info",role="replay",spiral_job="local"\} (\d+)', text)
    assert ok and float(ok.group(1)) >= 1, text
    assert failed and float(failed.group(1)) >= 1
    assert 'spiral_grpc_request_seconds_count{method="spiral.v1.ReplayBuffer/Info",role="replay",spiral_job="local"}' in text
    assert 'spiral_replay_size_items{spiral_job="local",table="fakes"}' in text


def test_version_mismatch_is_failed_precondition_and_server_keeps_serving(stub) -> None:  # noqa: ANN001
    images = images_to_proto(ImageBatch(torch.rand(2, 1, 64, 64)))
    with pytest.raises(grpc.RpcError) as info:
        insert(stub, images, version=PROTOCOL_VERSION + 1)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"InsertRequest.protocol_version is {PROTOCOL_VERSION + 1} but this server speaks spiral.v1 protocol version {PROTOCOL_VERSION}" in info.value.details()
    assert len(insert(stub, images)[0].keys) == 2


def test_malformed_tensor_bytes_are_invalid_argument_and_server_keeps_serving(stub) -> None:  # noqa: ANN001
    images = images_to_proto(ImageBatch(torch.rand(2, 1, 64, 64)))
    images.canvases.data = images.canvases.data[:-3]
    with pytest.raises(grpc.RpcError) as info:
        insert(stub, images)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "InsertRequest.images.canvases.data has 8189 bytes but dtype DTYPE_UINT8 with shape [2, 1, 64, 64] needs 8192 bytes" in info.value.details()
    wrong_rank = replay_pb2.Images(canvases=tensor_to_proto(torch.zeros(8, 8, dtype=torch.uint8)))
    with pytest.raises(grpc.RpcError, match=r"expected \[\*, \*, \*, \*\]"):
        insert(stub, wrong_rank)
    assert good_info(stub).tables[0].name == DEFAULT_TABLE


def test_oversized_message_is_resource_exhausted_and_server_keeps_serving(stub) -> None:  # noqa: ANN001
    big = images_to_proto(ImageBatch(torch.rand(80, 1, 64, 64)), encoding=None)  # 1.3 MB of float32 > 256 KiB
    with pytest.raises(grpc.RpcError) as info:
        insert(stub, big)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in info.value.details()
    assert len(insert(stub, images_to_proto(ImageBatch(torch.rand(1, 1, 64, 64))))[0].keys) == 1


def test_unknown_table_and_bad_sample_requests_name_the_valid_options(stub) -> None:  # noqa: ANN001
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Sample(replay_pb2.SampleRequest(protocol_version=PROTOCOL_VERSION, table="nope", num_samples=1), timeout=5))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "SampleRequest.table 'nope' does not exist; tables: ['fakes']" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Sample(replay_pb2.SampleRequest(protocol_version=PROTOCOL_VERSION, table=DEFAULT_TABLE, num_samples=0), timeout=5))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "SampleRequest.num_samples must lie in [1, 4096], got 0" in info.value.details()


class _FaultyDiscriminator(services_pb2_grpc.DiscriminatorLearnerServicer):
    def GetStatus(self, request, context):  # noqa: ANN001, ANN201, N802
        if request.protocol_version == 1:
            raise RuntimeError("boom")
        raise DeadlineExceededError("waited too long")


def test_interceptor_maps_unexpected_and_domain_errors_to_status_codes() -> None:
    with serve([discriminator_learner_binding(_FaultyDiscriminator())], services_config(), role=Role.DISCRIMINATOR_LEARNER, grace_seconds=0) as running:
        with grpc.insecure_channel(running.address) as channel:
            stub = services_pb2_grpc.DiscriminatorLearnerStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.GetStatus(trajectory_pb2.StatusRequest(protocol_version=1), timeout=5)
            assert info.value.code() == grpc.StatusCode.INTERNAL and info.value.details() == "internal error: RuntimeError: boom"
            with pytest.raises(grpc.RpcError) as info:
                stub.GetStatus(trajectory_pb2.StatusRequest(protocol_version=2), timeout=5)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and info.value.details() == "waited too long"
            with pytest.raises(grpc.RpcError) as info:
                list(stub.SubscribeWeights(trajectory_pb2.StatusRequest(), timeout=5))
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert running.registry.get_sample_value(
            "spiral_grpc_requests_total", {"spiral_job": "local", "role": "discriminator-learner", "method": "spiral.v1.DiscriminatorLearner/GetStatus", "code": "INTERNAL"}
        ) == 1


def test_plaintext_on_a_public_address_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError, match=r"services\.bind_address '0\.0\.0\.0' is not a loopback address and services\.tls\.enabled is false"):
        serve([], services_config(bind_address="0.0.0.0"), role=Role.REPLAY)
    with serve([], services_config(bind_address="0.0.0.0", allow_insecure=True), role=Role.REPLAY, grace_seconds=0) as running:
        assert running.address.startswith("127.0.0.1:")


def test_two_servers_get_different_ports_and_a_taken_port_is_an_error() -> None:
    with serve([], services_config(), role=Role.REPLAY, grace_seconds=0) as a, serve([], services_config(), role=Role.REPLAY, grace_seconds=0) as b:
        assert a.port != b.port and a.metrics_port != b.metrics_port
        with pytest.raises(OSError, match=rf"cannot bind gRPC port 127\.0\.0\.1:{a.port}"):
            serve([], services_config(grpc_port=a.port), role=Role.REPLAY)


def test_stop_runs_callbacks_in_order_even_if_one_fails() -> None:
    seen: list[str] = []

    def failing() -> None:
        seen.append("failing")
        raise RuntimeError("callback bug")

    running = serve([], services_config(), role=Role.REPLAY, grace_seconds=0, before_stop=[lambda: seen.append("before")], on_stop=[failing, lambda: seen.append("after")])
    running.stop()
    running.stop()  # idempotent
    assert seen == ["before", "failing", "after"] and running.stopped and running.wait(0)


@pytest.mark.parametrize("host, want", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("10.0.0.1", False), ("example.com", False)])
def test_is_loopback(host: str, want: bool) -> None:
    assert is_loopback(host) is want
