"""Rollout ⇄ trajectory glue: a real rollout survives the wire, batching, and the learner's checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from spiral.agents import build_policy
from spiral.data import load_dataset
from spiral.envs.factory import make_env
from spiral.learning.rollout import collect_rollout
from spiral.errors import FailedPreconditionError, InvalidArgumentError
from spiral.services.tensor_codec import trajectory_from_proto, trajectory_to_proto
from spiral.services.trajectory_convert import (
    RejectReason,
    TrajectoryExpectations,
    check_trajectory,
    concat_rollouts,
    rollout_to_trajectory,
    trajectory_to_rollout,
)
from dist_helpers import tiny_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    cfg = tiny_config(tmp_path_factory.mktemp("convert"))
    env = make_env(cfg.env)
    dataset = load_dataset(cfg.data, cfg.env.canvas_size, cfg.env.color, cfg.env.ink)
    torch.manual_seed(0)
    policy = build_policy(cfg, env)
    generator = torch.Generator().manual_seed(1)
    indices = torch.randint(dataset.num_train, (5,), generator=generator)
    rollout = collect_rollout(env, policy, dataset.train[indices], None, 5, policy_version=7)
    expect = TrajectoryExpectations(
        tuple(env.action_spec.names), tuple(env.action_spec.sizes), env.num_channels, env.canvas_size, cfg.env.episode_length - 1, True, cfg.agent.noise_size, dataset.num_train
    )
    return cfg, env, dataset, rollout, indices, expect


def test_a_rollout_survives_the_wire_with_target_indices(setup) -> None:  # noqa: ANN001
    _, env, dataset, rollout, indices, expect = setup
    traj = rollout_to_trajectory(rollout, tuple(env.action_spec.names), actor_id="a", target_indices=indices)
    message = trajectory_to_proto(traj)
    back = trajectory_to_rollout(trajectory_from_proto(message), dataset.train)
    check_trajectory(trajectory_from_proto(message), expect, learner_version=7)
    assert back.policy_version == 7
    assert torch.equal(back.actions, rollout.actions) and torch.equal(back.steps, rollout.steps)
    assert torch.equal(back.episode_lengths, rollout.episode_lengths)
    assert torch.equal(back.targets, rollout.targets)  # resolved from the indices, exactly
    assert torch.allclose(back.behaviour_log_prob, rollout.behaviour_log_prob)
    # UINT8 canvases: at most half a quantisation step off.
    assert (back.canvases - rollout.canvases).abs().max() <= 0.5 / 255 + 1e-6
    # Indices cost 8 bytes per episode instead of C×H×W image bytes.
    with_images = trajectory_to_proto(rollout_to_trajectory(rollout, tuple(env.action_spec.names)))
    assert with_images.ByteSize() - message.ByteSize() >= 5 * (32 * 32 - 8)


def test_concat_puts_episodes_side_by_side_and_keeps_the_oldest_version(setup) -> None:  # noqa: ANN001
    _, _, _, rollout, _, _ = setup
    newer = rollout._replace(policy_version=9)
    both = concat_rollouts([newer, rollout])
    assert both.actions.shape[1] == 10 and both.targets.shape[0] == 10
    assert both.policy_version == 7
    assert torch.equal(both.canvases[:, 5:], rollout.canvases)
    shorter = rollout._replace(actions=rollout.actions[:1])
    with pytest.raises(ValueError, match=r"rollouts must share T to be batched, got T in \[1, 2\]"):
        concat_rollouts([rollout, shorter])


def _poke(tensor: torch.Tensor, value: float) -> torch.Tensor:
    """A copy of ``tensor`` with its first element set to ``value``."""
    out = tensor.clone()
    out.view(-1)[0] = value
    return out


def _bad(setup, **change):  # noqa: ANN001, ANN003, ANN202
    _, env, _, rollout, indices, _ = setup
    traj = rollout_to_trajectory(rollout, tuple(env.action_spec.names), target_indices=indices)
    return traj._replace(**change)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda t: {"action_names": tuple(reversed(t.action_names))}, InvalidArgumentError, "Trajectory.action_names is"),
        (lambda t: {"canvas": t.canvas[..., :16, :16]}, InvalidArgumentError, "Trajectory.canvas has C×H×W = 1×16×16 but this learner expects 1×32×32"),
        (lambda t: {"actions": t.actions + 1000}, InvalidArgumentError, "holds values outside"),
        (lambda t: {"target_indices": t.target_indices + 10_000}, InvalidArgumentError, "Trajectory.target_indices must lie in [0, 179]"),
        (lambda t: {"target_indices": None}, InvalidArgumentError, "needs targets or target_indices: this learner trains mode 'conditional'"),
        (lambda t: {"episode_length": t.episode_length + 1}, InvalidArgumentError, "Trajectory.episode_length must all be 3"),
        (lambda t: {"behaviour_log_probs": t.behaviour_log_probs * float("nan")}, InvalidArgumentError, "NaN"),
        (lambda t: {"policy_version": 99}, FailedPreconditionError, "policy_version 99 is newer than this learner's version 7"),
        # Issue #14, finding 1: values that used to pass and turned every weight NaN after one update.
        (lambda t: {"canvas": _poke(t.canvas, float("nan"))}, InvalidArgumentError, "Trajectory.canvas holds NaN or infinite values"),
        (lambda t: {"canvas": _poke(t.canvas, 1e30)}, InvalidArgumentError, "Trajectory.canvas holds 1e+30, outside [0, 1]"),
        (lambda t: {"final_canvas": _poke(t.final_canvas, float("inf"))}, InvalidArgumentError, "Trajectory.final_canvas holds NaN or infinite"),
        (lambda t: {"target_indices": None, "targets": _poke(torch.rand(5, 1, 32, 32), 1e30)}, InvalidArgumentError, "Trajectory.targets holds 1e+30"),
        (lambda t: {"action_mask": _poke(t.action_mask, float("nan"))}, InvalidArgumentError, "Trajectory.action_mask holds NaN"),
        (lambda t: {"action_mask": _poke(t.action_mask, 0.5)}, InvalidArgumentError, "Trajectory.action_mask must hold only 0 and 1"),
        (lambda t: {"behaviour_log_probs": _poke(t.behaviour_log_probs, 1e30)}, InvalidArgumentError, "Trajectory.behaviour_log_probs holds 1e+30, outside [-1e+06, 0.001]"),
        (lambda t: {"policy_version": -(2**63)}, InvalidArgumentError, "Trajectory.policy_version must be ≥ 0"),
        (lambda t: {"step": _poke(t.step, 10**12)}, InvalidArgumentError, "Trajectory.step[0] holds 1000000000000 but observation 0 of a lockstep episode is step 0"),
        (lambda t: {"actor_id": "x" * 10_000_000}, InvalidArgumentError, "Trajectory.actor_id is 10000000 bytes long; at most 256"),
    ],
    ids=[
        "action-names", "canvas-size", "action-range", "index-range", "no-condition", "episode-length", "nan", "future-version",
        "canvas-nan", "canvas-1e30", "final-canvas-inf", "targets-1e30", "mask-nan", "mask-half", "log-prob-1e30",
        "version-negative", "step-1e12", "actor-id-10MB",
    ],
)
def test_the_learner_refuses_trajectories_it_cannot_train_on(setup, change, error, message) -> None:  # noqa: ANN001
    expect = setup[5]
    traj = _bad(setup)
    with pytest.raises(error, match=re.escape(message)):
        check_trajectory(traj._replace(**change(traj)), expect, learner_version=7)


def test_wrong_length_is_refused_naming_the_episode_length(setup) -> None:  # noqa: ANN001
    expect = setup[5]._replace(num_steps=5)
    with pytest.raises(InvalidArgumentError, match="Trajectory has T = 2 actions but env.episode_length 6 means T = 5"):
        check_trajectory(_bad(setup), expect, learner_version=7)


def test_more_episodes_than_num_envs_are_refused(setup) -> None:  # noqa: ANN001
    """A 1,024-env trajectory added gigabytes to the learner and counted 32,768 budget frames."""
    expect = setup[5]._replace(max_episodes=4)
    with pytest.raises(InvalidArgumentError, match="Trajectory holds B = 5 episodes but this learner takes at most num_envs = 4 per trajectory") as info:
        check_trajectory(_bad(setup), expect, learner_version=7)
    assert info.value.reason == RejectReason.SIZE


def test_unconditional_noise_must_be_finite(setup) -> None:  # noqa: ANN001
    expect = setup[5]._replace(conditional=False)
    traj = _bad(setup, target_indices=None, noise=_poke(torch.randn(5, expect.noise_size), float("inf")))
    with pytest.raises(InvalidArgumentError, match="Trajectory.noise holds NaN or infinite values") as info:
        check_trajectory(traj, expect, learner_version=7)
    assert info.value.reason == RejectReason.VALUE
