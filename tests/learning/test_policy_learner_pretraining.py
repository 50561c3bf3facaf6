"""A policy learner that pretrains first publishes no weights until pretraining is done: actors
wait instead of acting with a policy about to change (their trajectories would be hundreds of
versions stale, and their sends would time out against a queue nobody drains)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from spiral.config import load_config_dict
from spiral.learning.rollout import collect_rollout
from spiral.services.policy_learner import PolicyLearner
from test_trainer import tiny_config


def _learner(tmp_path: Path, pretrain_updates: int, **pretrain: object) -> PolicyLearner:
    pretrain = {"updates": pretrain_updates, "batch_size": 4, **pretrain}
    raw = tiny_config(tmp_path, data={"num_shapes": 40}, num_envs=4, total_updates=2, pretrain=pretrain)
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


def _first_rl_step(learner: PolicyLearner) -> float:
    """Pretrain, then one RL update: the largest parameter change divided by the learning rate."""
    core = learner.core
    core.pretrain()
    policy = core.state.policy
    assert policy is not None
    before = [p.detach().clone() for p in policy.parameters()]
    targets = core.dataset.train[:4]
    core.update(collect_rollout(core.env, policy, targets, None, 4), None)
    lr = core.hyperparameters.learner.learning_rate
    return max(float((p.detach() - b).abs().max()) for p, b in zip(policy.parameters(), before, strict=True)) / lr


def test_rl_starts_with_fresh_optimizer_moments(tmp_path: Path) -> None:
    """Pretraining's gradients are far smaller than RL's; its Adam moments carried into RL make the
    first RL steps many times the learning rate (the default preset's greedy policy then flipped to
    never lifting the brush). Fresh moments bound Adam's first step by the learning rate."""
    assert _first_rl_step(_learner(tmp_path / "fresh", 30, fresh_optimizer_for_rl=True)) <= 1.01
    assert _first_rl_step(_learner(tmp_path / "carried", 30, fresh_optimizer_for_rl=False)) > 1.5
