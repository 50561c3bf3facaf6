"""Held-out evaluation: how well does the policy reconstruct images it never trained on?

Reports mean per-pixel squared error (the same L2 the reward uses) of the greedy policy, and the two
baselines every claim of learning is measured against: the blank canvas and a random policy.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from spiral.envs.base import BatchedEnv
from spiral.learning.rollout import collect_rollout, random_rollout


class Reconstruction(NamedTuple):
    """Greedy reconstructions of held-out targets."""

    targets: torch.Tensor  # [N, C, H, W]
    canvases: torch.Tensor  # [N, C, H, W]
    actions: torch.Tensor  # [T, N, K] the programs that painted them
    l2: float  # mean per-pixel squared error


class Baselines(NamedTuple):
    blank_l2: float
    random_l2: float


def mean_l2(canvases: torch.Tensor, targets: torch.Tensor) -> float:
    return float(((canvases - targets) ** 2).mean())


@torch.no_grad()
def reconstruct(
    env: BatchedEnv, policy: torch.nn.Module, targets: torch.Tensor, batch_size: int, greedy: bool = True, seed: int = 0
) -> Reconstruction:
    """Paint every target, ``batch_size`` at a time: greedily (argmax per component) or by sampling.

    Both are reported: an agent whose paint probability stays under ½ never paints greedily, yet
    its sampled programs may already reconstruct well.
    """
    canvases, actions = [], []
    was_training = policy.training
    policy.eval()
    rng_state = torch.get_rng_state()
    torch.manual_seed(seed)  # sampled evaluation is reproducible and leaves the training RNG alone
    try:
        for start in range(0, targets.shape[0], batch_size):
            chunk = targets[start : start + batch_size]
            rollout = collect_rollout(env, policy, chunk, None, chunk.shape[0], greedy=greedy)
            canvases.append(rollout.final_canvas)
            actions.append(rollout.actions)
    finally:
        policy.train(was_training)
        torch.set_rng_state(rng_state)
    painted = torch.cat(canvases)
    return Reconstruction(targets, painted, torch.cat(actions, dim=1), mean_l2(painted, targets))


@torch.no_grad()
def baselines(env: BatchedEnv, targets: torch.Tensor, batch_size: int, seed: int = 0) -> Baselines:
    """L2 of the blank canvas and of uniformly random programs on the same targets."""
    generator = torch.Generator().manual_seed(seed)
    blank = env.reset(1).canvas
    random_canvases = torch.cat(
        [random_rollout(env, min(batch_size, targets.shape[0] - s), generator) for s in range(0, targets.shape[0], batch_size)]
    )
    return Baselines(blank_l2=mean_l2(blank.expand_as(targets), targets), random_l2=mean_l2(random_canvases, targets))
