"""One policy update and one discriminator update, shared by the single-process trainer and the
learner services (so both train with exactly the same maths).

Each function reads top to bottom in phases: targets (rewards, V-trace), loss, optimise, log. Their
stats turn into the one run-log record both drivers write (:meth:`PolicyUpdateStats.as_record`,
:meth:`DiscriminatorUpdateStats.as_record`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from spiral.agents import Discriminator, SpiralPolicy, conditioning_for
from spiral.config import ConditioningMode, DiscriminatorConfig, LearnerConfig, Mode, RewardConfig, RewardKind
from spiral.envs.spec import Component
from spiral.learning.losses import (
    a2c_vtrace_loss,
    discriminator_inputs,
    discriminator_loss,
    entropy_loss,
    imitation_loss,
    relevant_components,
    step_if_finite,
)
from spiral.learning.rewards import compute_rewards, discriminator_scores, gaussian_blur, l2_scores
from spiral.learning.rollout import Rollout


class PolicyUpdateStats(NamedTuple):
    """Scalars of one policy update (for logs and metrics)."""

    total_loss: float
    policy_loss: float
    baseline_loss: float
    entropy: float
    episode_reward: float  # mean undiscounted return per episode
    final_l2: float | None  # mean per-pixel squared error of final canvases vs targets (conditional)
    grad_norm: float
    frames: int
    policy_lag: float  # mean learner version − behaviour version
    skipped: bool = False  # the loss or a gradient was not finite: no optimiser step (losses.step_if_finite)
    imitation_loss: float | None = None  # cross-entropy toward searched episodes' actions (when any)
    searched_fraction: float = 0.0  # share of this update's episodes that a search played

    def as_record(self) -> dict[str, float]:
        """The run-log scalars of this update, slash-grouped (``charts/train_l2`` only with targets)."""
        record = {
            "losses/total": self.total_loss,
            "losses/policy": self.policy_loss,
            "losses/baseline": self.baseline_loss,
            "losses/entropy": self.entropy,
            "charts/episode_reward": self.episode_reward,
            "charts/grad_norm": self.grad_norm,
            "charts/policy_lag": self.policy_lag,
        }
        if self.final_l2 is not None:
            record["charts/train_l2"] = self.final_l2
        if self.imitation_loss is not None:
            record["losses/imitation"] = self.imitation_loss
            record["charts/searched_fraction"] = self.searched_fraction
        return record


@torch.no_grad()
def canvas_scores(
    rollout: Rollout,
    reward: RewardConfig,
    mode: Mode,
    discriminator: Discriminator | None,
    disc_cfg: DiscriminatorConfig,
) -> torch.Tensor:
    """f(c_t) for every canvas of the rollout, ``[T+1, B]``: −L2 to the target or the critic's score.

    Raises:
        ValueError: an L2 reward without targets, or a discriminator reward without a discriminator.
    """
    canvases = rollout.canvases
    steps, batch = canvases.shape[:2]
    if reward.kind == RewardKind.L2:
        if rollout.targets is None:
            raise ValueError("reward.kind 'l2' needs targets; this rollout has none (unconditional)")
        if reward.blur_sigma > 0:
            return l2_scores(gaussian_blur(canvases, reward.blur_sigma), gaussian_blur(rollout.targets, reward.blur_sigma))
        return l2_scores(canvases, rollout.targets)
    if discriminator is None:
        raise ValueError("reward.kind 'discriminator' needs discriminator weights; none were given")
    flat = canvases.reshape(steps * batch, *canvases.shape[2:])
    conditioning = conditioning_for(mode, disc_cfg)
    if conditioning == ConditioningMode.NONE:
        inputs = flat
    else:
        assert rollout.targets is not None
        targets = rollout.targets[None].expand(steps, *rollout.targets.shape).reshape_as(flat)
        inputs = discriminator_inputs(conditioning, targets, flat, real=False)
    logits = discriminator(inputs)
    return discriminator_scores(logits, disc_cfg.loss).view(steps, batch)


def policy_update(
    policy: SpiralPolicy,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    learner: LearnerConfig,
    reward: RewardConfig,
    mode: Mode,
    discriminator: Discriminator | None,
    disc_cfg: DiscriminatorConfig,
    learner_version: int,
    imitation_coef: float = 1.0,
) -> PolicyUpdateStats:
    """One A2C + V-trace step on a batch of whole episodes (``rollout`` may concatenate many).

    Episodes a search played (``rollout.searched``) have an unknown behaviour policy — the search —
    so importance weights cannot correct for it. They train by imitation instead (expert
    iteration, Anthony et al. 2017): ``imitation_coef ×`` the cross-entropy toward the kept
    actions, plus the entropy bonus; the policy-gradient and baseline terms use only the episodes
    the policy itself sampled.
    """
    # Targets: rewards from the *latest* discriminator (or −L2), discounts that stop at episode end.
    scores = canvas_scores(rollout, reward, mode, discriminator, disc_cfg)
    spec = policy.action_spec
    flags = rollout.actions[..., spec.index(Component.FLAG)] if spec.has(Component.FLAG) else None
    first = rollout.steps == 0
    rewards = compute_rewards(scores, reward, flags=flags if reward.stroke_penalty > 0 else None, first=first)
    done = rollout.steps >= rollout.episode_lengths - 2  # the action at step L-2 is the last one
    discounts = learner.discount * (~done).float()
    batch = rollout.actions.shape[1]
    searched = rollout.searched if rollout.searched is not None else torch.zeros(batch, dtype=torch.bool)
    sampled = ~searched

    # Loss: re-score the behaviour actions with the current policy.
    obs_seq = rollout.observations()
    out = policy.unroll(obs_seq, rollout.targets, rollout.noise, policy.initial_state(batch), rollout.actions, first)
    zero = out.baseline.sum() * 0.0
    policy_loss = baseline_term = zero
    if bool(sampled.any()):
        loss = a2c_vtrace_loss(
            target_log_prob=out.log_prob[:, sampled],
            behaviour_log_prob=rollout.behaviour_log_prob[:, sampled],
            entropy=out.entropy[:, sampled],
            values=out.baseline[:, sampled],
            bootstrap_value=torch.zeros(int(sampled.sum())),
            rewards=rewards[:, sampled],
            discounts=discounts[:, sampled],
            cfg=learner,
        )
        total, policy_loss, baseline_term = loss.total, loss.policy, loss.baseline
    else:
        total = zero
    imitation = None
    if bool(searched.any()):
        relevance = relevant_components(rollout.action_masks)[:, searched]
        imitation = imitation_loss(out.component_log_prob[:, searched], relevance)
        total = total + imitation_coef * imitation + learner.entropy_coef * entropy_loss(out.entropy[:, searched])

    # Optimise.
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    step = step_if_finite(optimizer, policy.parameters(), total, max_norm=learner.max_grad_norm)
    grad_norm = step.grad_norm

    # Log.
    final_l2 = None
    if rollout.targets is not None:
        final_l2 = float(-l2_scores(rollout.final_canvas, rollout.targets).mean())
    return PolicyUpdateStats(
        total_loss=float(total.detach()),
        policy_loss=float(policy_loss.detach()),
        baseline_loss=float(baseline_term.detach()),
        entropy=float(out.entropy.detach().sum(0).mean()),
        episode_reward=float(rewards.sum(0).mean()),
        final_l2=final_l2,
        grad_norm=float(grad_norm),
        frames=rollout.num_frames,
        policy_lag=float(learner_version - rollout.policy_version),
        skipped=step.skipped,
        imitation_loss=None if imitation is None else float(imitation.detach()),
        searched_fraction=float(searched.float().mean()),
    )


class DiscriminatorUpdateStats(NamedTuple):
    """Scalars of one critic update (for logs and metrics)."""

    total_loss: float
    adversarial: float
    gradient_penalty: float
    d_real: float  # mean critic output on real images
    d_fake: float  # mean critic output on painted canvases
    skipped: bool = False  # the loss or a gradient was not finite: no optimiser step (losses.step_if_finite)

    def as_record(self) -> dict[str, float]:
        """The run-log scalars of this critic update, slash-grouped."""
        return {"losses/discriminator": self.total_loss, "charts/d_real": self.d_real, "charts/d_fake": self.d_fake}


def discriminator_update(
    discriminator: Discriminator,
    optimizer: torch.optim.Optimizer,
    real_images: torch.Tensor,
    fake_canvases: torch.Tensor,
    fake_targets: torch.Tensor | None,
    mode: Mode,
    cfg: DiscriminatorConfig,
    generator: torch.Generator | None = None,
) -> DiscriminatorUpdateStats:
    """One critic step: real dataset images against generated final canvases.

    Conditional critics see pairs: real (target, target) with targets from the dataset, fake
    (target, canvas) with the target each canvas was painting.

    Raises:
        ValueError: conditional mode without ``fake_targets``.
    """
    conditioning = conditioning_for(mode, cfg)
    if conditioning == ConditioningMode.NONE:
        real, fake = real_images, fake_canvases
    else:
        if fake_targets is None:
            raise ValueError("a conditional discriminator needs the targets of the fake canvases")
        real = discriminator_inputs(conditioning, real_images, None, real=True, generator=generator)
        fake = discriminator_inputs(conditioning, fake_targets, fake_canvases, real=False, generator=generator)
    loss = discriminator_loss(discriminator, real, fake, cfg, generator)
    optimizer.zero_grad(set_to_none=True)
    loss.total.backward()
    step = step_if_finite(optimizer, discriminator.parameters(), loss.total)
    return DiscriminatorUpdateStats(
        total_loss=float(loss.total.detach()),
        adversarial=float(loss.adversarial.detach()),
        gradient_penalty=float(loss.gradient_penalty.detach()),
        d_real=float(loss.d_real),
        d_fake=float(loss.d_fake),
        skipped=step.skipped,
    )
