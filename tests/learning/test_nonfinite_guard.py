"""The non-finite guard on every optimiser step (issue #14, finding 1): a NaN/Inf loss or gradient
skips the step, is counted, and never reaches the weights, the optimiser state or a checkpoint."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from spiral.config import load_config_dict
from spiral.learning.losses import clip_gradients, step_if_finite
from spiral.learning.rollout import collect_rollout
from spiral.learning.state import TrainingState
from spiral.learning.updates import discriminator_update, policy_update
from spiral.learning.trainer import SingleProcessTrainer
from test_trainer import tiny_config


def _model_and_adam() -> tuple[torch.nn.Linear, torch.optim.Adam]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    # One real step first, so the optimiser has moments that a bad step could poison.
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def _snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    return copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())


def _assert_unchanged(before: tuple[dict, dict], model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    weights, opt = before
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    for key, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt["state"][key][name])), name


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_a_non_finite_loss_skips_the_step_and_leaves_weights_and_moments_alone(bad: float) -> None:
    model, optimizer = _model_and_adam()
    before = _snapshot(model, optimizer)
    optimizer.zero_grad()
    loss = model(torch.tensor([[1.0, bad, 0.0]])).sum()
    loss.backward()
    step = step_if_finite(optimizer, model.parameters(), loss, max_norm=1.0)
    assert step.skipped and math.isnan(step.grad_norm)
    _assert_unchanged(before, model, optimizer)
    assert all(p.grad is None for p in model.parameters()), "the bad gradients must not linger into the next step"


def test_a_finite_loss_with_a_non_finite_gradient_is_skipped_too() -> None:
    model, optimizer = _model_and_adam()
    before = _snapshot(model, optimizer)
    optimizer.zero_grad()
    loss = model(torch.ones(1, 3)).sum()
    loss.backward()
    model.weight.grad[0, 0] = math.inf  # e.g. an overflow in the gradient penalty's double backward
    step = step_if_finite(optimizer, model.parameters(), loss)
    assert step.skipped and step.grad_norm == math.inf
    _assert_unchanged(before, model, optimizer)


def test_a_finite_step_clips_like_clip_gradients_and_reports_the_norm_before_clipping() -> None:
    model, optimizer = _model_and_adam()
    twin, twin_optimizer = _model_and_adam()
    for m in (model, twin):
        m.zero_grad()
        (100.0 * m(torch.ones(1, 3)).sum()).backward()
    want = clip_gradients(twin.parameters(), 0.5)
    twin_optimizer.step()
    step = step_if_finite(optimizer, model.parameters(), torch.tensor(1.0), max_norm=0.5)
    assert not step.skipped and step.grad_norm == pytest.approx(want, rel=1e-6)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-7)


def test_max_norm_must_be_positive() -> None:
    model, optimizer = _model_and_adam()
    with pytest.raises(ValueError, match=r"max_grad_norm must be > 0, got 0"):
        step_if_finite(optimizer, model.parameters(), torch.tensor(1.0), max_norm=0.0)


def _cfg(tmp_path: Path, **extra):  # noqa: ANN202
    return load_config_dict(tiny_config(tmp_path, num_envs=4, data={"num_shapes": 40}, **extra))


@pytest.mark.parametrize("field", ["canvases", "targets"])
def test_one_nan_pixel_in_a_rollout_leaves_the_policy_weights_unchanged(tmp_path: Path, field: str) -> None:
    """Before the guard, one NaN in a canvas or target made every policy weight NaN after one update."""
    trainer = SingleProcessTrainer(_cfg(tmp_path), resume=False)
    state = trainer.state
    rollout = trainer.collect()
    poisoned = getattr(rollout, field).clone()
    poisoned.view(-1)[7] = math.nan
    rollout = rollout._replace(**{field: poisoned})
    before = _snapshot(state.policy, state.policy_optimizer)
    cfg = trainer.cfg
    stats = policy_update(state.policy, state.policy_optimizer, rollout, cfg.learner, cfg.reward, cfg.mode, None, cfg.discriminator, learner_version=0)
    assert stats.skipped
    _assert_unchanged(before, state.policy, state.policy_optimizer)
    # The very next good batch trains normally.
    good = policy_update(state.policy, state.policy_optimizer, trainer.collect(), cfg.learner, cfg.reward, cfg.mode, None, cfg.discriminator, learner_version=1)
    assert not good.skipped and all(bool(torch.isfinite(p).all()) for p in state.policy.parameters())


def test_nan_fakes_leave_the_discriminator_weights_unchanged(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, mode="unconditional", reward={"kind": "discriminator", "temporal_credit": False, "scale": 1.0})
    trainer = SingleProcessTrainer(cfg, resume=False)
    state = TrainingState.build(cfg, trainer.env, role="discriminator-learner", policy=False, discriminator=True, seed=0)
    real = trainer.dataset.sample(4, state.generator)
    fakes = torch.rand_like(real)
    fakes[1, 0, 3, 3] = math.nan
    before = _snapshot(state.discriminator, state.discriminator_optimizer)
    stats = discriminator_update(state.discriminator, state.discriminator_optimizer, real, fakes, None, cfg.mode, cfg.discriminator, state.generator)
    assert stats.skipped
    _assert_unchanged(before, state.discriminator, state.discriminator_optimizer)


def test_the_trainer_counts_skipped_updates_in_its_record_and_counters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = SingleProcessTrainer(_cfg(tmp_path), resume=False)
    real_collect = trainer.collect

    def poisoned_collect():  # noqa: ANN202
        rollout = real_collect()
        canvases = rollout.canvases.clone()
        canvases[1, 0, 0, 0, 0] = math.inf
        return rollout._replace(canvases=canvases)

    monkeypatch.setattr(trainer, "collect", poisoned_collect)
    record = trainer.train_step()
    assert record["charts/skipped_updates"] == 1.0 and trainer.counters.skipped_updates == 1
    path = trainer.checkpoint()
    saved = TrainingState.build(trainer.cfg, trainer.env, role="single-process", policy=True, discriminator=False, seed=1)
    saved.restore(path)
    assert saved.counters.skipped_updates == 1
    assert all(bool(torch.isfinite(p).all()) for p in saved.policy.parameters()), "a checkpoint never holds a non-finite weight"
