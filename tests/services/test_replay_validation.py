"""The replay buffer stores only this job's images and bounds every request (issue #14, findings 2,
5 and 6): shapes, targets and values checked on insert, counts and timeouts capped, bad items of an
old checkpoint dropped on restore, and periodic checkpoints so that a SIGKILL loses at most one
interval."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import torch
import yaml

from spiral.errors import InvalidArgumentError
from spiral.services.replay_client import DEFAULT_TABLE, ReplayClient
from spiral.services.replay_service import checkpoint_path_for, start_replay_server
from spiral.services.tensor_codec import CanvasEncoding, ImageBatch
from spiral.v1 import PROTOCOL_VERSION, replay_pb2, replay_pb2_grpc
from transport_helpers import train_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def conditional_32(tmp_path: Path):  # noqa: ANN201
    cfg = train_config(tmp_path, canvas_size=32, conditional=True)
    replay = start_replay_server(cfg, grace_seconds=0)
    client = ReplayClient(replay.address, cfg.services)
    yield cfg, replay, client
    client.close()
    replay.stop()


@pytest.mark.parametrize(
    ("batch", "encoding", "message"),
    [
        (ImageBatch(torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)), CanvasEncoding.UINT8, "InsertRequest.images.canvases are 1×16×16 but this job's canvases are 1×32×32 (C×H×W: env.color, env.canvas_size)"),
        (ImageBatch(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)), CanvasEncoding.UINT8, "InsertRequest.images.canvases are 3×32×32 but this job's canvases are 1×32×32"),
        (ImageBatch(torch.rand(2, 1, 32, 32)), CanvasEncoding.UINT8, "InsertRequest.images.targets is missing: this job trains mode 'conditional'"),
        (ImageBatch(torch.full((2, 1, 32, 32), math.nan), torch.rand(2, 1, 32, 32)), CanvasEncoding.FLOAT32, "InsertRequest.images.canvases holds NaN or infinite values"),
        (ImageBatch(torch.full((2, 1, 32, 32), 1e30), torch.rand(2, 1, 32, 32)), CanvasEncoding.FLOAT32, "InsertRequest.images.canvases holds 1e+30, outside [0, 1]"),
        (ImageBatch(torch.rand(2, 1, 32, 32), torch.full((2, 1, 32, 32), -math.inf)), CanvasEncoding.FLOAT32, "InsertRequest.images.targets holds NaN or infinite values"),
    ],
    ids=["16x16-into-32x32", "rgb-into-grayscale", "no-targets-in-conditional", "nan-fakes", "1e30-fakes", "inf-targets"],
)
def test_inserts_of_another_shape_or_bad_values_are_refused_and_never_stored(conditional_32, batch, encoding, message) -> None:  # noqa: ANN001
    _, _, client = conditional_32
    with pytest.raises(InvalidArgumentError) as info:
        client.insert(batch, encoding=encoding)
    assert message in str(info.value)
    assert client.info()[0].size == 0
    # The stream that failed does not poison the server: a good insert still lands.
    assert len(client.insert(ImageBatch(torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)))) == 2


def test_targets_in_an_unconditional_job_are_refused(tmp_path: Path) -> None:
    cfg = train_config(tmp_path)
    replay = start_replay_server(cfg, grace_seconds=0)
    try:
        with ReplayClient(replay.address, cfg.services) as client, pytest.raises(InvalidArgumentError, match="targets must be unset: this job trains mode 'unconditional'"):
            client.insert(ImageBatch(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)))
    finally:
        replay.stop()


@pytest.mark.timeout(60)
def test_a_huge_sample_request_is_refused_at_once(conditional_32) -> None:  # noqa: ANN001
    """Before: num_samples = 2^32 − 1 with items available looped under the table lock (~30 MB/s)."""
    _, replay, client = conditional_32
    client.insert(ImageBatch(torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)))
    with grpc.insecure_channel(replay.address) as channel:
        stub = replay_pb2_grpc.ReplayBufferStub(channel)
        start = time.monotonic()
        for num, timeout in [(2**32 - 1, 1.0), (0, 1.0), (1, math.nan), (1, math.inf), (1, -1.0)]:
            with pytest.raises(grpc.RpcError) as info:
                list(stub.Sample(replay_pb2.SampleRequest(protocol_version=PROTOCOL_VERSION, table=DEFAULT_TABLE, num_samples=num, timeout_seconds=timeout), timeout=5))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (num, timeout)
        assert time.monotonic() - start < 5
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Sample(replay_pb2.SampleRequest(protocol_version=PROTOCOL_VERSION, table=DEFAULT_TABLE, num_samples=2**32 - 1), timeout=5))
        assert info.value.details() == "SampleRequest.num_samples must lie in [1, 4096], got 4294967295"
        with pytest.raises(grpc.RpcError) as info:
            stub.Info(replay_pb2.InfoRequest(protocol_version=PROTOCOL_VERSION, tables=["x" * 10_000]), timeout=5)
        assert info.value.details() == "InfoRequest.table is 10000 bytes long; table names have at most 256"
    assert client.info()[0].num_samples == 0


def test_a_checkpoint_with_items_of_another_shape_restores_only_the_good_ones(tmp_path: Path) -> None:
    """Before: bad items saved into replay.ckpt crashed the critic learner on every restart."""
    small = train_config(tmp_path, canvas_size=16)
    replay = start_replay_server(small, grace_seconds=0)
    with ReplayClient(replay.address, small.services) as client:
        client.insert(ImageBatch(torch.rand(3, 1, 16, 16)))
    replay.stop()  # checkpoints 3 items of 1×16×16

    big = train_config(tmp_path, canvas_size=32)
    assert checkpoint_path_for(big) == checkpoint_path_for(small)
    restarted = start_replay_server(big, grace_seconds=0)
    try:
        with ReplayClient(restarted.address, big.services) as client:
            info = client.info()[0]
            assert info.size == 0 and info.num_deletes == 3 and info.num_inserts == 3
            client.insert(ImageBatch(torch.rand(2, 1, 32, 32)))
            assert client.sample(4).images.canvases.shape == (4, 1, 32, 32)
    finally:
        restarted.stop()


def test_the_replay_server_checkpoints_every_interval(tmp_path: Path) -> None:
    cfg = train_config(tmp_path, replay={"checkpoint_every_seconds": 0.2})
    replay = start_replay_server(cfg, grace_seconds=0)
    try:
        with ReplayClient(replay.address, cfg.services) as client:
            client.insert(ImageBatch(torch.rand(4, 1, 16, 16)))
            path = checkpoint_path_for(cfg)
            deadline = time.monotonic() + 10
            while not path.exists():
                assert time.monotonic() < deadline, "no periodic checkpoint within 10 s"
                time.sleep(0.05)
    finally:
        replay.stop(0)


@pytest.mark.timeout(120)
def test_a_sigkilled_replay_server_loses_at_most_one_checkpoint_interval(tmp_path: Path) -> None:
    """Before: replay.checkpoint_every_seconds was never used; a SIGKILL emptied the buffer."""
    cfg = train_config(tmp_path / "run", replay={"checkpoint_every_seconds": 0.5, "sampler": "fifo"})
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "services"), os.environ.get("PYTHONPATH", "")])}

    def start(ready: Path) -> tuple[subprocess.Popen, str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spiral", "serve", "replay", "--config", str(config), "--grpc-port", "0", "--metrics-port", "0", "--ready-file", str(ready)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "spiral serve replay did not come up"
            time.sleep(0.05)
        return proc, json.loads(ready.read_text())["address"]

    proc, address = start(tmp_path / "ready-1.json")
    try:
        with ReplayClient(address, cfg.services) as client:
            client.insert(ImageBatch(torch.rand(7, 1, 16, 16)))
        time.sleep(0.5 * 3)  # a few intervals: at least one periodic checkpoint holds the 7 items
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc, address = start(tmp_path / "ready-2.json")
    try:
        with ReplayClient(address, cfg.services) as client:
            info = client.info()[0]
            assert (info.size, info.num_inserts) == (7, 7)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
