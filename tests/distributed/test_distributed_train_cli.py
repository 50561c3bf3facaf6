"""``spiral train`` (multi-process by default) end to end: a tiny budget exits 0 with a checkpoint
and a PNG and no orphans; Ctrl-C stops every process cleanly, checkpointed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spiral.launch.progress import LearnerPoller
from spiral.learning.checkpoint import load_checkpoint
from spiral.config import ServicesConfig
from dist_helpers import processes_mentioning, tiny_cli_args, wait_for

pytestmark = pytest.mark.timeout(90)


def spiral_train(out: Path, **overrides) -> subprocess.Popen:  # noqa: ANN003
    return subprocess.Popen(
        [sys.executable, "-m", "spiral", "train", *tiny_cli_args(out, **overrides)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # like a terminal: SIGINT goes to the launcher we address
    )


def test_spiral_train_runs_the_services_to_the_budget_and_exits_0(tmp_path: Path) -> None:
    proc = spiral_train(tmp_path)
    output, _ = proc.communicate(timeout=80)
    assert proc.returncode == 0, output
    assert "trained 10 updates, 160 frames" in output
    payload = load_checkpoint(tmp_path / "checkpoints")
    assert payload["counters"]["updates"] == 10 and payload["version"] >= 10
    assert list((tmp_path / "images").glob("reconstructions-*.png"))
    # Real separate processes: one log per service, actors exited after the learner's done.
    logs = {p.stem for p in (tmp_path / "logs").glob("*.log")}
    assert logs == {"policy-learner", "actor-0", "actor-1"}
    assert "budget is spent" in (tmp_path / "logs" / "actor-0.log").read_text()
    assert processes_mentioning(str(tmp_path / "launch" / "config.yaml")) == []


def test_a_run_that_pretrains_first_then_trains_with_its_actors(tmp_path: Path) -> None:
    """The presets pretrain before RL: the actors wait for the first weights (published after
    pretraining) and their trajectories, of that version, are accepted."""
    proc = spiral_train(tmp_path, **{"pretrain.updates": 5, "pretrain.batch_size": 8, "total_updates": 4})
    output, _ = proc.communicate(timeout=80)
    assert proc.returncode == 0, output
    payload = load_checkpoint(tmp_path / "checkpoints")
    assert payload["counters"]["pretrain_updates"] == 5 and payload["counters"]["updates"] == 4
    actor_log = (tmp_path / "logs" / "actor-0.log").read_text()
    assert "newer than this learner" not in actor_log and "broke" not in actor_log, actor_log[-2000:]


def test_ctrl_c_stops_every_process_with_checkpoints_written(tmp_path: Path) -> None:
    proc = spiral_train(tmp_path, total_updates=100_000, checkpoint_every_updates=100_000)
    try:
        ready = tmp_path / "launch" / "ready" / "policy-learner.json"
        wait_for(ready.exists, 40, "the policy learner to serve")
        port = json.loads(ready.read_text())["grpc_port"]
        poller = LearnerPoller(f"127.0.0.1:{port}", None, ServicesConfig())
        wait_for(lambda: (s := poller.poll()).ok and s.updates >= 3, 40, "3 updates")
        poller.close()
        assert not (tmp_path / "checkpoints" / "latest.pt").exists()  # only the stop will write one
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output
    assert f"checkpoint: {tmp_path / 'checkpoints'}" in output and "resume with: spiral train --set " in output
    payload = load_checkpoint(tmp_path / "checkpoints")
    assert payload["counters"]["updates"] >= 3
    assert "received SIGTERM" in (tmp_path / "logs" / "policy-learner.log").read_text()
    time.sleep(0.2)
    assert processes_mentioning(str(tmp_path / "launch" / "config.yaml")) == []


def test_children_die_with_a_killed_launcher(tmp_path: Path) -> None:
    proc = spiral_train(tmp_path, total_updates=100_000)
    marker = str(tmp_path / "launch" / "config.yaml")
    try:
        wait_for(lambda: len(processes_mentioning(marker)) == 3, 40, "the learner and both actors")
        proc.send_signal(signal.SIGKILL)  # no cleanup code runs: PR_SET_PDEATHSIG must act
        proc.communicate(timeout=10)
        wait_for(lambda: processes_mentioning(marker) == [], 30, "the children to exit")
    finally:
        for pid in processes_mentioning(marker):
            os.kill(pid, signal.SIGKILL)
    # SIGTERM from the kernel: the learner still checkpointed on its way out.
    assert load_checkpoint(tmp_path / "checkpoints")["role"] == "policy-learner"
