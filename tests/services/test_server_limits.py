"""Bounded servers (issue #14, findings 3 and 4): undecodable bytes are INVALID_ARGUMENT and never
wedge a shutdown; open streams never starve health checks and status calls; a stop is bounded even
if gRPC's own never finishes; a process with stuck threads still exits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spiral.config import Role
from spiral.services.policy_learner import start_policy_learner
from spiral.services.replay_service import checkpoint_path_for, start_replay_server
from spiral.services.server import STOP_MARGIN_SECONDS, RunningServer, serve, thread_budget
from spiral.v1 import PROTOCOL_VERSION, services_pb2_grpc, tensor_pb2, trajectory_pb2
from transport_helpers import services_config, train_config

REPO = Path(__file__).resolve().parents[2]
GARBAGE = b"\xff\xff\xff\xff"


def _raw_stream(channel: grpc.Channel, method: str):  # noqa: ANN202
    return channel.stream_stream(method, request_serializer=None, response_deserializer=None)


def test_undecodable_requests_are_invalid_argument_naming_the_message(tmp_path: Path) -> None:
    replay = start_replay_server(train_config(tmp_path), grace_seconds=0.5)
    try:
        with grpc.insecure_channel(replay.address) as channel:
            with pytest.raises(grpc.RpcError) as info:
                list(_raw_stream(channel, "/spiral.v1.ReplayBuffer/Insert")(iter([GARBAGE]), timeout=5))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details().startswith("spiral.v1.ReplayBuffer/Insert: the 4 request bytes are not a valid spiral.v1.InsertRequest")
            unary = channel.unary_unary("/spiral.v1.ReplayBuffer/Info", request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.RpcError) as info:
                unary(GARBAGE, timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid spiral.v1.InfoRequest" in info.value.details()
    finally:
        replay.stop()


def test_four_garbage_client_streams_no_longer_wedge_the_stop(tmp_path: Path) -> None:
    """Before: after four `ff ff ff ff` Insert streams, server.stop(grace).wait() never returned."""
    cfg = train_config(tmp_path)
    replay = start_replay_server(cfg, grace_seconds=0.5)
    with grpc.insecure_channel(replay.address) as channel:
        for _ in range(4):
            with pytest.raises(grpc.RpcError):
                list(_raw_stream(channel, "/spiral.v1.ReplayBuffer/Insert")(iter([GARBAGE]), timeout=5))
    stopper = threading.Thread(target=replay.stop, daemon=True)
    start = time.monotonic()
    stopper.start()
    stopper.join(0.5 + STOP_MARGIN_SECONDS + 5)
    assert not stopper.is_alive(), "the stop hung"
    assert replay.server.stopped_cleanly and time.monotonic() - start < 0.5 + STOP_MARGIN_SECONDS + 1
    assert checkpoint_path_for(cfg).exists(), "the on-stop checkpoint ran"


def test_sigterm_after_garbage_streams_checkpoints_and_exits(tmp_path: Path) -> None:
    """The same through `spiral serve replay` and SIGTERM: the final checkpoint is written and the process ends."""
    cfg = train_config(tmp_path / "run")
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    ready = tmp_path / "ready.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "services"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "spiral", "serve", "replay", "--config", str(config), "--grpc-port", "0", "--metrics-port", "0", "--ready-file", str(ready)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "spiral serve replay did not come up"
            time.sleep(0.05)
        address = json.loads(ready.read_text())["address"]
        with grpc.insecure_channel(address) as channel:
            for _ in range(4):
                with pytest.raises(grpc.RpcError):
                    list(_raw_stream(channel, "/spiral.v1.ReplayBuffer/Insert")(iter([GARBAGE]), timeout=5))
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=cfg.services.shutdown_grace_seconds + 20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "replay checkpoint: 0 items" in output and checkpoint_path_for(cfg).exists()


class _NeverStops:
    """A stand-in grpc.Server whose stop never completes (grpcio lost track of a stream)."""

    def stop(self, grace):  # noqa: ANN001, ANN201
        return threading.Event()


def test_a_stop_that_grpc_never_finishes_is_cut_off_and_the_checkpoint_still_runs() -> None:
    from grpc_health.v1 import health

    ran: list[str] = []
    running = RunningServer(
        _NeverStops(), health.HealthServicer(), "127.0.0.1", 1, None, None, None, 0.2, [lambda: ran.append("checkpoint")]  # type: ignore[arg-type]
    )
    start = time.monotonic()
    running.stop()
    assert time.monotonic() - start < 0.2 + STOP_MARGIN_SECONDS + 1
    assert ran == ["checkpoint"] and not running.stopped_cleanly and running.stopped


def test_a_process_with_a_stuck_thread_still_exits_with_its_code() -> None:
    script = textwrap.dedent(
        """
        import threading, time
        from spiral.services.runtime import exit_even_if_stuck
        threading.Thread(target=time.sleep, args=(600,), name="grpc-stuck").start()
        exit_even_if_stuck(143, join_seconds=0.3)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "services"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 143
    assert "threads still running after the work ended (grpc-stuck): exiting with code 143 anyway" in result.stderr


def test_the_thread_pool_holds_every_admitted_stream_plus_a_reserve() -> None:
    assert thread_budget(max_streams_per_method=10, min_workers=4) == 3 * 10 + 8
    assert thread_budget(max_streams_per_method=2, min_workers=64) == 64


@pytest.fixture()
def learner(tmp_path: Path):  # noqa: ANN201
    sys.path.insert(0, str(REPO / "tests" / "distributed"))
    from dist_helpers import tiny_config

    cfg = tiny_config(tmp_path, **{"services.max_workers": 4, "num_actors": 2})
    learner, server = start_policy_learner(cfg, resume=False)
    yield learner, server
    server.stop(0.2)


def test_many_open_weight_streams_leave_health_and_status_answerable(learner) -> None:  # noqa: ANN001
    """Before: each SubscribeWeights stream held one of max_workers threads; with 4 workers, 4
    subscribers froze the server, health checks included."""
    _, server = learner
    limit = server.max_streams_per_method
    assert limit == 2 + 8 and server.workers >= 3 * limit + 8
    channel = grpc.insecure_channel(server.address)
    stub = services_pb2_grpc.PolicyLearnerStub(channel)
    request = tensor_pb2.WeightsRequest(protocol_version=PROTOCOL_VERSION, min_version=0)
    calls = [stub.SubscribeWeights(request, timeout=30) for _ in range(limit + 5)]
    try:
        first_chunks = []
        refused = []
        for call in calls:
            try:
                first_chunks.append(next(call))
            except grpc.RpcError as err:
                refused.append(err)
        assert len(first_chunks) == limit, "every admitted stream gets its weights"
        assert len(refused) == 5 and all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused)
        assert "spiral.v1.PolicyLearner/SubscribeWeights: 10 concurrent streams are already open" in refused[0].details()
        start = time.monotonic()
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        status = stub.GetStatus(trajectory_pb2.StatusRequest(protocol_version=PROTOCOL_VERSION), timeout=2)
        assert health.status == health_pb2.HealthCheckResponse.SERVING and status.version >= 0
        assert time.monotonic() - start < 2
    finally:
        for call in calls:
            call.cancel()
    # A cancelled stream frees its slot: a new subscriber is admitted again.
    time.sleep(0.3)
    assert next(stub.SubscribeWeights(request, timeout=10)).num_chunks >= 1
    channel.close()


def test_a_tls_server_serves_plaintext_health_on_loopback_only(pki) -> None:  # noqa: ANN001
    """Issue #14, finding 9: an mTLS pod could not pass a plaintext gRPC probe. The probe command
    the operator renders (python -m spiral.services.health_probe) passes against the loopback port."""
    cfg = services_config(tls={"enabled": True, "cert_file": str(pki.server_cert), "key_file": str(pki.server_key), "ca_file": str(pki.ca)})
    with serve([], cfg, role=Role.REPLAY, grace_seconds=0) as running:
        assert running.health_port and running.health_port != running.port
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "services"), os.environ.get("PYTHONPATH", "")])}
        probe = [sys.executable, "-m", "spiral.services.health_probe", f"127.0.0.1:{running.health_port}"]
        ok = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
        # The TLS port itself refuses a plaintext probe, which is why the loopback port exists.
        refused = subprocess.run([*probe[:-1], f"127.0.0.1:{running.port}", "--timeout", "2"], env=env, capture_output=True, text=True, timeout=30)
        assert refused.returncode == 1 and "not serving" in refused.stderr
    after = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
    assert after.returncode == 1
