"""Pretraining on synthetic programs (spiral.learning.program_prior, spiral.learning.pretrain)."""

from __future__ import annotations

import pytest
import torch

from spiral.agents import build_policy
from spiral.config import ProgramPriorConfig, load_config_dict, load_preset
from spiral.envs.factory import make_env
from spiral.envs.painting_spec import FLAG_MOVE, FLAG_PAINT
from spiral.envs.spec import Component
from spiral.learning.evaluate import reconstruct
from spiral.learning.losses import make_policy_optimizer
from spiral.learning.pretrain import pretrain_update, render_programs
from spiral.learning.program_prior import synthetic_programs

#: A small painting job: 32×32 canvas, 8×8 grid, 3 actions per episode.
SMALL = {"env.canvas_size": 32, "env.grid_size": 8, "env.episode_length": 4, "pretrain.batch_size": 32}


def _programs(overrides: dict, batch: int = 256, seed: int = 0):
    cfg = load_preset("default", overrides)
    spec = make_env(cfg.env).action_spec
    return cfg, spec, synthetic_programs(spec, cfg.env, cfg.pretrain.prior, batch, torch.Generator().manual_seed(seed))


def test_programs_are_valid_actions_of_the_env() -> None:
    cfg, spec, actions = _programs({"env.episode_length": 12})
    assert actions.shape == (11, 256, len(spec))
    spec.validate(actions.reshape(-1, len(spec)))  # raises on any out-of-range component


def test_programs_start_with_a_move_never_move_twice_and_end_painting_unless_idle() -> None:
    prior = {"pretrain.prior.idle_tail_probability": 0.0}
    cfg, spec, actions = _programs({"env.episode_length": 12, **prior})
    flags = actions[..., spec.index(Component.FLAG)]
    assert bool((flags[0] == FLAG_MOVE).all()), "the brush starts at (0, 0): the first action moves to a start"
    assert bool((flags[-1] == FLAG_PAINT).all()), "the last action paints"
    moves = flags == FLAG_MOVE
    assert not bool((moves[1:] & moves[:-1]).any()), "two moves in a row paint nothing"
    assert 0.1 < float(moves[1:].float().mean()) < 0.5, "new strokes happen, but most steps continue one"


def test_idle_tails_stay_where_the_brush_is() -> None:
    cfg, spec, actions = _programs({"env.episode_length": 12, "pretrain.prior.idle_tail_probability": 1.0})
    flags, ends = actions[..., spec.index(Component.FLAG)], actions[..., spec.index(Component.END)]
    # From the idle step on, every action is a move to the previous action's end cell.
    stays = (flags[1:] == FLAG_MOVE) & (ends[1:] == ends[:-1])
    assert bool(stays[-1].all()), "the last steps of an idle-tailed episode move nowhere"
    assert bool(stays.any(dim=0).all())


def test_segment_lengths_follow_the_prior() -> None:
    cfg, spec, actions = _programs({"env.episode_length": 12, "env.grid_size": 32, "env.canvas_size": 64})
    grid = 32
    ends = actions[..., spec.index(Component.END)]
    y, x = ends // grid, ends % grid
    paint = actions[1:, :, spec.index(Component.FLAG)] == FLAG_PAINT
    length = torch.sqrt(((y[1:] - y[:-1]) ** 2 + (x[1:] - x[:-1]) ** 2).float())[paint] / grid
    prior = ProgramPriorConfig()
    # Reflection at the borders and rounding to cells shorten some segments; none is longer.
    assert float(length.max()) <= prior.max_segment + 1.5 / grid
    assert float(length.median()) > prior.min_segment


def test_mujoco_programs_place_objects_then_nothing() -> None:
    cfg = load_config_dict(
        {"env": {"renderer": "mujoco", "episode_length": 6, "color": "rgb"}, "data": {"name": "mujoco-scenes", "path": "x"}, "total_updates": 1}
    )
    from spiral.envs.mujoco_scenes import mujoco_action_spec

    spec = mujoco_action_spec(cfg.env.mujoco)
    actions = synthetic_programs(spec, cfg.env, cfg.pretrain.prior, 64, torch.Generator().manual_seed(0))
    spec.validate(actions.reshape(-1, len(spec)))
    placed = actions[..., spec.index(Component.FLAG)] == 1
    assert bool(placed[0].all()), "every scene has at least one object"
    assert not bool((~placed[:-1] & placed[1:]).any()), "objects come first, then nothing"


def test_render_programs_records_the_mask_of_each_action() -> None:
    cfg, spec, actions = _programs(SMALL, batch=8)
    env = make_env(cfg.env)
    played = render_programs(env, actions)
    assert played.canvases.shape == (4, 8, 1, 32, 32)
    assert bool((played.masks[0] == 0).all()), "nothing came before the blank canvas"
    control = spec.index(Component.CONTROL)
    moved = actions[..., spec.index(Component.FLAG)] == FLAG_MOVE
    assert bool((played.masks[1:][..., control][moved] == 0).all()), "a move's control point does not matter"


def test_pretraining_paints_held_out_synthetic_targets_better_than_blank() -> None:
    torch.manual_seed(0)
    cfg = load_preset("default", {**SMALL, "pretrain.learning_rate": 2e-3})
    env = make_env(cfg.env)
    policy = build_policy(cfg, env)
    optimizer = make_policy_optimizer(policy.parameters(), cfg.learner.model_copy(update={"learning_rate": 2e-3}))
    held_out = render_programs(env, _programs(SMALL, batch=64, seed=99)[2]).canvases[-1]
    blank = float((held_out**2).mean())
    before = reconstruct(env, policy, held_out, 64).l2
    generator = torch.Generator().manual_seed(0)
    losses = [pretrain_update(policy, optimizer, env, cfg, generator).loss for _ in range(200)]
    after = reconstruct(env, policy, held_out, 64).l2
    assert sum(losses[-20:]) < 0.7 * sum(losses[:20]), "the cross-entropy falls"
    assert after < 0.8 * blank, f"greedy L2 {after:.4f} after pretraining vs blank {blank:.4f} (before: {before:.4f})"


def test_pretraining_an_unconditional_policy_needs_no_target() -> None:
    cfg = load_preset("default", {**SMALL, "mode": "unconditional", "reward.kind": "discriminator"})
    env = make_env(cfg.env)
    policy = build_policy(cfg, env)
    optimizer = make_policy_optimizer(policy.parameters(), cfg.learner)
    stats = pretrain_update(policy, optimizer, env, cfg, torch.Generator().manual_seed(0))
    assert stats.frames == 3 * 32 and not stats.skipped and stats.loss > 0


def test_a_teacher_checkpoint_supplies_the_programs_of_train_images(tmp_path) -> None:
    from spiral.data import load_dataset
    from spiral.learning.pretrain import TeacherPrograms, program_source
    from spiral.learning.state import TrainingState

    cfg = load_preset("default", {**SMALL, "data.num_shapes": 60, "output_dir": str(tmp_path / "teacher")})
    env = make_env(cfg.env)
    TrainingState.build(cfg, env, role="test", policy=True, discriminator=False, seed=0).save(tmp_path / "teacher")
    student = load_preset(
        "default",
        {**SMALL, "data.num_shapes": 60, "mode": "unconditional", "reward.kind": "discriminator",
         "pretrain.teacher": str(tmp_path / "teacher"), "pretrain.teacher_search": 2, "pretrain.teacher_programs": 10},
    )  # fmt: skip
    dataset = load_dataset(student.data, 32, student.env.color, student.env.ink)
    source = program_source(student, env.action_spec, dataset)
    assert isinstance(source, TeacherPrograms) and source.bank.shape == (3, 10, 3)
    drawn = source.draw(16, torch.Generator().manual_seed(0))
    assert drawn.shape == (3, 16, 3)
    env.action_spec.validate(drawn.reshape(-1, 3))
    policy = build_policy(student, env)
    stats = pretrain_update(policy, make_policy_optimizer(policy.parameters(), student.learner), env, student, torch.Generator(), source)
    assert stats.loss > 0 and not stats.skipped
    mismatched = student.model_copy(update={"env": student.env.model_copy(update={"grid_size": 4})})
    with pytest.raises(ValueError, match="they must match"):
        program_source(mismatched, make_env(mismatched.env).action_spec, dataset)
