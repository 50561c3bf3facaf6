"""Every RPC of the four services, fuzzed (issue #14): raw garbage bytes, structured messages with
random fields, tensors of any dtype/shape/bytes, and non-finite numbers, against real servers on
loopback. After each input the server must still answer its health check; every refusal must be a
*clear* status (a client-fault code with details, never INTERNAL or UNKNOWN); and afterwards the
servers must still serve a good request and stop within their bounded grace.

Bounded so that it runs in well under a minute on two cores (hypothesis ``max_examples`` per
strategy, no shrinking deadline). The tally of inputs, codes, crashes, hangs and unclear errors is
printed at the end (``pytest -s``) and written to ``$SPIRAL_FUZZ_REPORT`` when set.
"""

from __future__ import annotations

import collections
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "distributed"))

from dist_helpers import tiny_config  # noqa: E402
from spiral.envs.factory import make_env  # noqa: E402
from spiral.learning.rollout import collect_rollout  # noqa: E402
from spiral.services.discriminator_learner import start_discriminator_learner  # noqa: E402
from spiral.services.policy_learner import start_policy_learner  # noqa: E402
from spiral.services.replay_service import start_replay_server  # noqa: E402
from spiral.services.server import STOP_MARGIN_SECONDS  # noqa: E402
from spiral.services.tensor_codec import ImageBatch, images_to_proto, trajectory_to_proto  # noqa: E402
from spiral.services.trajectory_convert import rollout_to_trajectory  # noqa: E402
from spiral.v1 import PROTOCOL_VERSION, replay_pb2, tensor_pb2, trajectory_pb2  # noqa: E402

pytestmark = pytest.mark.timeout(300)

EXAMPLES = int(os.environ.get("SPIRAL_FUZZ_EXAMPLES", "50"))
CALL_TIMEOUT = 3.0
#: A valid subscription streams until cancelled (or waits for a far-future min_version): this long.
STREAM_TIMEOUT = 0.2
#: Codes that say "your request was wrong / not now" with a reason: a clear answer.
CLEAR = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNIMPLEMENTED,
}
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))


class Kind(NamedTuple):
    unary_request: bool
    unary_response: bool


#: Every method of the four services (the actor serves health only).
METHODS: dict[str, tuple[str, Kind]] = {
    "/spiral.v1.PolicyLearner/SendTrajectories": ("policy", Kind(False, True)),
    "/spiral.v1.PolicyLearner/SubscribeWeights": ("policy", Kind(True, False)),
    "/spiral.v1.PolicyLearner/GetStatus": ("policy", Kind(True, True)),
    "/spiral.v1.DiscriminatorLearner/SubscribeWeights": ("discriminator", Kind(True, False)),
    "/spiral.v1.DiscriminatorLearner/GetStatus": ("discriminator", Kind(True, True)),
    "/spiral.v1.ReplayBuffer/Insert": ("replay", Kind(False, False)),
    "/spiral.v1.ReplayBuffer/Sample": ("replay", Kind(True, False)),
    "/spiral.v1.ReplayBuffer/Info": ("replay", Kind(True, True)),
    "/spiral.v1.ReplayBuffer/Checkpoint": ("replay", Kind(True, True)),
    "/grpc.health.v1.Health/Check": ("replay", Kind(True, True)),
}


class Tally:
    """Counts of what the fuzzing saw. Thread-safe enough for one test thread."""

    def __init__(self) -> None:
        self.inputs: collections.Counter[str] = collections.Counter()
        self.codes: collections.Counter[str] = collections.Counter()
        self.unclear: list[str] = []
        self.crashes: list[str] = []

    def report(self) -> dict[str, Any]:
        return {
            "inputs": sum(self.inputs.values()),
            "inputs_by_strategy": dict(self.inputs),
            "codes": dict(self.codes),
            "unclear_errors": len(self.unclear),
            "unclear_examples": self.unclear[:5],
            "crashes": len(self.crashes),
        }


TALLY = Tally()


class Servers(NamedTuple):
    addresses: dict[str, str]
    channels: dict[str, grpc.Channel]
    stoppers: dict[str, Callable[[], Any]]
    running: dict[str, Any]
    learner: Any
    good_trajectory: bytes


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    out = tmp_path_factory.mktemp("fuzz")
    cfg = tiny_config(out, **{"reward.kind": "discriminator", "learner.queue_size": 1024, "services.shutdown_grace_seconds": 0.5,
                              "replay.checkpoint_every_seconds": None, "replay.min_size_to_sample": 1})
    learner, policy_server = start_policy_learner(cfg, resume=False)
    critic, critic_server = start_discriminator_learner(cfg, resume=False)
    replay = start_replay_server(cfg, grace_seconds=0.5)
    from spiral.services.replay_client import ReplayClient

    with ReplayClient(replay.address, cfg.services) as client:  # items to sample, so valid Samples answer at once
        client.insert(ImageBatch(torch.rand(4, 1, 32, 32), torch.rand(4, 1, 32, 32)))
    env = make_env(cfg.env)
    indices = torch.arange(cfg.num_envs)
    rollout = collect_rollout(env, learner.policy, learner.dataset.train[indices], None, cfg.num_envs, policy_version=0)
    good = trajectory_to_proto(rollout_to_trajectory(rollout, tuple(env.action_spec.names), actor_id="fuzz", target_indices=indices)).SerializeToString()
    addresses = {"policy": policy_server.address, "discriminator": critic_server.address, "replay": replay.address}
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    channels = {k: grpc.insecure_channel(a, options=options) for k, a in addresses.items()}
    running = {"policy": policy_server, "discriminator": critic_server, "replay": replay.server}
    yield Servers(addresses, channels, {"policy": policy_server.stop, "discriminator": critic_server.stop, "replay": replay.stop}, running, learner, good)
    for channel in channels.values():
        channel.close()
    for name, stop in {"policy": policy_server.stop, "discriminator": critic_server.stop, "replay": replay.stop}.items():
        if not running[name].stopped:
            stop()
    report = TALLY.report()
    print("\nFUZZ REPORT " + json.dumps(report, sort_keys=True))
    if os.environ.get("SPIRAL_FUZZ_REPORT"):
        Path(os.environ["SPIRAL_FUZZ_REPORT"]).write_text(json.dumps(report, indent=1, sort_keys=True))


def _call(servers: Servers, method: str, payloads: list[bytes], strategy: str) -> None:
    """Send raw ``payloads`` to ``method``; record the outcome; assert the server still answers."""
    target, kind = METHODS[method]
    channel = servers.channels[target]
    TALLY.inputs[strategy] += 1
    code = grpc.StatusCode.OK
    details = ""
    try:
        if kind.unary_request and kind.unary_response:
            channel.unary_unary(method, request_serializer=None, response_deserializer=None)(payloads[0], timeout=CALL_TIMEOUT)
        elif kind.unary_request:
            timeout = STREAM_TIMEOUT if method.endswith("SubscribeWeights") else CALL_TIMEOUT
            call = channel.unary_stream(method, request_serializer=None, response_deserializer=None)(payloads[0], timeout=timeout)
            for _ in call:  # a good subscription streams until its deadline
                pass
        elif kind.unary_response:
            channel.stream_unary(method, request_serializer=None, response_deserializer=None)(iter(payloads), timeout=CALL_TIMEOUT)
        else:
            call = channel.stream_stream(method, request_serializer=None, response_deserializer=None)(iter(payloads), timeout=CALL_TIMEOUT)
            for _ in call:
                pass
    except grpc.RpcError as err:
        code, details = err.code(), err.details() or ""
    TALLY.codes[code.name] += 1
    if method.startswith("/grpc.health.v1.") and code == grpc.StatusCode.NOT_FOUND:
        details = details or "unknown service (the gRPC health protocol's answer)"
    if code != grpc.StatusCode.OK and (code not in CLEAR or not details):
        TALLY.unclear.append(f"{method}: {code.name}: {details[:200]}")
    # The server is still there and healthy.
    try:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError as err:  # pragma: no cover - the failure this test exists to catch
        TALLY.crashes.append(f"{method}: health {err.code().name}")
        raise AssertionError(f"{target} stopped answering health after a {strategy} input to {method}") from None
    # Drain what a valid trajectory put in the learner's queue: the learning loop is not running here.
    while not servers.learner.queue.empty():
        servers.learner.queue.get_nowait()
    assert code in CLEAR | {grpc.StatusCode.OK} and (code == grpc.StatusCode.OK or details), f"{method}: unclear {code.name}: {details!r}"


# ------------------------------------------------------------------------------ strategies ---

garbage = st.binary(min_size=0, max_size=256)
odd_floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
dtypes = st.sampled_from(list(tensor_pb2.DType.values()) + [99, -1])


@st.composite
def tensors(draw: st.DrawFn) -> tensor_pb2.Tensor:
    """A tensor message that is anything from consistent to nonsense."""
    dtype = draw(dtypes)
    shape = draw(st.lists(st.one_of(st.integers(0, 9), st.integers(-3, 2**40)), max_size=5))
    if draw(st.booleans()) and dtype == tensor_pb2.DTYPE_FLOAT32 and all(0 <= d <= 9 for d in shape):
        n = math.prod(shape)
        values = draw(st.lists(odd_floats, min_size=n, max_size=n))
        data = torch.tensor(values, dtype=torch.float32).numpy().tobytes()
    else:
        data = draw(st.binary(max_size=64))
    return tensor_pb2.Tensor(dtype=max(0, dtype), shape=shape, data=data)


def _mutated_trajectory(good: bytes, draw: st.DrawFn) -> bytes:
    msg = trajectory_pb2.Trajectory.FromString(good)
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(["canvas", "final_canvas", "action_mask", "actions", "behaviour_log_probs", "step", "episode_length",
                                      "target_indices", "noise", "targets", "policy_version", "actor_id", "action_names", "protocol_version",
                                      "nonfinite"]))
        if field == "policy_version":
            msg.policy_version = draw(st.integers(-(2**63), 2**63 - 1))
        elif field == "actor_id":
            msg.actor_id = draw(st.text(max_size=600))
        elif field == "action_names":
            del msg.action_names[:]
            msg.action_names.extend(draw(st.lists(st.text(max_size=8), max_size=5)))
        elif field == "protocol_version":
            msg.protocol_version = draw(st.integers(0, 2**32 - 1))
        elif field == "nonfinite":  # keep every shape, poison the float values
            name = draw(st.sampled_from(["canvas", "final_canvas", "action_mask", "behaviour_log_probs"]))
            tensor = getattr(msg, name)
            if tensor.dtype == tensor_pb2.DTYPE_FLOAT32:
                values = torch.frombuffer(bytearray(tensor.data), dtype=torch.float32).clone()
                if values.numel():
                    values[draw(st.integers(0, values.numel() - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -1e30]))
                tensor.data = values.numpy().tobytes()
        else:
            getattr(msg, field).CopyFrom(draw(tensors()))
    return msg.SerializeToString()


class Sample(bytes):
    """A valid message to mutate; short repr so that hypothesis' failure reports stay readable."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"


@st.composite
def structured(draw: st.DrawFn, method: str, good_trajectory: bytes) -> list[bytes]:
    """Well-formed protobuf of the method's request type, with random (often absurd) field values."""
    version = draw(st.sampled_from([PROTOCOL_VERSION, PROTOCOL_VERSION, 0, 2, 2**32 - 1]))
    name = method.rsplit("/", 1)[1]
    if name == "SendTrajectories":
        return [_mutated_trajectory(good_trajectory, draw) for _ in range(draw(st.integers(1, 2)))]
    if name == "SubscribeWeights":
        return [tensor_pb2.WeightsRequest(protocol_version=version, min_version=draw(st.integers(-(2**63), 2**63 - 1)),
                                          subscriber_id=draw(st.text(max_size=400))).SerializeToString()]
    if name == "GetStatus":
        return [trajectory_pb2.StatusRequest(protocol_version=version).SerializeToString()]
    if name == "Insert":
        images = replay_pb2.Images(canvases=draw(tensors()))
        if draw(st.booleans()):
            images.targets.CopyFrom(draw(tensors()))
        if draw(st.booleans()):  # or a well-shaped batch with poisoned values
            canvases = torch.rand(draw(st.integers(0, 3)), 1, 32, 32)
            if canvases.numel():
                canvases.view(-1)[0] = draw(odd_floats)
            images = images_to_proto(ImageBatch(canvases, torch.rand_like(canvases)), encoding=None)
        return [replay_pb2.InsertRequest(protocol_version=version, table=draw(st.sampled_from(["fakes", "", "x" * 300])), images=images,
                                         timeout_seconds=draw(st.floats(allow_nan=True, allow_infinity=True))).SerializeToString()
                for _ in range(draw(st.integers(1, 2)))]
    if name == "Sample":
        return [replay_pb2.SampleRequest(protocol_version=version, table=draw(st.sampled_from(["fakes", "nope"])),
                                         num_samples=draw(st.integers(0, 2**32 - 1)),
                                         timeout_seconds=draw(st.one_of(st.floats(-1.0, 1.0), st.sampled_from([math.nan, math.inf, -math.inf])))).SerializeToString()]
    if name == "Info":
        return [replay_pb2.InfoRequest(protocol_version=version, tables=draw(st.lists(st.text(max_size=300), max_size=80))).SerializeToString()]
    if name == "Checkpoint":
        return [replay_pb2.CheckpointRequest(protocol_version=version).SerializeToString()]
    return [health_pb2.HealthCheckRequest(service=draw(st.text(max_size=64))).SerializeToString()]


# ------------------------------------------------------------------------------------ tests ---


@pytest.mark.parametrize("method", list(METHODS))
def test_garbage_bytes_get_a_clear_status_and_the_server_keeps_serving(servers: Servers, method: str) -> None:
    @FUZZ_SETTINGS
    @given(payloads=st.lists(garbage, min_size=1, max_size=3))
    def run(payloads: list[bytes]) -> None:
        _call(servers, method, payloads, "garbage")

    run()


@pytest.mark.parametrize("method", list(METHODS))
def test_structured_and_non_finite_messages_get_a_clear_status_and_the_server_keeps_serving(servers: Servers, method: str) -> None:
    @FUZZ_SETTINGS
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        _call(servers, method, data.draw(structured(method, Sample(servers.good_trajectory))), "structured")

    run()


def test_after_the_fuzzing_good_requests_still_work_and_every_server_stops_in_time(servers: Servers) -> None:
    _call(servers, "/spiral.v1.PolicyLearner/SendTrajectories", [servers.good_trajectory], "good")
    assert TALLY.codes["OK"] > 0
    assert not TALLY.unclear and not TALLY.crashes
    for name, stop in servers.stoppers.items():
        started = time.monotonic()
        stopper = threading.Thread(target=stop, daemon=True)
        stopper.start()
        stopper.join(0.5 + STOP_MARGIN_SECONDS + 10)
        assert not stopper.is_alive(), f"{name} did not stop"
        assert servers.running[name].stopped_cleanly, f"{name}: gRPC's stop hung (cut off after the margin)"
        assert time.monotonic() - started < 0.5 + STOP_MARGIN_SECONDS + 5
