"""Search-based action selection (spiral.learning.search) and the imitation of its choices."""

from __future__ import annotations

import pytest
import torch

from spiral.agents import build_policy
from spiral.config import load_config_dict, load_preset
from spiral.envs.factory import make_env
from spiral.envs.painting_spec import random_actions
from spiral.learning.evaluate import reconstruct, stroke_statistics
from spiral.learning.losses import imitation_loss, relevant_components
from spiral.learning.rollout import collect_rollout
from spiral.learning.search import l2_step_score, paint_time_lookahead, search_candidates, search_step
from spiral.learning.trainer import SingleProcessTrainer
from spiral.learning.updates import policy_update
from spiral.services.tensor_codec import trajectory_from_proto, trajectory_to_proto
from spiral.services.trajectory_convert import concat_rollouts, rollout_to_trajectory, trajectory_to_rollout
from test_trainer import one_stroke_dataset, tiny_config


@pytest.fixture()
def small():
    torch.manual_seed(0)
    cfg = load_preset("default", {"env.canvas_size": 32, "env.grid_size": 8, "env.episode_length": 4})
    env = make_env(cfg.env)
    return cfg, env, build_policy(cfg, env)


def test_preview_paints_what_step_would_and_changes_nothing(small) -> None:
    cfg, env, _ = small
    generator = torch.Generator().manual_seed(0)
    env.reset(3)
    env.step(random_actions(env.action_spec, 3, generator))
    before = env.canvas.clone()
    candidates = torch.stack([random_actions(env.action_spec, 3, generator) for _ in range(5)], dim=1)  # [B, K, A]
    previews = env.preview(candidates)
    assert previews.shape == (3, 5, 1, 32, 32)
    assert torch.equal(env.canvas, before), "preview must not change the canvas"
    for k in range(5):
        probe = make_env(cfg.env)
        probe.reset(3)
        probe._canvas, probe._brush_state, probe._step = env._canvas.clone(), env._brush_state, env._step  # the same state
        torch.testing.assert_close(previews[:, k], probe.step(candidates[:, k]).canvas, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"candidates must have shape \[B=3, K, A=3\]"):
        env.preview(candidates[:2])


def test_candidates_put_the_greedy_action_first(small) -> None:
    cfg, env, policy = small
    obs = env.reset(4)
    targets = torch.rand(4, 1, 32, 32)
    state = policy.initial_state(4)
    greedy, _ = policy(obs, targets, None, state, sample=False)
    actions, log_prob, core = policy.candidates(obs, targets, None, state, 6)
    assert actions.shape == (4, 6, 3) and log_prob.shape == (4, 6) and core.shape == (2, 4, policy.sizes.hidden_size)
    assert torch.equal(actions[:, 0], greedy.actions)
    torch.testing.assert_close(log_prob[:, 0], greedy.log_prob)
    assert bool((log_prob <= 0).all())
    with pytest.raises(ValueError, match="num_candidates must be ≥ 1"):
        policy.candidates(obs, targets, None, state, 0)


def test_a_search_step_never_scores_worse_than_the_greedy_action(small) -> None:
    cfg, env, policy = small
    targets = torch.rand(8, 1, 32, 32)
    obs = env.reset(8)
    state = policy.initial_state(8)
    result = search_step(env, policy, obs, targets, None, state, 16)
    searched = l2_step_score(env.preview(result.actions[:, None])[:, 0], targets)
    greedy, _ = policy(obs, targets, None, state, sample=False)
    plain = l2_step_score(env.preview(greedy.actions[:, None])[:, 0], targets)
    assert bool((searched >= plain - 1e-7).all())
    assert torch.equal(result.state.prev_action, result.actions)


def test_search_needs_a_previewable_renderer() -> None:
    cfg = load_preset("default", {"env.renderer": "libmypaint", "env.canvas_size": 32, "env.grid_size": 8, "env.episode_length": 3})
    env = make_env(cfg.env)
    policy = build_policy(cfg, env)
    with pytest.raises(ValueError, match="use env.renderer 'fast' or 'mujoco'"):
        collect_rollout(env, policy, torch.zeros(2, 1, 32, 32), None, 2, search_candidates=4)


def test_search_fraction_picks_the_share_of_searched_rollouts() -> None:
    generator = torch.Generator().manual_seed(0)
    cfg = load_preset("default", {"search.candidates": 8, "search.fraction": 0.25})
    draws = [search_candidates(cfg, generator) for _ in range(400)]
    assert set(draws) == {0, 8}
    assert 0.18 < draws.count(8) / 400 < 0.32
    assert search_candidates(load_preset("default"), generator) == 0


def test_imitation_loss_is_the_masked_cross_entropy() -> None:
    log_probs = torch.log(torch.tensor([[[0.5, 0.25], [0.1, 0.9]]]))  # [T=1, B=2, K=2]
    log_probs.requires_grad_(True)
    relevance = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    loss = imitation_loss(log_probs, relevance)
    expected = -(torch.log(torch.tensor(0.5)) + torch.log(torch.tensor(0.1)) + torch.log(torch.tensor(0.9)))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    torch.testing.assert_close(log_probs.grad, -relevance)
    with pytest.raises(ValueError, match="relevance"):
        imitation_loss(log_probs, relevance[..., :1])


def test_relevant_components_shift_the_observation_masks_by_one() -> None:
    masks = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[1.0, 1.0]]])  # [T=3, B=1, K=2]
    assert relevant_components(masks).tolist() == [[[1.0, 0.0]], [[1.0, 1.0]], [[1.0, 1.0]]]


def test_searched_episodes_train_by_imitation_not_policy_gradient(small) -> None:
    cfg, env, policy = small
    targets = torch.rand(4, 1, 32, 32)
    rollout = collect_rollout(env, policy, targets, None, 4, search_candidates=4)
    assert rollout.searched is not None and bool(rollout.searched.all())
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.0)
    stats = policy_update(policy, optimizer, rollout, cfg.learner, cfg.reward, cfg.mode, None, cfg.discriminator, 0)
    assert stats.policy_loss == 0.0 and stats.baseline_loss == 0.0
    assert stats.imitation_loss is not None and stats.imitation_loss > 0 and stats.searched_fraction == 1.0
    plain = collect_rollout(env, policy, targets, None, 4)
    mixed = concat_rollouts([rollout, plain])
    assert mixed.searched is not None and mixed.searched.tolist() == [True] * 4 + [False] * 4
    stats = policy_update(policy, optimizer, mixed, cfg.learner, cfg.reward, cfg.mode, None, cfg.discriminator, 0)
    assert stats.policy_loss != 0.0 and stats.searched_fraction == 0.5
    assert "losses/imitation" in stats.as_record()


def test_the_searched_mask_travels_over_the_wire(small) -> None:
    cfg, env, policy = small
    rollout = collect_rollout(env, policy, torch.rand(2, 1, 32, 32), None, 2, search_candidates=3)
    message = trajectory_to_proto(rollout_to_trajectory(rollout, env.action_spec.names))
    back = trajectory_to_rollout(trajectory_from_proto(message))
    assert back.searched is not None and back.searched.tolist() == [True, True]
    plain = collect_rollout(env, policy, torch.rand(2, 1, 32, 32), None, 2)
    assert trajectory_to_rollout(trajectory_from_proto(trajectory_to_proto(rollout_to_trajectory(plain, env.action_spec.names)))).searched is None


def test_search_with_16_candidates_beats_none_at_equal_updates_on_a_one_stroke_target(tmp_path) -> None:
    """The lever end to end: 10 updates each, the same seeds; the searching agent (trained on its
    search's choices, painting with search) ends closer to the target than the sampling one
    (trained by policy gradient, painting greedily)."""
    results = {}
    for k in (0, 16):
        cfg = load_config_dict(tiny_config(tmp_path / f"k{k}", total_updates=10, search={"candidates": k}))
        dataset = one_stroke_dataset(cfg)
        trainer = SingleProcessTrainer(cfg, resume=False, dataset=dataset)
        for _ in range(10):
            trainer.train_step()
        target = dataset.held_out[:1]
        if k:
            canvas = collect_rollout(trainer.env, trainer.policy, target, None, 1, search_candidates=k).final_canvas
        else:
            canvas = reconstruct(trainer.env, trainer.policy, target, 1).canvases
        results[k] = float(((canvas - target) ** 2).mean())
    assert results[16] < 0.85 * results[0], results


def test_branch_is_the_episode_one_action_ahead_and_leaves_it_alone(small) -> None:
    cfg, env, _ = small
    generator = torch.Generator().manual_seed(1)
    env.reset(3)
    env.step(random_actions(env.action_spec, 3, generator))
    before, step_before = env.canvas.clone(), env._step
    rows = torch.tensor([2, 0, 2])
    actions = random_actions(env.action_spec, 3, generator)
    child, obs = env.branch(rows, actions)
    assert torch.equal(env.canvas, before) and env._step == step_before, "branching must not change the episodes"
    assert obs.canvas.shape == (3, 1, 32, 32) and obs.step.tolist() == [step_before + 1] * 3
    probe = make_env(cfg.env)
    probe.reset(3)
    probe._canvas, probe._brush_state, probe._step = before[rows], type(env._brush_state)(*(t[rows] for t in env._brush_state)), step_before
    torch.testing.assert_close(obs.canvas, probe.step(actions).canvas, atol=1e-6, rtol=0)
    follow = torch.stack([random_actions(env.action_spec, 3, generator) for _ in range(2)], dim=1)
    torch.testing.assert_close(child.preview(follow), probe.preview(follow), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="rows must be a 1-d index into the 3 episodes"):
        env.branch(torch.tensor([3]), actions[:1])
    with pytest.raises(ValueError, match=r"actions must be \[N=2, A\]"):
        env.branch(torch.tensor([0, 1]), actions)


def _far_strokes(cfg, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` one-stroke targets that start away from the brush's start corner (the env paints them)."""
    env = make_env(cfg.env)
    env.reset(count)
    grid = cfg.env.grid_size
    spec = env.action_spec
    start = torch.randint(grid // 2, grid, (count, 2), generator=generator)
    finish = torch.randint(0, grid, (count, 2), generator=generator)
    moves = [{"flag": 0, "end": int(y * grid + x), "control": 0} for y, x in start.tolist()]
    paints = [{"flag": 1, "end": int(y * grid + x), "control": int(y * grid + x)} for y, x in finish.tolist()]
    env.step(spec.from_dicts(moves))
    return env.step(spec.from_dicts(paints)).canvas


def test_lookahead_scores_a_move_by_the_paint_it_leads_to_and_keeps_that_paint_on_offer(small) -> None:
    """One step, untrained policy, targets away from the start corner: every move the search keeps
    for its follow-up comes with a plan, and the plan painted after the move scores what the move
    was scored by — better than any candidate painted from the corner."""
    cfg, env, policy = small
    targets = _far_strokes(cfg, 16, torch.Generator().manual_seed(2))
    obs = env.reset(16)
    state = policy.initial_state(16)
    generator = torch.Generator().manual_seed(3)
    result = search_step(env, policy, obs, targets, None, state, 8, generator=generator, lookahead=8)
    assert result.plan is not None
    flag = env.action_spec.index("flag")
    moved = result.actions[:, flag] == 0
    assert torch.equal(result.plan.valid, moved), "a plan exactly where a move was kept"
    assert bool(moved.float().mean() >= 0.75), f"the search moved first in only {moved.float().mean():.0%} of episodes"
    blank = l2_step_score(obs.canvas, targets)
    after_move, _ = env.branch(torch.arange(16), result.actions)
    planned = l2_step_score(after_move.preview(result.plan.actions[:, None])[:, 0], targets)
    assert bool((planned[moved] >= blank[moved]).all())
    # The next step offers the plan (last slot), so a one-step search there does at least as well.
    obs = env.step(result.actions)
    second = search_step(env, policy, obs, targets, None, result.state, 8, generator=generator, plan=result.plan)
    reached = l2_step_score(env.preview(second.actions[:, None])[:, 0], targets)
    assert bool((reached[moved] >= planned[moved] - 1e-7).all())


def test_lookahead_search_paints_far_targets_better_than_one_step_search(small) -> None:
    """Whole episodes, same untrained policy and candidates budget: with the move's follow-up as its
    score (and on offer next step), far-from-corner targets end closer than with one-step scores."""
    cfg, env, policy = small
    targets = _far_strokes(cfg, 32, torch.Generator().manual_seed(4))
    finals = {}
    for lookahead in (0, 8):
        torch.manual_seed(5)
        canvas = collect_rollout(env, policy, targets, None, 32, search_candidates=8, search_lookahead=lookahead).final_canvas
        finals[lookahead] = float(((canvas - targets) ** 2).mean())
    assert finals[8] < 0.9 * finals[0], finals


def test_lookahead_needs_the_fast_renderer() -> None:
    with pytest.raises(Exception, match=r"search\.lookahead 4 branches episodes one action ahead, which only env\.renderer 'fast' can"):
        load_preset("default", {"env.renderer": "libmypaint", "search.lookahead": 4})
    with pytest.raises(ValueError, match="lookahead must be ≥ 0"):
        cfg = load_preset("default", {"env.canvas_size": 32, "env.grid_size": 8, "env.episode_length": 3})
        env = make_env(cfg.env)
        policy = build_policy(cfg, env)
        obs = env.reset(1)
        search_step(env, policy, obs, torch.zeros(1, 1, 32, 32), None, policy.initial_state(1), 2, lookahead=-1)


def test_stroke_statistics_count_first_moves_and_paints() -> None:
    cfg = load_preset("default", {"env.canvas_size": 32, "env.grid_size": 8, "env.episode_length": 4})
    spec = make_env(cfg.env).action_spec
    flag = spec.index("flag")
    actions = torch.zeros(3, 4, len(spec), dtype=torch.long)  # [T=3, N=4, K]
    actions[:, :, flag] = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]])
    assert stroke_statistics(actions, spec) == pytest.approx({"first_action_moves": 0.5, "paint_fraction": 8 / 12})


def test_paint_time_search_looks_ahead_as_wide_as_it_searches_where_the_renderer_can_branch(small) -> None:
    _, env, _ = small
    assert paint_time_lookahead(env, 16) == 16 and paint_time_lookahead(env, 16, 3) == 3 and paint_time_lookahead(env, 0) == 0
    libmypaint = make_env(load_preset("default", {"env.renderer": "libmypaint", "env.canvas_size": 32, "env.grid_size": 8}).env)
    assert paint_time_lookahead(libmypaint, 16) == 0
