"""One training state, one checkpoint format: a checkpoint written by the single-process trainer
resumes in the policy learner service and vice versa, with identical weights, optimiser state,
counters and RNG states; and the one cadence rule both drivers follow."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from spiral.config import load_config_dict
from spiral.learning.cadence import Cadence, Due
from spiral.learning.checkpoint import load_checkpoint
from spiral.learning.rollout import collect_rollout
from spiral.learning.state import Counters, RngStates, TrainingState
from spiral.learning.trainer import SingleProcessTrainer
from spiral.services.policy_learner import PolicyLearner
from test_trainer import tiny_config

#: Small and fast: 200 procedural images, 3-step episodes on 32×32 canvases.
FAST = {"data": {"num_shapes": 200}, "num_envs": 8, "total_updates": 2}


def config(tmp_path: Path, **extra: Any):  # noqa: ANN201
    return load_config_dict(tiny_config(tmp_path, **{**FAST, **extra}))


def assert_same_tensors(a: Any, b: Any, where: str = "") -> None:
    """Deep equality of (nested) state dicts, tensors compared bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where} keys differ: {sorted(a)} vs {sorted(b)}"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where} lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), f"{where} differs"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_training(written: dict[str, Any], rewritten: dict[str, Any]) -> None:
    for key in ("policy", "policy_optimizer", "counters", "rng"):
        assert_same_tensors(written[key], rewritten[key], key)


def test_a_single_process_checkpoint_resumes_in_the_policy_learner(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    SingleProcessTrainer(cfg, resume=False).run(show_progress=False)
    written = load_checkpoint(tmp_path / "run" / "checkpoints")
    assert written["role"] == "single-process" and written["counters"]["updates"] == 2

    torch.manual_seed(999)  # a new process: every RNG must come from the checkpoint
    learner = PolicyLearner(cfg, resume=True)
    assert learner.counters == Counters(**written["counters"])
    assert learner.version == written["version"]
    assert_same_tensors(written["policy"], learner.policy.state_dict(), "policy")
    rewritten = load_checkpoint(learner.checkpoint())
    assert rewritten["role"] == "policy-learner" and rewritten["restarts"] == written["restarts"] + 1
    assert_same_training(written, rewritten)


def test_a_policy_learner_checkpoint_resumes_in_the_single_process_trainer(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    learner = PolicyLearner(cfg, resume=False)
    targets = learner.dataset.train[: cfg.num_envs]
    for _ in range(2):  # real updates, so the optimiser has moments and steps to carry over
        learner.train_step(collect_rollout(learner.env, learner.policy, targets, None, cfg.num_envs, policy_version=learner.version))
    written = load_checkpoint(learner.checkpoint())
    assert written["counters"]["updates"] == 2 and written["policy_optimizer"]["state"]

    random.seed(5)
    np.random.seed(5)
    trainer = SingleProcessTrainer(cfg.model_copy(update={"total_updates": 3}), resume=True)
    assert trainer.counters == Counters(**written["counters"])
    assert trainer.state.version == written["version"]
    rewritten = load_checkpoint(trainer.checkpoint())
    assert_same_training(written, rewritten)
    # And it trains on from there: one more update, counted on top of the learner's two.
    trainer.run(show_progress=False)
    assert trainer.counters.updates == 3


def test_restore_applies_every_rng_state(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    trainer = SingleProcessTrainer(cfg, resume=False)
    saved = RngStates.capture(trainer.state.generator)
    path = trainer.checkpoint()
    expected = (torch.rand(3, generator=trainer.state.generator), torch.rand(3), np.random.rand(3), random.random())

    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    trainer.state.generator.manual_seed(1)
    trainer.state.restore(path)
    assert_same_tensors(saved._asdict(), RngStates.capture(trainer.state.generator)._asdict(), "rng")
    again = (torch.rand(3, generator=trainer.state.generator), torch.rand(3), np.random.rand(3), random.random())
    assert_same_tensors(expected, again, "draws")


def test_a_critic_checkpoint_cannot_resume_a_policy_trainer(tmp_path: Path) -> None:
    cfg = config(tmp_path, mode="unconditional", reward={"kind": "discriminator", "temporal_credit": False, "scale": 1.0})
    trainer = SingleProcessTrainer(cfg, resume=False)
    critic_only = TrainingState.build(cfg, trainer.env, role="discriminator-learner", policy=False, discriminator=True, seed=0)
    path = critic_only.save(tmp_path / "critic")
    with pytest.raises(ValueError, match=r"written by discriminator-learner\) holds no policy"):
        trainer.state.restore(path)


def test_an_old_checkpoint_without_counters_is_refused_with_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"config": {}, "updates": 3, "generator": torch.Generator().get_state()}, path)
    cfg = config(tmp_path)
    trainer = SingleProcessTrainer(cfg, resume=False)
    with pytest.raises(ValueError, match=r"old\.pt \(written by an unknown writer\) has no 'counters' entry.*move it away"):
        trainer.state.restore(path)


@pytest.mark.parametrize(
    ("updates", "final", "want"),
    [
        (10, False, Due(log=True, evaluate=False, checkpoint=False)),
        (20, False, Due(log=True, evaluate=True, checkpoint=False)),
        (60, False, Due(log=True, evaluate=True, checkpoint=True)),
        (7, False, Due(log=False, evaluate=False, checkpoint=False)),
        (7, True, Due(log=True, evaluate=True, checkpoint=True)),
    ],
    ids=["log", "log+eval", "all", "nothing", "final-step-does-all"],
)
def test_cadence_is_every_n_updates_and_everything_on_the_way_out(updates: int, final: bool, want: Due) -> None:
    assert Cadence(log_every=10, eval_every=20, checkpoint_every=30).due(updates, final=final) == want


def test_a_run_logs_evaluates_and_checkpoints_once_at_its_last_update(tmp_path: Path) -> None:
    """The final update is due everything; finishing afterwards must not repeat any of it."""
    cfg = config(tmp_path, total_updates=3, log_every_updates=2, eval_every_updates=1000, checkpoint_every_updates=1000)
    SingleProcessTrainer(cfg, resume=False).run(show_progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["updates"] for r in records if "losses/total" in r]
    evaluations = [r["updates"] for r in records if "eval/held_out_l2" in r]
    assert losses == [2, 3] and evaluations == [3]
    assert [r["event"] for r in records if "event" in r] == ["start", "done"]
