"""The replay service on a real server: data round trips, batching, back-pressure, Info,
checkpoints, and a SIGTERM restart of `python -m spiral serve replay`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from spiral.replay import load_tables
from spiral.errors import DeadlineExceededError, NotFoundError
from spiral.services.replay_client import DEFAULT_TABLE, ReplayClient
from spiral.services.replay_service import checkpoint_path_for, start_replay_server
from spiral.services.tensor_codec import CanvasEncoding, ImageBatch
from transport_helpers import train_config

REPO = Path(__file__).resolve().parents[2]


def quantised(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round() / 255


def test_insert_and_sample_round_trip_with_targets(tmp_path: Path) -> None:
    replay = start_replay_server(train_config(tmp_path, replay={"sampler": "fifo"}, conditional=True), grace_seconds=0)
    try:
        with ReplayClient(replay.address, train_config(tmp_path).services) as client:
            batch = ImageBatch(torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16))
            assert client.insert(batch) == [0, 1, 2, 3]
            got = client.sample(3)
            assert got.keys == [0, 0, 0] and got.times_sampled == [1, 2, 3]
            assert torch.allclose(got.images.canvases[0], quantised(batch.canvases[0]), atol=1e-6)
            assert got.images.targets is not None and torch.allclose(got.images.targets[2], quantised(batch.targets[0]), atol=1e-6)
            exact = ImageBatch(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))
            key = client.insert(exact, encoding=CanvasEncoding.FLOAT32)[0]
            assert key == 4
            with pytest.raises(NotFoundError, match=r"Info: NOT_FOUND: InfoRequest\.table 'nope' does not exist; tables: \['fakes'\]"):
                client.info(["nope"])
    finally:
        replay.stop()


def test_large_samples_are_split_under_the_message_limit(tmp_path: Path) -> None:
    cfg = train_config(tmp_path, services={"max_message_bytes": 64 * 1024}, canvas_size=64)
    replay = start_replay_server(cfg, grace_seconds=0)
    try:
        with ReplayClient(replay.address, cfg.services) as client:
            for _ in range(14):  # 3 float32 images of 16 KiB per insert stay below the 64 KiB limit
                client.insert(ImageBatch(torch.rand(3, 1, 64, 64)), encoding=CanvasEncoding.FLOAT32)
            got = client.sample(40)  # 640 KiB in total
            assert got.images.canvases.shape == (40, 1, 64, 64) and len(got.keys) == 40
    finally:
        replay.stop()


def test_insert_back_pressure_times_out_then_resumes_after_samples(tmp_path: Path) -> None:
    cfg = train_config(tmp_path, replay={"samples_per_insert": 1.0, "min_size_to_sample": 1, "error_buffer": 2.0, "sampler": "fifo"})
    replay = start_replay_server(cfg, grace_seconds=0)
    try:
        with ReplayClient(replay.address, cfg.services) as client:
            client.insert(ImageBatch(torch.rand(3, 1, 16, 16)), timeout=1)
            start = time.monotonic()
            with pytest.raises(DeadlineExceededError, match=r"Insert: DEADLINE_EXCEEDED: insert on table 'fakes' was rate limited for 0\.3 s.*inserts 3, samples 0"):
                client.insert(ImageBatch(torch.rand(1, 1, 16, 16)), timeout=0.3)
            assert time.monotonic() - start >= 0.3
            rl = client.info()[0].rate_limiter
            assert rl.num_blocked_inserts == 1 and rl.insert_blocked_seconds >= 0.29

            # A producer streaming 6 more items can only proceed as a consumer samples.
            inserted: list[int] = []
            producer = threading.Thread(
                target=lambda: inserted.extend(k for r in client.insert_many((ImageBatch(torch.rand(1, 1, 16, 16)) for _ in range(6)), timeout=10, max_in_flight=2) for k in r.keys)
            )
            producer.start()
            time.sleep(0.3)
            assert len(inserted) == 0, "the limiter must hold the stream back"
            assert len(client.sample(8, timeout=10).keys) == 8
            producer.join(10)
            assert len(inserted) == 6
            info = client.info()[0]
            assert (info.num_inserts, info.num_samples) == (9, 8)
    finally:
        replay.stop()


def test_explicit_checkpoint_then_restart_restores_contents(tmp_path: Path) -> None:
    cfg = train_config(tmp_path, replay={"sampler": "fifo"})
    replay = start_replay_server(cfg, grace_seconds=0)
    with ReplayClient(replay.address, cfg.services) as client:
        client.insert(ImageBatch(torch.rand(5, 1, 16, 16)))
        first = client.sample(2)
        result = client.checkpoint()
    assert result.path == checkpoint_path_for(cfg) and result.num_items == 5 and result.num_bytes > 0
    assert load_tables(result.path)[DEFAULT_TABLE]["keys"].tolist() == [0, 1, 2, 3, 4]
    replay.stop()

    restarted = start_replay_server(cfg, grace_seconds=0)
    try:
        with ReplayClient(restarted.address, cfg.services) as client:
            info = client.info()[0]
            assert (info.size, info.num_inserts, info.num_samples) == (5, 5, 2)
            again = client.sample(1)
            assert again.keys == [0] and again.times_sampled == [3]
            assert torch.equal(again.images.canvases[0], first.images.canvases[0])
    finally:
        restarted.stop()


def _serve_replay(config: Path, ready: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "services")}
    return subprocess.Popen(
        [sys.executable, "-m", "spiral", "serve", "replay", "--config", str(config), "--grpc-port", "0", "--metrics-port", "0", "--ready-file", str(ready)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen, ready: Path, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            return json.loads(ready.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"spiral serve replay exited with {proc.returncode}:\n{proc.stdout.read()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"spiral serve replay not ready after {timeout} s:\n{proc.stdout.read()}")


def test_sigterm_checkpoints_and_a_restarted_server_has_the_same_contents(tmp_path: Path) -> None:
    cfg = train_config(tmp_path / "run", replay={"sampler": "fifo"})
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    ready = tmp_path / "ready.json"

    proc = _serve_replay(config, ready)
    try:
        ports = _wait_ready(proc, ready)
        with ReplayClient(ports["address"], cfg.services) as client:
            images = ImageBatch(torch.rand(7, 1, 16, 16))
            client.insert(images)
            before = client.sample(2)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "received SIGTERM" in output and "replay checkpoint: 7 items" in output
    assert checkpoint_path_for(cfg).exists()

    ready.unlink()
    proc = _serve_replay(config, ready)
    try:
        ports = _wait_ready(proc, ready)
        with ReplayClient(ports["address"], cfg.services) as client:
            info = client.info()[0]
            assert (info.size, info.num_inserts, info.num_samples) == (7, 7, 2)
            after = client.sample(1)
            assert after.keys == [0] and after.times_sampled == [3]
            assert torch.equal(after.images.canvases[0], before.images.canvases[0])
            assert torch.allclose(after.images.canvases[0], quantised(images.canvases[0]), atol=1e-6)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_stop_wakes_a_rate_limited_sample_instead_of_waiting_out_the_grace(tmp_path: Path) -> None:
    from spiral.errors import FailedPreconditionError, SpiralServiceError

    cfg = train_config(tmp_path, replay={"min_size_to_sample": 5})
    replay = start_replay_server(cfg, grace_seconds=10)
    errors: list[BaseException] = []

    def sample() -> None:
        with ReplayClient(replay.address, cfg.services) as client:
            try:
                client.sample(1, timeout=20)
            except SpiralServiceError as err:
                errors.append(err)

    waiter = threading.Thread(target=sample)
    waiter.start()
    time.sleep(0.3)
    start = time.monotonic()
    replay.stop()
    waiter.join(10)
    assert time.monotonic() - start < 5, "closing the tables must end blocked calls before the 10 s grace"
    assert len(errors) == 1 and isinstance(errors[0], FailedPreconditionError) and "closed" in str(errors[0])
