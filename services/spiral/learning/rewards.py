"""Rewards of the SPIRAL policy learner, as pure tensor functions (SPIRAL-NOTES §1, §3).

Layout: each batch column holds one whole episode. ``canvases[t]`` (``[T+1, B, C, H, W]``) is the
canvas *before* action ``t`` — ``canvases[0]`` is the blank canvas after reset and
``canvases[T]`` the final one — and ``scores[t] = f(canvases[t])`` (``[T+1, B]``). Rewards are
``[T, B]``: ``rewards[t]`` is credited to action ``t``.

* ``f`` is either the discriminator's score (:func:`discriminator_scores`) or the negative
  reconstruction error (:func:`l2_scores`).
* Final-step reward (SPIRAL): ``r_t = 0`` for ``t < T−1`` and ``r_{T−1} = f(c_T)``.
* Temporal credit assignment (SPIRAL++): ``r_t = f(c_{t+1}) − f(c_t)``. The sum telescopes to
  ``f(c_T) − f(c_0)``: at γ = 1 the return equals the final-step return minus the blank canvas's
  score, a constant the policy cannot influence — but each action sees its own improvement.
* New-stroke penalty (the paper's MNIST setting): ``−stroke_penalty`` for each action that starts
  a new continuous stroke (:func:`new_strokes`).
* ``scale`` multiplies the total, penalty included.

The policy learner calls :func:`compute_rewards`; it scores canvases itself (it owns the
discriminator) with the helpers here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spiral.config import DiscriminatorLoss, RewardConfig

#: ``flag`` values (SPIRAL-NOTES §1): 0 = move (brush lifted), 1 = paint.
FLAG_MOVE = 0
FLAG_PAINT = 1


def l2_scores(canvases: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``−mean((canvas − target)²)`` over each image's channels and pixels.

    The *mean* per-pixel squared error (not the sum, not its square root) keeps the score in
    [−1, 0] for images in [0, 1] whatever the canvas size or channel count, so reward scale and
    entropy coefficients transfer between 28×28 grayscale and 64×64 RGB.

    Args:
        canvases: ``[..., C, H, W]`` (e.g. ``[T+1, B, C, H, W]``).
        target: broadcastable to ``canvases`` (e.g. ``[B, C, H, W]``).

    Returns:
        ``canvases.shape[:-3]`` scores.

    Raises:
        ValueError: fewer than 3 dimensions, or image shapes that differ.
    """
    if canvases.dim() < 3 or target.dim() < 3:
        raise ValueError(
            f"canvases and target must end in [C, H, W], got {list(canvases.shape)} and {list(target.shape)}"
        )
    if canvases.shape[-3:] != target.shape[-3:]:
        raise ValueError(
            f"target images {list(target.shape[-3:])} must match canvas images {list(canvases.shape[-3:])} ([C, H, W])"
        )
    return -((canvases - target) ** 2).mean(dim=(-3, -2, -1))


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[..., C, H, W]`` images (zero padding, radius 3σ); σ = 0 is identity.

    Used to shape the L2 reward: a stroke that lands a few pixels off the target's ink still lowers
    the blurred error, so exploration gets a gradient before strokes land exactly.
    """
    if sigma <= 0:
        return images
    radius = max(1, round(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    # Each 1-D pass is a product with a banded matrix (zero padding = the band cut at the borders):
    # two batched matmuls, ~25× faster on CPU than single-channel conv2d, which took a quarter of
    # an update of the default preset (tests/benchmarks/bench_profile.py).
    rows = _band_matrix(images.shape[-2], kernel, radius)
    cols = rows if images.shape[-1] == images.shape[-2] else _band_matrix(images.shape[-1], kernel, radius)
    return rows @ images @ cols


def _band_matrix(size: int, kernel: torch.Tensor, radius: int) -> torch.Tensor:
    """``M[i, j] = kernel[j - i + radius]`` where ``|j - i| ≤ radius``, else 0 (symmetric: so is the kernel)."""
    index = torch.arange(size, device=kernel.device)
    offset = index[None, :] - index[:, None] + radius
    inside = (offset >= 0) & (offset <= 2 * radius)
    return torch.where(inside, kernel[offset.clamp(0, 2 * radius)], torch.zeros((), dtype=kernel.dtype, device=kernel.device))


def discriminator_scores(logits: torch.Tensor, loss: DiscriminatorLoss) -> torch.Tensor:
    """Turn raw discriminator outputs into the score the generator maximises.

    WGAN-GP: the critic value itself (SPIRAL). Non-saturating: ``log σ(D(x))`` — the
    non-saturating generator objective ``max log D(G(z))`` (Goodfellow et al., 2014).

    Raises:
        ValueError: an unknown ``loss`` (names the valid ones).
    """
    kind = DiscriminatorLoss(loss)
    if kind == DiscriminatorLoss.WGAN_GP:
        return logits
    if kind == DiscriminatorLoss.SN_NONSATURATING:
        return F.logsigmoid(logits)
    raise ValueError(f"discriminator.loss must be one of {[k.value for k in DiscriminatorLoss]}, got {kind!r}")


def _check_scores(scores: torch.Tensor) -> None:
    if scores.dim() < 1 or scores.shape[0] < 2:
        raise ValueError(
            f"scores must be [T+1, B, ...] with T ≥ 1 (one score per canvas, blank one included), "
            f"got shape {list(scores.shape)}"
        )


def final_step_rewards(scores: torch.Tensor) -> torch.Tensor:
    """SPIRAL: 0 for every action but the last, which gets ``f(c_T)``. ``[T+1, B] → [T, B]``.

    Raises:
        ValueError: ``scores`` has fewer than two time entries.
    """
    _check_scores(scores)
    rewards = torch.zeros_like(scores[1:])
    rewards[-1] = scores[-1]
    return rewards


def temporal_credit_rewards(scores: torch.Tensor) -> torch.Tensor:
    """SPIRAL++: ``r_t = f(c_{t+1}) − f(c_t)``. ``[T+1, B] → [T, B]``.

    Raises:
        ValueError: ``scores`` has fewer than two time entries.
    """
    _check_scores(scores)
    return scores[1:] - scores[:-1]


def new_strokes(flags: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
    """bool ``[T, B]``: action ``t`` starts a new continuous stroke.

    Definition: action ``t`` paints (``flag == 1``) and the brush was lifted before it — the
    previous action was a move (``flag == 0``) or there was none (``t`` is the episode's first
    action: the brush sits lifted after reset). A paint following a paint continues the same
    stroke from the previous end point. So a flag sequence ``1 1 0 1 0 0 1`` has three strokes.

    Args:
        flags: int ``[T, B]`` flag component of each action.
        first: bool ``[T, B]``, True where action ``t`` is its episode's first; defaults to
            ``t == 0`` only (one episode per column).

    Raises:
        ValueError: ``flags`` is not ``[T, B]``, holds values other than 0/1, or ``first`` differs in shape.
    """
    if flags.dim() != 2:
        raise ValueError(f"flags must have shape [T, B], got {list(flags.shape)}")
    if bool(((flags != FLAG_MOVE) & (flags != FLAG_PAINT)).any()):
        raise ValueError(f"flags must be {FLAG_MOVE} (move) or {FLAG_PAINT} (paint), got values {flags.unique().tolist()}")
    paint = flags == FLAG_PAINT
    lifted_before = torch.ones_like(paint)
    lifted_before[1:] = ~paint[:-1]
    if first is not None:
        if first.shape != flags.shape:
            raise ValueError(f"first must have the shape of flags {list(flags.shape)}, got {list(first.shape)}")
        lifted_before = lifted_before | first.to(torch.bool)
    return paint & lifted_before


def compute_rewards(
    scores: torch.Tensor,
    cfg: RewardConfig,
    flags: torch.Tensor | None = None,
    first: torch.Tensor | None = None,
) -> torch.Tensor:
    """The reward ``[T, B]`` of each action, as ``cfg`` configures it.

    ``scale · (base_t − stroke_penalty · new_stroke_t)``, where ``base`` is the final-step or the
    temporal-credit reward of ``scores`` (``cfg.temporal_credit``). ``cfg.kind`` only decides how the
    caller computes ``scores`` (:func:`discriminator_scores` or :func:`l2_scores`).

    Args:
        scores: ``[T+1, B]``: f of every canvas, blank one first.
        cfg: temporal_credit, stroke_penalty, scale.
        flags: int ``[T, B]`` flag column of the actions; needed when ``cfg.stroke_penalty > 0``.
        first: see :func:`new_strokes`.

    Raises:
        ValueError: a stroke penalty without flags (e.g. MuJoCo actions have no ``flag``), or bad shapes.
    """
    base = temporal_credit_rewards(scores) if cfg.temporal_credit else final_step_rewards(scores)
    if cfg.stroke_penalty > 0:
        if flags is None:
            raise ValueError(
                f"reward.stroke_penalty is {cfg.stroke_penalty} but no flags were given; "
                "pass the actions' `flag` column, or set reward.stroke_penalty to 0 for specs without `flag`"
            )
        if flags.shape != base.shape:
            raise ValueError(f"flags must have shape {list(base.shape)} (one per action), got {list(flags.shape)}")
        base = base - cfg.stroke_penalty * new_strokes(flags, first).to(base.dtype)
    return cfg.scale * base
