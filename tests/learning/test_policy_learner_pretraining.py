"""A policy learner that pretrains first publishes no weights until pretraining is done: actors
wait instead of acting with a policy about to change (their trajectories would be hundreds of
versions stale, and their sends would time out against a queue nobody drains)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from spiral.config import load_config_dict
from spiral.services.policy_learner import PolicyLearner
from test_trainer import tiny_config


def _learner(tmp_path: Path, pretrain_updates: int) -> PolicyLearner:
    raw = tiny_config(tmp_path, data={"num_shapes": 40}, num_envs=4, total_updates=2, pretrain={"updates": pretrain_updates, "batch_size": 4})
    return PolicyLearner(load_config_dict(raw), resume=False)


def test_weights_are_published_only_once_pretraining_is_done(tmp_path: Path) -> None:
    learner = _learner(tmp_path, pretrain_updates=3)
    assert learner.publisher.latest() is None
    thread = threading.Thread(target=learner.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while learner.publisher.latest() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        published = learner.publisher.latest()
        assert published is not None, "no weights after pretraining"
        assert learner.core.state.counters.pretrain_updates == 3  # published after, not during, pretraining
        assert published.version >= 1
        assert learner.version >= published.version  # trajectories of these weights are accepted, not "newer than the learner"
    finally:
        learner.stop.set()
        thread.join(timeout=30)


def test_a_learner_without_pretraining_publishes_at_once(tmp_path: Path) -> None:
    assert _learner(tmp_path, pretrain_updates=0).publisher.latest() is not None
