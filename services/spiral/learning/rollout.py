"""Run the policy in a batched environment for one episode and record what the learner needs.

Called by the single-process trainer and by the actor service. Episodes run in lockstep, so one
rollout = one whole episode of ``T = episode_length - 1`` actions for ``B`` canvases, and the LSTM
state simply starts from zeros (no state travels with the trajectory).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from spiral.agents.policy import SpiralPolicy
from spiral.envs.base import BatchedEnv, Observation
from spiral.learning.search import StepScore, check_lookahead, check_searchable, l2_step_score, search_step


class Rollout(NamedTuple):
    """One batch of episodes, time-major.

    canvases:          float ``[T+1, B, C, H, W]``: c_0 (blank) .. c_T (final canvas). The policy
                       saw ``canvases[t]`` before its action ``t``.
    steps:             int64 ``[T, B]`` observation step index.
    episode_lengths:   int64 ``[T, B]``.
    action_masks:      float ``[T, B, K]`` mask of the previous action.
    actions:           int64 ``[T, B, K]``.
    behaviour_log_prob: float ``[T, B]`` log π_behaviour(a_t | s_t).
    targets:           float ``[B, C, H, W]`` for conditional runs, else None.
    noise:             float ``[B, Z]`` for unconditional runs, else None.
    policy_version:    the learner version whose weights acted.
    searched:          bool ``[B]``, True for episodes whose actions a search chose
                       (:mod:`spiral.learning.search`); None = no episode was searched. A searched
                       episode's behaviour policy is the search, whose probabilities are unknown:
                       ``behaviour_log_prob`` then holds log π of the kept action, and the learner
                       trains on such episodes by imitation, not by policy gradient.
    """

    canvases: torch.Tensor
    steps: torch.Tensor
    episode_lengths: torch.Tensor
    action_masks: torch.Tensor
    actions: torch.Tensor
    behaviour_log_prob: torch.Tensor
    targets: torch.Tensor | None
    noise: torch.Tensor | None
    policy_version: int
    searched: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        """Environment steps in this rollout (one frame = one action on one canvas)."""
        return int(self.actions.shape[0] * self.actions.shape[1])

    @property
    def final_canvas(self) -> torch.Tensor:
        return self.canvases[-1]

    def observations(self) -> Observation:
        """The observations the policy acted on, ``[T, B, ...]`` (the final canvas left out)."""
        return Observation(self.canvases[:-1], self.steps, self.episode_lengths, self.action_masks)


@torch.no_grad()
def collect_rollout(
    env: BatchedEnv,
    policy: SpiralPolicy,
    targets: torch.Tensor | None,
    noise: torch.Tensor | None,
    batch_size: int,
    policy_version: int = 0,
    greedy: bool = False,
    search_candidates: int = 0,
    search_score: StepScore = l2_step_score,
    search_lookahead: int = 0,
) -> Rollout:
    """Play one episode in each of ``batch_size`` environments with ``policy``.

    Args:
        targets: ``[B, C, H, W]`` images to reconstruct (conditional) or None.
        noise: ``[B, Z]`` per-episode noise (unconditional) or None.
        greedy: take the argmax of each component instead of sampling (evaluation).
        search_candidates: K > 0 → every action is the best of K policy candidates by
            ``search_score`` (:func:`spiral.learning.search.search_step`); the rollout is marked
            ``searched``. ``greedy`` is then ignored (the greedy action is one of the candidates).
        search_lookahead: J > 0 → a search scores each move by the best of J candidates that
            could follow it (:func:`~spiral.learning.search.search_step`).

    Raises:
        ValueError: search asked of an environment that cannot preview candidates, or
            lookahead of one that cannot branch episodes.
    """
    searchable = check_searchable(env) if search_candidates > 0 else None
    if searchable is not None and search_lookahead > 0:
        check_lookahead(env)
    obs = env.reset(batch_size)
    state = policy.initial_state(batch_size)
    canvases, steps, lengths, masks, actions, log_probs = [obs.canvas], [], [], [], [], []
    plan = None  # the follow-ups a lookahead search kept a move for, offered again at the next step
    while True:
        if searchable is not None:
            chosen, log_prob, state, plan = search_step(
                searchable, policy, obs, targets, noise, state, search_candidates, search_score, lookahead=search_lookahead, plan=plan
            )
        else:
            out, state = policy(obs, targets, noise, state, sample=not greedy)
            chosen, log_prob = out.actions, out.log_prob
        steps.append(obs.step)
        lengths.append(obs.episode_length)
        masks.append(obs.action_mask)
        actions.append(chosen)
        log_probs.append(log_prob)
        obs = env.step(chosen)
        canvases.append(obs.canvas)
        if bool(obs.done.all()):
            break
    return Rollout(
        canvases=torch.stack(canvases),
        steps=torch.stack(steps),
        episode_lengths=torch.stack(lengths),
        action_masks=torch.stack(masks),
        actions=torch.stack(actions),
        behaviour_log_prob=torch.stack(log_probs),
        targets=targets,
        noise=noise,
        policy_version=policy_version,
        searched=torch.ones(batch_size, dtype=torch.bool) if searchable is not None else None,
    )


@torch.no_grad()
def random_rollout(env: BatchedEnv, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Final canvases of uniformly random programs: the 'random policy' baseline."""
    obs = env.reset(batch_size)
    sizes = torch.tensor(env.action_spec.sizes, dtype=torch.float64)
    while not bool(obs.done.all()):
        u = torch.rand(batch_size, len(sizes), generator=generator, dtype=torch.float64)
        obs = env.step((u * sizes).long().clamp_max(sizes.long() - 1))
    return obs.canvas
