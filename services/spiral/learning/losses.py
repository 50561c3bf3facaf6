"""Loss functions of both SPIRAL learners, as pure tensor functions (STYLE §1).

Policy learner (advantage actor-critic with V-trace, IMPALA; TorchBeast ``monobeast.py``
``compute_*_loss``): :func:`policy_gradient_loss`, :func:`baseline_loss`, :func:`entropy_loss`,
combined by :func:`a2c_vtrace_loss`. Losses are *sums* over ``[T, B]``, as in TorchBeast: with
Adam the scale mostly cancels, and ``LearnerConfig.max_grad_norm = 40`` is TorchBeast's value for
summed losses.

Discriminator learner: :func:`wgan_gp_loss` (SPIRAL, Gulrajani et al. 2017) and
:func:`nonsaturating_loss` (SPIRAL++ with spectral norm), both on inputs built by
:func:`discriminator_inputs` (unconditional, pair, or SPIRAL++ complement-mask conditioning).

Also the optimiser constructors (Adam with β1 = 0.5, SPIRAL-NOTES §4), gradient clipping and the
non-finite guard on every optimiser step (:func:`step_if_finite`), so both learners build and step
them the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from spiral.config import ConditioningMode, DiscriminatorConfig, DiscriminatorLoss as DiscriminatorLossKind, LearnerConfig
from spiral.learning.vtrace import VTraceReturns, from_importance_weights

Critic = Callable[[torch.Tensor], torch.Tensor]
"""Anything mapping discriminator inputs ``[B, C_in, H, W]`` to scores ``[B]`` (e.g. a Discriminator)."""


# ------------------------------------------------------------------------------ policy losses ---


def policy_gradient_loss(log_prob: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """``−Σ log π(a_t|x_t) · A_t`` over ``[T, B]``; advantages are constants (detached).

    Raises:
        ValueError: the shapes differ.
    """
    _same_shape(("log_prob", log_prob), ("advantages", advantages))
    return -(log_prob * advantages.detach()).sum()


def baseline_loss(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``½ Σ (v_t − V(x_t))²`` over ``[T, B]``; ``targets`` (the V-trace ``vs``) are detached.

    Raises:
        ValueError: the shapes differ.
    """
    _same_shape(("values", values), ("targets", targets))
    return 0.5 * ((targets.detach() - values) ** 2).sum()


def entropy_loss(entropy: torch.Tensor) -> torch.Tensor:
    """``−Σ H(π(·|x_t))``: minimising it maximises entropy (exploration bonus)."""
    return -entropy.sum()


class A2CLoss(NamedTuple):
    """total = policy + baseline_coef · baseline + entropy_coef · entropy (each term unweighted here).

    vtrace: the targets and advantages the losses used (for logging, e.g. mean advantage).
    """

    total: torch.Tensor
    policy: torch.Tensor
    baseline: torch.Tensor
    entropy: torch.Tensor
    vtrace: VTraceReturns


def a2c_vtrace_loss(
    target_log_prob: torch.Tensor,
    behaviour_log_prob: torch.Tensor,
    entropy: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    cfg: LearnerConfig,
) -> A2CLoss:
    """The policy learner's loss for one batch of unrolls, time-major ``[T, B]``.

    Args:
        target_log_prob: log π(a_t|x_t) from :meth:`SpiralPolicy.unroll` (differentiable).
        behaviour_log_prob: log μ(a_t|x_t) recorded by the actor.
        entropy: policy entropy per step from ``unroll`` (differentiable).
        values: V(x_t) from ``unroll`` (differentiable).
        bootstrap_value: ``[B]`` V(x_T); zero (or anything, with ``discounts[T−1] = 0``) when
            the unroll ends with its episode.
        rewards: ``[T, B]`` from :mod:`spiral.learning.rewards`.
        discounts: ``[T, B]`` γ · (1 − done_t), done_t meaning the episode ended with action t.
        cfg: ``clip_rho_threshold``, ``clip_pg_rho_threshold``, ``baseline_coef``, ``entropy_coef``.

    Raises:
        ValueError: mismatched shapes (names the argument).
    """
    _same_shape(
        ("target_log_prob", target_log_prob),
        ("behaviour_log_prob", behaviour_log_prob),
        ("entropy", entropy),
        ("values", values),
    )
    returns = from_importance_weights(
        log_rhos=target_log_prob.detach() - behaviour_log_prob.detach(),
        discounts=discounts,
        rewards=rewards,
        values=values.detach(),
        bootstrap_value=bootstrap_value.detach(),
        clip_rho_threshold=cfg.clip_rho_threshold,
        clip_pg_rho_threshold=cfg.clip_pg_rho_threshold,
    )
    pg = policy_gradient_loss(target_log_prob, returns.pg_advantages)
    base = baseline_loss(values, returns.vs)
    ent = entropy_loss(entropy)
    total = pg + cfg.baseline_coef * base + cfg.entropy_coef * ent
    return A2CLoss(total=total, policy=pg, baseline=base, entropy=ent, vtrace=returns)


def imitation_loss(component_log_prob: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """``−Σ_{t,b,k} relevance_tbk · log π_k(a_tbk | x_tb, a_tb,<k)``: cross-entropy toward given
    actions (a search's choices, or a synthetic program's), summed like the other losses.

    ``relevance`` (``[T, B, K]`` in {0, 1}) drops the components that did not matter — a move's
    ``control`` changes nothing on the canvas, so imitating it would only teach noise.

    Raises:
        ValueError: the shapes differ.
    """
    _same_shape(("component_log_prob", component_log_prob), ("relevance", relevance))
    return -(component_log_prob * relevance.detach()).sum()


def relevant_components(action_masks: torch.Tensor) -> torch.Tensor:
    """``[T, B, K]``: which components of action ``t`` mattered, from a rollout's observation masks.

    ``action_masks[t]`` is the mask of the action *before* observation ``t`` (SPIRAL-NOTES §1), so
    action ``t``'s relevance is ``action_masks[t + 1]``; the episode's last action has no later
    observation in a rollout and counts every component.
    """
    return torch.cat((action_masks[1:], torch.ones_like(action_masks[:1])), dim=0)


# ----------------------------------------------------------------------- discriminator losses ---


class DiscriminatorLossTerms(NamedTuple):
    """One discriminator update's loss terms.

    The terms of the loss; ``spiral.config.DiscriminatorLoss`` is the Enum that *chooses* the loss.

    total:             what to minimise: adversarial + gp_coef · gradient_penalty.
    adversarial:       WGAN: mean D(fake) − mean D(real); non-saturating: the two cross-entropies.
    gradient_penalty:  mean (‖∇D(x̂)‖ − target)² (zero for the non-saturating loss).
    d_real, d_fake:    mean scores on real and fake inputs (detached, for logging/metrics).
    """

    total: torch.Tensor
    adversarial: torch.Tensor
    gradient_penalty: torch.Tensor
    d_real: torch.Tensor
    d_fake: torch.Tensor


def gradient_penalty(
    disc: Critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    target_norm: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``E[(‖∇_x̂ D(x̂)‖₂ − target_norm)²]`` at ``x̂ = ε·real + (1 − ε)·fake``, ε ~ U(0, 1)
    per sample. Differentiable in the critic's parameters (``create_graph=True``).

    Raises:
        ValueError: ``real`` and ``fake`` shapes differ.
    """
    _same_shape(("real", real), ("fake", fake))
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator, device=real.device)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    (grads,) = torch.autograd.grad(disc(x_hat).sum(), x_hat, create_graph=True)
    norms = grads.flatten(1).norm(dim=1)
    return ((norms - target_norm) ** 2).mean()


def wgan_gp_loss(
    disc: Critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    gp_coef: float,
    gp_target_norm: float,
    generator: torch.Generator | None = None,
) -> DiscriminatorLossTerms:
    """Critic loss of WGAN-GP: ``E[D(fake)] − E[D(real)] + λ · penalty``.

    Args:
        disc: the critic; real/fake: discriminator inputs ``[B, C_in, H, W]`` (same shape).
        gp_coef: λ; gp_target_norm: the penalty's target gradient norm.
        generator: for the interpolation coefficients.

    Raises:
        ValueError: ``real`` and ``fake`` shapes differ.
    """
    _same_shape(("real", real), ("fake", fake))
    d_real, d_fake = disc(real), disc(fake)
    adversarial = d_fake.mean() - d_real.mean()
    penalty = gradient_penalty(disc, real, fake, gp_target_norm, generator) if gp_coef > 0 else adversarial.new_zeros(())
    return DiscriminatorLossTerms(
        total=adversarial + gp_coef * penalty,
        adversarial=adversarial,
        gradient_penalty=penalty,
        d_real=d_real.detach().mean(),
        d_fake=d_fake.detach().mean(),
    )


def nonsaturating_loss(disc: Critic, real: torch.Tensor, fake: torch.Tensor) -> DiscriminatorLossTerms:
    """Standard GAN discriminator loss on logits: ``E[softplus(−D(real))] + E[softplus(D(fake))]``
    (= −log σ(D(real)) − log(1 − σ(D(fake)))). SPIRAL++ pairs it with spectral normalisation
    instead of a gradient penalty, so ``gradient_penalty`` is zero.

    Raises:
        ValueError: ``real`` and ``fake`` have different image shapes.
    """
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real and fake must have the same [C, H, W], got {list(real.shape)} and {list(fake.shape)}")
    d_real, d_fake = disc(real), disc(fake)
    adversarial = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    return DiscriminatorLossTerms(
        total=adversarial,
        adversarial=adversarial,
        gradient_penalty=adversarial.new_zeros(()),
        d_real=d_real.detach().mean(),
        d_fake=d_fake.detach().mean(),
    )


def discriminator_loss(
    disc: Critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    cfg: DiscriminatorConfig,
    generator: torch.Generator | None = None,
) -> DiscriminatorLossTerms:
    """The loss ``cfg.loss`` chooses: WGAN-GP (with ``cfg.gp_coef``/``gp_target_norm``) or non-saturating.

    Raises:
        ValueError: an unknown ``cfg.loss`` (names the valid ones) or mismatched shapes.
    """
    kind = DiscriminatorLossKind(cfg.loss)
    if kind == DiscriminatorLossKind.WGAN_GP:
        return wgan_gp_loss(disc, real, fake, cfg.gp_coef, cfg.gp_target_norm, generator)
    if kind == DiscriminatorLossKind.SN_NONSATURATING:
        return nonsaturating_loss(disc, real, fake)
    raise ValueError(f"discriminator.loss must be one of {[k.value for k in DiscriminatorLossKind]}, got {kind!r}")


# -------------------------------------------------------------------- discriminator inputs ---


def complement_mask(
    batch_size: int, canvas_size: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """SPIRAL++ random half-masks ``m`` ``[B, 1, H, W]`` in {0, 1}.

    **We decide** (the paper gives no exact recipe): each sample's ``m`` covers one of the four
    axis-aligned halves (top, bottom, left, right), chosen uniformly, so ``m`` and ``1 − m`` both
    always show half of the image.
    """
    half = canvas_size // 2
    rows = torch.arange(canvas_size, device=device)
    top = (rows < half).float()[:, None].expand(canvas_size, canvas_size)
    left = top.t()
    halves = torch.stack((top, 1.0 - top, left, 1.0 - left))  # [4, H, W]
    choice = torch.randint(0, 4, (batch_size,), generator=generator, device=device if generator is None else generator.device)
    return halves[choice.to(halves.device)][:, None]


def discriminator_inputs(
    mode: ConditioningMode,
    target: torch.Tensor,
    canvas: torch.Tensor | None,
    real: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Build discriminator inputs ``[B, C_in, H, W]`` for one conditioning mode.

    ========== ======================================= ======================================
    mode       real (``real=True``)                     fake (``real=False``)
    ========== ======================================= ======================================
    none       target (a real image)                    canvas
    pair       (target, target)                         (target, canvas)
    complement ((1−m)·target, m·target)                  ((1−m)·target, m·canvas)
    ========== ======================================= ======================================

    Pairs are concatenated on the channel axis; ``m`` is a fresh :func:`complement_mask` per call
    (draw from ``generator`` for reproducibility). Real inputs ignore ``canvas``.

    Raises:
        ValueError: ``canvas`` missing for a fake input, shapes not ``[B, C, H, W]`` alike, or an
            unknown mode (names the valid ones).
    """
    mode = ConditioningMode(mode)
    if target.dim() != 4:
        raise ValueError(f"target must have shape [B, C, H, W], got {list(target.shape)}")
    if not real:
        if canvas is None:
            raise ValueError("canvas is required for fake discriminator inputs (real=False)")
        _same_shape(("target", target), ("canvas", canvas))
    image = target if real else canvas
    assert image is not None
    if mode == ConditioningMode.NONE:
        return image
    if mode == ConditioningMode.PAIR:
        return torch.cat((target, image), dim=1)
    if mode == ConditioningMode.COMPLEMENT:
        if target.shape[-1] != target.shape[-2]:
            raise ValueError(f"complement conditioning needs square images, got {list(target.shape)}")
        m = complement_mask(target.shape[0], target.shape[-1], generator, target.device).to(target.dtype)
        return torch.cat(((1.0 - m) * target, m * image), dim=1)
    raise ValueError(f"discriminator.conditioning must be one of {[c.value for c in ConditioningMode]}, got {mode!r}")


# ----------------------------------------------------------------------------- optimisation ---


def make_policy_optimizer(params: Iterable[torch.nn.Parameter], cfg: LearnerConfig) -> torch.optim.Adam:
    """Adam(lr, β = (adam_beta1, adam_beta2)) for the policy; SPIRAL uses β1 = 0.5."""
    return torch.optim.Adam(params, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2))


def make_discriminator_optimizer(params: Iterable[torch.nn.Parameter], cfg: DiscriminatorConfig) -> torch.optim.Adam:
    """Adam(lr 1e-4, β = (0.5, 0.999)) by default (SPIRAL-NOTES §3)."""
    return torch.optim.Adam(params, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2))


def clip_gradients(params: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Clip the global gradient norm to ``max_norm``; returns the norm *before* clipping (to log).

    Raises:
        ValueError: ``max_norm`` ≤ 0.
    """
    if not max_norm > 0:
        raise ValueError(f"max_grad_norm must be > 0, got {max_norm}")
    return float(torch.nn.utils.clip_grad_norm_(list(params), max_norm))


class OptimizerStep(NamedTuple):
    """What :func:`step_if_finite` did with one update's gradients."""

    grad_norm: float  # global gradient norm before clipping; NaN when the loss itself was not finite
    skipped: bool  # True: the loss or a gradient was not finite, and weights and optimiser state are untouched


def step_if_finite(
    optimizer: torch.optim.Optimizer,
    params: Iterable[torch.nn.Parameter],
    loss: torch.Tensor,
    max_norm: float | None = None,
) -> OptimizerStep:
    """Clip the gradients to ``max_norm`` (when given) and take the optimiser step — only if
    ``loss`` and every gradient are finite; otherwise drop the gradients and skip the step.

    Why: one NaN or 1e30 that slips into a batch (a bad trajectory, a bad fake) makes the
    gradients non-finite, and a single Adam step with them turns every weight — and, through the
    moment estimates, every later step — into NaN; the next checkpoint would then preserve the
    damage. Skipping keeps the weights and the optimiser state exactly as they were, so neither the
    published weights nor a checkpoint ever hold a non-finite value from a bad update. The caller
    counts skipped steps (``OptimizerStep.skipped``).

    Raises:
        ValueError: ``max_norm`` given but ≤ 0.
    """
    if max_norm is not None and not max_norm > 0:
        raise ValueError(f"max_grad_norm must be > 0, got {max_norm}")
    with_grads = [p for p in params if p.grad is not None]
    if not bool(torch.isfinite(loss.detach()).all()):
        optimizer.zero_grad(set_to_none=True)
        return OptimizerStep(grad_norm=math.nan, skipped=True)
    grads = [p.grad for p in with_grads if p.grad is not None]  # all of them: the filter narrows the type
    norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
    if not bool(torch.isfinite(norm)):
        optimizer.zero_grad(set_to_none=True)
        return OptimizerStep(grad_norm=float(norm), skipped=True)
    if max_norm is not None and with_grads:
        torch.nn.utils.clip_grads_with_norm_(with_grads, max_norm, norm)
    optimizer.step()
    return OptimizerStep(grad_norm=float(norm), skipped=False)


# ---------------------------------------------------------------------------------- helpers ---


def _same_shape(*named: tuple[str, torch.Tensor]) -> None:
    """Raises ValueError naming the first tensor whose shape differs from the first one's."""
    first_name, first = named[0]
    for name, tensor in named[1:]:
        if tensor.shape != first.shape:
            raise ValueError(
                f"{name} must have the same shape as {first_name} {list(first.shape)}, got {list(tensor.shape)}"
            )
