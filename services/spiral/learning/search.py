"""Search-based action selection: sample K candidate actions from the policy, render them all, keep
the one the step score likes best (the policy improvement the SPIRAL paper's discussion proposes).

One search step, for ``B`` episodes at once::

    policy.candidates(obs, K)          encoder + LSTM once, the autoregressive head K times
      → env.preview(candidates)        every candidate's canvas, B·K strokes in one batch
      → score(canvases, targets)       e.g. −L2 to the target, [B, K]
      → env.step(best)                 commit the winner

The first candidate is the greedy action, so a search never scores worse than the greedy policy
on the step score. Used at paint time (``spiral eval/sample --search K``, the evaluator) and, when
``search.candidates > 0``, by the actors and the single-process trainer to play part of their
episodes (their actions then train the policy by imitation, see :mod:`spiral.learning.updates`).

Scores are one-step — a candidate is judged by the canvas it leaves — except, with ``lookahead`` J
> 0, for candidates that leave the canvas as it is (a move: the brush lifts and goes elsewhere).
One-step, a move always scores "no change", so any paint that grazes the target beats it and a
search (and the policy trained toward its choices) learns never to lift the brush — measured: the
default preset's policy then paints its first stroke from the start corner. With lookahead a move
is scored by the best of J policy candidates that could follow it (the episode branched one action
ahead, :meth:`~spiral.envs.base.BranchableEnv.branch`), or by the unchanged canvas if that is
better: the value of going somewhere is the best thing it lets the brush paint next. The extra
work is one policy step and J previews per move candidate, nothing for paints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from spiral.agents.policy import AgentState, SpiralPolicy
from spiral.config import TrainConfig
from spiral.envs.base import BranchableEnv, Observation, PreviewableEnv, supports_branch, supports_preview

#: ``score(canvases [N, C, H, W], targets [N, C, H, W] | None) -> [N]``: higher is better.
StepScore = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def l2_step_score(canvases: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """−mean per-pixel squared error to the target: what reconstruction is evaluated by.

    Plain, not blurred: with the blurred reward's σ = 2 px as the score, held-out L2 after search was
    worse (measured: 0.269 vs 0.205 of the blank canvas's on MNIST, K = 16).

    Raises:
        ValueError: no targets (unconditional runs have nothing to reconstruct).
    """
    if targets is None:
        raise ValueError("the l2 search score needs targets; an unconditional run has none (search with a critic instead)")
    return -((canvases - targets) ** 2).mean(dim=(-3, -2, -1))


class Plan(NamedTuple):
    """The follow-ups that made a search keep a move, offered again at the next step: the move was
    worth its follow-up only if the brush can still paint it."""

    actions: torch.Tensor  # int64 [B, A]
    log_prob: torch.Tensor  # [B] log π of each at the next step (the branch evaluated that very state)
    valid: torch.Tensor  # bool [B]: rows whose kept action was a move scored by a follow-up


class SearchResult(NamedTuple):
    """One search step for ``B`` episodes."""

    actions: torch.Tensor  # int64 [B, A] the kept candidates
    log_prob: torch.Tensor  # [B] log π of each kept action (not the search's own probability)
    state: AgentState  # the policy state after this step, with the kept action as prev_action
    plan: Plan | None = None  # with lookahead: pass to the next step's search


def search_candidates(cfg: TrainConfig, generator: torch.Generator) -> int:
    """Candidates for the next training rollout: ``cfg.search.candidates`` for a ``search.fraction``
    share of rollouts (drawn from ``generator``), else 0 (sample the policy). The one rule of the
    actors and the single-process trainer."""
    k = cfg.search.candidates
    if k == 0 or cfg.search.fraction <= 0.0:
        return 0
    if cfg.search.fraction >= 1.0:
        return k
    return k if float(torch.rand((), generator=generator)) < cfg.search.fraction else 0


def _require(env: object, able: bool, needs: str, remedy: str) -> None:
    if not able:
        raise ValueError(f"{needs}; {type(env).__name__} cannot ({remedy})")


def check_searchable(env: object) -> PreviewableEnv:
    """``env`` itself, typed as previewable.

    Raises:
        ValueError: the renderer cannot preview candidates (names the ones that can).
    """
    needs = "search needs an environment that can preview candidate actions"
    _require(env, supports_preview(env), needs, "use env.renderer 'fast' or 'mujoco', or search.candidates 0")
    return env  # type: ignore[return-value]


def check_lookahead(env: object) -> BranchableEnv:
    """``env`` itself, typed as branchable.

    Raises:
        ValueError: the renderer cannot branch episodes (names the one that can).
    """
    needs = "search lookahead needs an environment that can branch episodes"
    _require(env, supports_branch(env), needs, "use env.renderer 'fast', or search.lookahead 0")
    return env  # type: ignore[return-value]


def paint_time_lookahead(env: object, candidates: int, lookahead: int | None = None) -> int:
    """The lookahead of search at paint time (``spiral eval/sample --search K``, the evaluator):
    ``lookahead`` when given, else as wide as the search itself (K) where the renderer can branch
    and 0 where it cannot. Paint time has no throughput to protect, and there it pays: K = 16 on
    the shipped ``shapes`` policy 24.3 % → 21.0 % of blank, MNIST 16.5 % → 16.2 % (README)."""
    if lookahead is not None:
        return lookahead
    return candidates if candidates > 0 and supports_branch(env) else 0


def _scores(score: StepScore, canvases: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """``score`` of ``canvases [B, K, C, H, W]`` against each row's target: ``[B, K]``."""
    batch, k = canvases.shape[:2]
    flat_targets = None if targets is None else targets.repeat_interleave(k, 0)
    return score(canvases.reshape(batch * k, *canvases.shape[2:]), flat_targets).view(batch, k)


class _Lookahead(NamedTuple):
    scores: torch.Tensor  # [B, K] the step's scores, idle candidates re-scored by their best follow-up
    branch_of: torch.Tensor  # int64 [B, K]: which follow-up row scored each candidate, −1 for none
    follow_up: torch.Tensor  # int64 [N, A] the best follow-up of each branched candidate
    follow_up_log_prob: torch.Tensor  # [N]


def _lookahead(
    env: PreviewableEnv,
    policy: SpiralPolicy,
    obs: Observation,
    targets: torch.Tensor | None,
    noise: torch.Tensor | None,
    core: torch.Tensor,
    candidates: torch.Tensor,
    canvases: torch.Tensor,
    scores: torch.Tensor,
    lookahead: int,
    score: StepScore,
    generator: torch.Generator | None,
) -> _Lookahead | None:
    """Every candidate that leaves its canvas unchanged (and has an action after it) re-scored by
    the best of ``lookahead`` policy candidates that could follow it; None when there is none."""
    has_next = (obs.step + 2 < obs.episode_length)[:, None]  # another action follows this one
    idle = (canvases == obs.canvas[:, None]).flatten(2).all(dim=2) & has_next
    rows, slots = idle.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return None
    branched = check_lookahead(env)
    # Idle candidates that differ only in components the next step cannot see (a move's control
    # point, its colour) lead to the same state: branch each distinct one once. A confident policy
    # samples the same few moves over and over, so this removes most of the lookahead's work.
    _, masks = branched.branch(rows, candidates[rows, slots])
    seen = torch.cat((rows[:, None], candidates[rows, slots] * masks.action_mask.long()), dim=1)
    _, same_as = torch.unique(seen, dim=0, return_inverse=True)
    first = torch.full((int(same_as.max()) + 1,), rows.numel(), dtype=torch.long).scatter_reduce_(0, same_as, torch.arange(rows.numel()), "amin")
    distinct_rows, kept = rows[first], candidates[rows[first], slots[first]]
    child, child_obs = branched.branch(distinct_rows, kept)
    child_state = AgentState(core[0].index_select(0, distinct_rows), core[1].index_select(0, distinct_rows), kept)
    child_targets = None if targets is None else targets.index_select(0, distinct_rows)
    child_noise = None if noise is None else noise.index_select(0, distinct_rows)
    follow_ups, follow_log_prob, _ = policy.candidates(child_obs, child_targets, child_noise, child_state, lookahead, generator=generator)
    best_score, best = _scores(score, child.preview(follow_ups), child_targets).max(dim=1)
    rescored = scores.clone()
    rescored[rows, slots] = torch.maximum(scores[rows, slots], best_score[same_as])
    branch_of = torch.full(scores.shape, -1, dtype=torch.long)
    branch_of[rows, slots] = same_as
    n = torch.arange(first.numel())
    return _Lookahead(rescored, branch_of, follow_ups[n, best], follow_log_prob[n, best])


@torch.no_grad()
def search_step(
    env: PreviewableEnv,
    policy: SpiralPolicy,
    obs: Observation,
    targets: torch.Tensor | None,
    noise: torch.Tensor | None,
    state: AgentState,
    num_candidates: int,
    score: StepScore = l2_step_score,
    generator: torch.Generator | None = None,
    lookahead: int = 0,
    plan: Plan | None = None,
) -> SearchResult:
    """Choose one action per episode by scoring ``num_candidates`` policy samples (greedy first);
    with ``lookahead`` J > 0, a candidate that leaves the canvas unchanged is scored by the best of
    J candidates that could follow it (see the module docstring). ``plan`` (the previous step's
    :attr:`SearchResult.plan`) takes the last candidate's place where it is valid, so the follow-up
    that made a move worth keeping is always among the choices.

    Raises:
        ValueError: ``num_candidates`` < 1, ``lookahead`` < 0, bad input shapes, or lookahead on
            an environment that cannot branch.
    """
    if lookahead < 0:
        raise ValueError(f"lookahead must be ≥ 0 (0 = one-step scores), got {lookahead}")
    candidates, log_prob, core = policy.candidates(obs, targets, noise, state, num_candidates, generator=generator)
    batch, k = candidates.shape[:2]
    if plan is not None and k > 1:  # slot 0 stays the greedy action
        candidates[plan.valid, k - 1] = plan.actions[plan.valid]
        log_prob[plan.valid, k - 1] = plan.log_prob[plan.valid]
    canvases = env.preview(candidates)  # [B, K, C, H, W]
    scores = _scores(score, canvases, targets)
    ahead = _lookahead(env, policy, obs, targets, noise, core, candidates, canvases, scores, lookahead, score, generator) if lookahead else None
    if ahead is not None:
        scores = ahead.scores
    best = scores.argmax(dim=1)
    rows = torch.arange(batch)
    kept = candidates[rows, best]
    next_plan = None
    if ahead is not None:
        branch = ahead.branch_of[rows, best]
        valid = branch >= 0
        source = branch.clamp_min(0)
        next_plan = Plan(ahead.follow_up[source], ahead.follow_up_log_prob[source], valid)
    return SearchResult(kept, log_prob[rows, best], AgentState(core[0], core[1], kept), next_plan)
