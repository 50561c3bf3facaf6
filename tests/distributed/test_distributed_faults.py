"""Faults with real processes on loopback (``spiral serve`` children of a :class:`LocalCluster`):
a killed actor, a killed policy learner, a restarted replay buffer."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from spiral.config import Role
from spiral.launch.local import LocalCluster
from spiral.launch.progress import LearnerPoller
from spiral.learning.checkpoint import load_checkpoint
from spiral.services.replay_client import DEFAULT_TABLE, ReplayClient
from spiral.services.weights import WeightsSubscriber
from dist_helpers import metric, processes_mentioning, tiny_config, wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture()
def cluster_factory():  # noqa: ANN201
    clusters: list[LocalCluster] = []

    def make(cfg) -> LocalCluster:  # noqa: ANN001
        cluster = LocalCluster(cfg, resume=True)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop(grace=10)
        assert processes_mentioning(str(cluster.config_path)) == []


def poller_for(cluster: LocalCluster) -> LearnerPoller:
    pl = cluster.plan.by_role(Role.POLICY_LEARNER)
    return LearnerPoller(pl.address, pl.metrics_port, cluster.cfg.services)


def updates_at_least(poller: LearnerPoller, n: int):  # noqa: ANN201
    return lambda: (s := poller.poll()).ok and s.updates >= n and s


def test_a_killed_actor_does_not_stop_training_and_a_restarted_one_rejoins(tmp_path: Path, cluster_factory) -> None:  # noqa: ANN001
    cluster = cluster_factory(tiny_config(tmp_path, total_updates=100_000))
    cluster.start()
    poller = poller_for(cluster)
    wait_for(updates_at_least(poller, 3), 40, "the first updates")

    cluster.signal("actor-0", signal.SIGKILL)
    wait_for(lambda: not cluster.children["actor-0"].alive, 10, "actor-0 to die")
    after_kill = poller.poll().updates
    wait_for(updates_at_least(poller, after_kill + 5), 20, "updates from the surviving actor")

    cluster.spawn("actor-0")
    actor = cluster.children["actor-0"].spec
    wait_for(lambda: cluster.ready_file("actor-0").exists(), 30, "the restarted actor to serve")
    wait_for(lambda: (metric(actor.metrics_port, "spiral_actor_frames_total") or 0) > 0, 20, "the restarted actor's frames")
    assert metric(actor.metrics_port, "spiral_actor_weight_age_seconds") is not None
    assert cluster.children["actor-1"].alive
    poller.close()


def test_a_killed_policy_learner_resumes_and_versions_never_go_back(tmp_path: Path, cluster_factory) -> None:  # noqa: ANN001
    cfg = tiny_config(tmp_path, total_updates=100_000, checkpoint_every_updates=3, num_actors=1)
    cluster = cluster_factory(cfg)
    cluster.start()
    poller = poller_for(cluster)
    pl = cluster.plan.by_role(Role.POLICY_LEARNER)
    seen: list[int] = []
    lock = threading.Lock()

    def record(weights) -> None:  # noqa: ANN001
        with lock:
            seen.append(weights.version)

    subscriber = WeightsSubscriber(pl.address, cfg.services, on_update=record).start()
    try:
        wait_for(lambda: (tmp_path / "checkpoints" / "latest.pt").exists() and updates_at_least(poller, 7)(), 40, "a checkpoint and 7 updates")
        cluster.signal(pl.name, signal.SIGKILL)
        wait_for(lambda: not cluster.children[pl.name].alive, 10, "the learner to die")
        killed_at = max(seen)
        checkpointed = load_checkpoint(tmp_path / "checkpoints")

        cluster.spawn(pl.name)
        resumed = wait_for(lambda: (s := poller.poll()).ok and s, 40, "the restarted learner")
        # Resumed from the checkpoint (counters restored), under a version above any published.
        assert resumed.updates >= checkpointed["counters"]["updates"] > 0
        assert resumed.version > killed_at
        assert metric(pl.metrics_port, "spiral_learner_restarts_total", role="policy-learner") == 1.0
        # The actor reconnected: training continues.
        wait_for(updates_at_least(poller, resumed.updates + 3), 30, "updates after the restart")
        wait_for(lambda: max(seen) > killed_at, 20, "the subscriber to see the new learner's versions")
    finally:
        subscriber.stop()
        poller.close()
    assert seen == sorted(seen) and len(set(seen)) == len(seen), f"versions went backwards or repeated: {seen}"
    reconnects = metric(cluster.children["actor-0"].spec.metrics_port, "spiral_actor_reconnects_total", peer="policy-learner")
    assert reconnects is not None and reconnects >= 1


def test_a_restarted_replay_buffer_comes_back_with_its_contents_and_actors_refill_it(tmp_path: Path, cluster_factory) -> None:  # noqa: ANN001
    cfg = tiny_config(
        tmp_path,
        total_updates=100_000,
        num_actors=1,
        **{"reward.kind": "discriminator", "replay.min_size_to_sample": 8, "discriminator.batch_size": 8},
    )
    cluster = cluster_factory(cfg)
    cluster.start()
    replay = cluster.plan.by_role(Role.REPLAY)
    client = ReplayClient(replay.address, cfg.services)
    try:
        info = wait_for(lambda: (i := _info(client)) and i.size >= 24 and i, 40, "24 items in the replay buffer")
        cluster.stop([replay.name], grace=10)
        assert cluster.children[replay.name].exit_code == 0
        cluster.spawn(replay.name)
        cluster.wait_ready([replay.name], timeout=30)
        restored = wait_for(lambda: _info(client), 10, "the restarted replay buffer")
        assert restored.size >= info.size and restored.num_inserts >= info.num_inserts
        # The actor's inserts reconnect, and the discriminator learner keeps sampling.
        wait_for(lambda: (i := _info(client)) and i.num_inserts >= restored.num_inserts + 16, 30, "new inserts after the restart")
        dl = cluster.plan.by_role(Role.DISCRIMINATOR_LEARNER)
        before = metric(dl.metrics_port, "spiral_discriminator_updates_total") or 0
        wait_for(lambda: (metric(dl.metrics_port, "spiral_discriminator_updates_total") or 0) > before, 30, "critic steps after the restart")
    finally:
        client.close()


def _info(client: ReplayClient):  # noqa: ANN202
    try:
        return next(t for t in client.info() if t.name == DEFAULT_TABLE)
    except Exception:  # noqa: BLE001 - unreachable while restarting
        return None
