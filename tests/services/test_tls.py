"""mTLS between services with a throw-away CA: trusted clients get through, others do not."""

from __future__ import annotations

import grpc
import pytest
import torch

from spiral.config import ConfigError
from spiral.errors import UnavailableError
from spiral.services.replay_client import ReplayClient
from spiral.services.replay_service import start_replay_server
from spiral.services.tensor_codec import ImageBatch
from spiral.v1 import PROTOCOL_VERSION, replay_pb2, replay_pb2_grpc
from transport_helpers import services_config, train_config


def tls(cert, key, ca) -> dict:  # noqa: ANN001
    return {"tls": {"enabled": True, "cert_file": str(cert), "key_file": str(key), "ca_file": str(ca)}}


@pytest.fixture(scope="module")
def mtls_replay(pki, tmp_path_factory):  # noqa: ANN001, ANN201
    # Bound on all interfaces: with TLS on, no allow_insecure is needed.
    cfg = train_config(tmp_path_factory.mktemp("tls"), services={"bind_address": "0.0.0.0", **tls(pki.server_cert, pki.server_key, pki.ca)})
    server = start_replay_server(cfg, grace_seconds=0.2)
    yield server
    server.stop()


def test_mutual_tls_client_can_insert_and_sample(pki, mtls_replay) -> None:  # noqa: ANN001
    cfg = services_config(**tls(pki.client_cert, pki.client_key, pki.ca))
    with ReplayClient(f"localhost:{mtls_replay.server.port}", cfg) as client:
        client.wait_ready(10)
        client.insert(ImageBatch(torch.rand(3, 1, 16, 16)))
        assert len(client.sample(2).keys) == 2


def test_plaintext_client_is_refused(mtls_replay) -> None:  # noqa: ANN001
    with grpc.insecure_channel(f"127.0.0.1:{mtls_replay.server.port}") as channel:
        with pytest.raises(grpc.RpcError) as info:
            replay_pb2_grpc.ReplayBufferStub(channel).Info(replay_pb2.InfoRequest(protocol_version=PROTOCOL_VERSION), timeout=3)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_without_a_certificate_is_refused(pki, mtls_replay) -> None:  # noqa: ANN001
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(f"localhost:{mtls_replay.server.port}", creds) as channel:
        with pytest.raises(grpc.RpcError) as info:
            replay_pb2_grpc.ReplayBufferStub(channel).Info(replay_pb2.InfoRequest(protocol_version=PROTOCOL_VERSION), timeout=3)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_certificate_from_another_ca_is_refused(pki, mtls_replay) -> None:  # noqa: ANN001
    cfg = services_config(**tls(pki.other_client_cert, pki.other_client_key, pki.ca))
    with ReplayClient(f"localhost:{mtls_replay.server.port}", cfg) as client:
        with pytest.raises(UnavailableError):
            client.info()


def test_unreadable_certificate_names_the_field(pki, tmp_path) -> None:  # noqa: ANN001
    cfg = train_config(tmp_path, services=tls(tmp_path / "missing.pem", pki.server_key, pki.ca))
    with pytest.raises(ConfigError, match=r"services\.tls\.cert_file: cannot read .*missing\.pem"):
        start_replay_server(cfg)
