"""Malformed, oversized and version-mismatched trajectories against a real policy learner server
(loopback gRPC): each gets its status and a clear message, and the server keeps serving others."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import torch

from spiral.envs.factory import make_env
from spiral.learning.rollout import collect_rollout
from spiral.services.policy_learner import start_policy_learner
from spiral.services.tensor_codec import trajectory_to_proto
from spiral.services.trajectory_convert import rollout_to_trajectory
from spiral.v1 import PROTOCOL_VERSION, services_pb2_grpc, trajectory_pb2
from dist_helpers import tiny_config

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    cfg = tiny_config(tmp_path_factory.mktemp("bad-input"), **{"services.max_message_bytes": LIMIT})
    learner, server = start_policy_learner(cfg, resume=False)
    # A client allowed to send more than the server accepts, to reach the server's own limit.
    channel = grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 8 * LIMIT)])
    yield cfg, learner, services_pb2_grpc.PolicyLearnerStub(channel)
    channel.close()
    server.stop(0.5)


def good_message(cfg, learner, version: int = 0) -> trajectory_pb2.Trajectory:  # noqa: ANN001
    env = make_env(cfg.env)
    indices = torch.arange(cfg.num_envs)
    rollout = collect_rollout(env, learner.policy, learner.dataset.train[indices], None, cfg.num_envs, policy_version=version)
    return trajectory_to_proto(rollout_to_trajectory(rollout, tuple(env.action_spec.names), actor_id="test", target_indices=indices))


def send(stub, *messages) -> trajectory_pb2.SendSummary:  # noqa: ANN001
    return stub.SendTrajectories(iter(messages), timeout=10)


def test_bad_trajectories_get_their_status_and_the_server_keeps_serving(served) -> None:  # noqa: ANN001
    cfg, learner, stub = served
    good = good_message(cfg, learner)

    malformed = trajectory_pb2.Trajectory()
    malformed.CopyFrom(good)
    malformed.actions.data = malformed.actions.data[:-3]
    with pytest.raises(grpc.RpcError) as err:
        send(stub, malformed)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Trajectory.actions.data has" in err.value.details() and "needs" in err.value.details()

    oversized = trajectory_pb2.Trajectory()
    oversized.CopyFrom(good)
    oversized.canvas.data = oversized.canvas.data * (2 * LIMIT // len(oversized.canvas.data) + 1)
    with pytest.raises(grpc.RpcError) as err:
        send(stub, oversized)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in err.value.details()

    wrong_protocol = trajectory_pb2.Trajectory()
    wrong_protocol.CopyFrom(good)
    wrong_protocol.protocol_version = PROTOCOL_VERSION + 1
    with pytest.raises(grpc.RpcError) as err:
        send(stub, wrong_protocol)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"Trajectory.protocol_version is {PROTOCOL_VERSION + 1} but this server speaks spiral.v1 protocol version {PROTOCOL_VERSION}" in err.value.details()

    wrong_names = trajectory_pb2.Trajectory()
    wrong_names.CopyFrom(good)
    wrong_names.action_names[0] = "brightness"
    with pytest.raises(grpc.RpcError) as err:
        send(stub, wrong_names)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "this learner's action spec is" in err.value.details()

    future = good_message(cfg, learner, version=learner.version + 5)
    with pytest.raises(grpc.RpcError) as err:
        send(stub, future)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "is newer than this learner's version" in err.value.details()

    # Another client (a fresh stream) is still served: the trajectory lands in the batching queue.
    summary = send(stub, good)
    assert (summary.num_trajectories, summary.num_frames) == (1, good.actions.shape[0] * good.actions.shape[1])
    assert learner.queue.qsize() == 1
    assert learner.metrics.trajectory_bytes.labels("local")._value.get() == good.ByteSize()


def test_status_refuses_an_unset_protocol_version(served) -> None:  # noqa: ANN001
    _, learner, stub = served
    with pytest.raises(grpc.RpcError) as err:
        stub.GetStatus(trajectory_pb2.StatusRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "unset (0)" in err.value.details()
    status = stub.GetStatus(trajectory_pb2.StatusRequest(protocol_version=PROTOCOL_VERSION), timeout=5)
    assert status.version == learner.version and not status.done


def test_a_nan_canvas_is_refused_counted_and_never_queued(served) -> None:  # noqa: ANN001
    """Issue #14, finding 1: a float32 NaN canvas passed every check and poisoned the next update."""
    from spiral.services.tensor_codec import CanvasEncoding, trajectory_from_proto

    cfg, learner, stub = served
    traj = trajectory_from_proto(good_message(cfg, learner))
    canvas = traj.canvas.clone()
    canvas[0, 0, 0, 0, 0] = float("nan")
    poisoned = trajectory_to_proto(traj._replace(canvas=canvas), encoding=CanvasEncoding.FLOAT32)
    queued = learner.queue.qsize()
    counter = learner.metrics.learner_rejected_trajectories.labels("local", "value")
    before = counter._value.get()
    with pytest.raises(grpc.RpcError) as err:
        send(stub, poisoned)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "Trajectory.canvas holds NaN or infinite values"
    assert counter._value.get() == before + 1 and learner.queue.qsize() == queued


def test_an_actor_whose_trajectories_exceed_the_message_limit_fails_saying_why(tmp_path) -> None:  # noqa: ANN001
    """Issue #14: services.max_message_bytes below a trajectory made actors retry RESOURCE_EXHAUSTED
    forever, silently. The config refuses limits below the canvases alone; the actor catches the rest."""
    from spiral.errors import ResourceExhaustedError
    from spiral.services.actor import Actor

    probe = tiny_config(tmp_path)
    cfg = tiny_config(tmp_path, **{"services.max_message_bytes": probe.min_trajectory_bytes})
    actor = Actor(cfg, actor_id="a")
    try:
        actor.play_once()
    finally:
        actor._channel.close()
    assert isinstance(actor.fatal, ResourceExhaustedError)
    assert f"exceeds services.max_message_bytes ({probe.min_trajectory_bytes}): raise services.max_message_bytes or lower num_envs" in str(actor.fatal)
