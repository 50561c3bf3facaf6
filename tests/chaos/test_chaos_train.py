"""Chaos (issue #14): ``spiral train`` with the discriminator reward while a random service is
SIGKILLed every few seconds. The run must still finish its budget (exit 0); the published policy
version never goes back; a resumed learner never starts below an earlier resume; the replay
buffer's items survive each kill (within one checkpoint interval); and every checkpoint left on
disk verifies.

Small and bounded (< 2 minutes on two cores): one actor, 3-step episodes on 32×32 canvases, a kill
every ~3 s, at most two kills per service (the launcher restarts each up to 3 times in 5 minutes).
A tally of kills and what survived is printed at the end (``pytest -s``) and written to
``$SPIRAL_CHAOS_REPORT`` when set.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "distributed"))

from dist_helpers import processes_mentioning, tiny_cli_args  # noqa: E402
from spiral.config import ServicesConfig  # noqa: E402
from spiral.learning.checkpoint import numbered_checkpoints, read_checkpoint  # noqa: E402
from spiral.learning.run_log import read_log  # noqa: E402
from spiral.services.replay_client import DEFAULT_TABLE, ReplayClient  # noqa: E402
from spiral.v1 import PROTOCOL_VERSION, services_pb2_grpc, trajectory_pb2  # noqa: E402

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

UPDATES = 200
REPLAY_INTERVAL = 1.0
KILL_EVERY = (2.5, 4.0)
MAX_KILLS_PER_SERVICE = 2
SERVICES = ("replay", "discriminator-learner", "policy-learner", "actor-0")


def _ready(out: Path, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((out / "launch" / "ready" / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Chaos:
    """Kills services and watches what must survive. Runs in a thread beside ``spiral train``."""

    def __init__(self, out: Path, seed: int = 14) -> None:
        self.out = out
        self.rng = random.Random(seed)
        self.kills: list[dict[str, Any]] = []
        self.versions: list[int] = []
        self.replay_checks: list[dict[str, int]] = []
        self.stop = threading.Event()
        self._inserts: list[tuple[float, int]] = []  # (time, replay num_inserts) observed

    def _replay_inserts(self) -> int | None:
        ready = _ready(self.out, "replay")
        if ready is None:
            return None
        try:
            with ReplayClient(ready["address"], ServicesConfig()) as client:
                return next(t for t in client.info() if t.name == DEFAULT_TABLE).num_inserts
        except Exception:  # noqa: BLE001 - restarting
            return None

    def _learner_version(self) -> int | None:
        ready = _ready(self.out, "policy-learner")
        if ready is None:
            return None
        try:
            with grpc.insecure_channel(ready["address"]) as channel:
                status = services_pb2_grpc.PolicyLearnerStub(channel).GetStatus(trajectory_pb2.StatusRequest(protocol_version=PROTOCOL_VERSION), timeout=1)
        except grpc.RpcError:
            return None
        return status.version

    def observe(self) -> None:
        version = self._learner_version()
        if version is not None:
            self.versions.append(version)
        inserts = self._replay_inserts()
        if inserts is not None:
            self._inserts.append((time.monotonic(), inserts))

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stop.is_set():
            self.observe()
            self.stop.wait(0.25)

    def run(self) -> None:
        counts = dict.fromkeys(SERVICES, 0)
        self._wait(8.0)  # let every service come up and the replay buffer fill a little
        first = True
        while not self.stop.is_set():
            choices = [s for s in SERVICES if counts[s] < MAX_KILLS_PER_SERVICE and _ready(self.out, s)]
            if not choices:
                self._wait(1.0)
                continue
            # The replay buffer first, once it holds items that a periodic checkpoint has seen, so
            # that at least one kill checks what survives; then at random.
            name = "replay" if first else self.rng.choice(choices)
            if first and not self._checkpointed_inserts():
                self._wait(0.5)
                continue
            first = False
            ready = _ready(self.out, name)
            if ready is None or not _alive(ready["pid"]):
                self._wait(0.5)
                continue
            before = self._checkpointed_inserts() if name == "replay" else None
            os.kill(ready["pid"], signal.SIGKILL)
            counts[name] += 1
            self.kills.append({"service": name, "pid": ready["pid"], "at": round(time.monotonic(), 1)})
            if name == "replay" and before is not None:
                self._after_replay_restart(ready["pid"], before)
            self._wait(self.rng.uniform(*KILL_EVERY))

    def _checkpointed_inserts(self) -> int | None:
        """Inserts observed at least two checkpoint intervals (plus a margin) ago: a periodic
        checkpoint has written them since, so they must survive a SIGKILL now."""
        old = [n for t, n in self._inserts if t < time.monotonic() - 2 * REPLAY_INTERVAL - 0.5 and n > 0]
        return old[-1] if old else None

    def _after_replay_restart(self, old_pid: int, before: int) -> None:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not self.stop.is_set():
            ready = _ready(self.out, "replay")
            if ready is not None and ready["pid"] != old_pid:
                inserts = self._replay_inserts()
                if inserts is not None:
                    self.replay_checks.append({"inserts_before": before, "inserts_after_restart": inserts})
                    return
            self.stop.wait(0.2)


def test_spiral_train_survives_random_sigkills(tmp_path: Path) -> None:
    out = tmp_path / "run"
    overrides = {
        "reward.kind": "discriminator",
        "num_actors": 1,
        "total_updates": UPDATES,
        "checkpoint_every_updates": 2,
        "log_every_updates": 1,
        "replay.min_size_to_sample": 8,
        "replay.checkpoint_every_seconds": REPLAY_INTERVAL,
        "discriminator.batch_size": 8,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "spiral", "train", *tiny_cli_args(out, **overrides)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    chaos = Chaos(out)
    killer = threading.Thread(target=chaos.run, daemon=True)
    killer.start()
    try:
        output, _ = proc.communicate(timeout=150)
    finally:
        chaos.stop.set()
        killer.join(10)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    report = {
        "kills": len(chaos.kills),
        "kills_by_service": {s: sum(k["service"] == s for k in chaos.kills) for s in SERVICES},
        "exit_code": proc.returncode,
        "versions_seen": len(chaos.versions),
        "replay_checks": chaos.replay_checks,
    }
    print("\nCHAOS REPORT " + json.dumps(report, sort_keys=True))
    if os.environ.get("SPIRAL_CHAOS_REPORT"):
        Path(os.environ["SPIRAL_CHAOS_REPORT"]).write_text(json.dumps(report, indent=1, sort_keys=True))

    # The run completes its budget despite the kills.
    assert proc.returncode == 0, output[-4000:]
    assert len(chaos.kills) >= 3, f"too few kills to mean anything: {chaos.kills}"
    assert f"trained {UPDATES} updates" in output, output[-2000:]
    # Versions never go back (across learner restarts too).
    assert chaos.versions == sorted(chaos.versions), chaos.versions
    # Each resume starts at or above the previous one, and none below the last one by more than a checkpoint interval.
    records = read_log(out / "metrics.jsonl")
    starts = [r["updates"] for r in records if r.get("event") == "start"]
    assert starts == sorted(starts), starts
    logged = [r["updates"] for r in records if "losses/total" in r]
    assert all(b >= a - overrides["checkpoint_every_updates"] for a, b in zip(logged, logged[1:])), logged
    versions = [r["version"] for r in records if "version" in r]
    assert versions == sorted(versions)
    # Replay items survived every kill (within one checkpoint interval).
    assert chaos.replay_checks, "no replay kill was checked"
    for check in chaos.replay_checks:
        assert check["inserts_after_restart"] >= check["inserts_before"], chaos.replay_checks
    # No checkpoint lost or damaged: every one left verifies, the newest holds the whole budget.
    for directory in (out / "checkpoints", out / "checkpoints" / "discriminator"):
        files = numbered_checkpoints(directory)
        assert files, f"no checkpoints in {directory}"
        for path in files:
            assert read_checkpoint(path).verified
    assert read_checkpoint(out / "checkpoints").payload["counters"]["updates"] == UPDATES
    assert processes_mentioning(str(out / "launch" / "config.yaml")) == []
