"""Rewards (spiral.learning.rewards): final-step, temporal credit, L2, stroke penalty, scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral.config import DiscriminatorLoss, RewardConfig
from spiral.learning.rewards import (
    compute_rewards,
    discriminator_scores,
    final_step_rewards,
    gaussian_blur,
    l2_scores,
    new_strokes,
    temporal_credit_rewards,
)


def test_l2_scores_is_negative_mean_squared_error_per_image():
    target = torch.zeros(2, 1, 2, 2)
    canvases = torch.zeros(3, 2, 1, 2, 2)
    canvases[1, 0, 0, 0, 0] = 1.0  # one pixel of four wrong by 1 → −0.25
    canvases[2, 1] = 0.5  # every pixel wrong by 0.5 → −0.25
    canvases[2, 0] = 1.0  # every pixel wrong by 1 → −1
    want = torch.tensor([[0.0, 0.0], [-0.25, 0.0], [-1.0, -0.25]])
    torch.testing.assert_close(l2_scores(canvases, target), want)


def test_l2_scores_rgb_averages_over_channels():
    target = torch.zeros(1, 3, 4, 4)
    canvas = torch.zeros(1, 3, 4, 4)
    canvas[0, 0] = 1.0  # red channel fully wrong: 1/3 of the values
    assert l2_scores(canvas, target).item() == pytest.approx(-1 / 3)


def test_l2_scores_rejects_mismatched_images():
    with pytest.raises(ValueError, match=r"target images \[1, 4, 4\] must match canvas images \[3, 4, 4\]"):
        l2_scores(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4))


def test_discriminator_scores():
    logits = torch.tensor([-2.0, 0.0, 3.0])
    torch.testing.assert_close(discriminator_scores(logits, DiscriminatorLoss.WGAN_GP), logits)
    ns = discriminator_scores(logits, DiscriminatorLoss.SN_NONSATURATING)
    torch.testing.assert_close(ns, torch.log(torch.sigmoid(logits)))
    assert bool((ns <= 0).all())


def test_final_step_rewards_zero_until_last():
    scores = torch.tensor([[0.1, 0.2], [0.5, 0.6], [0.7, -0.3], [0.9, 0.4]])
    want = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.9, 0.4]])
    torch.testing.assert_close(final_step_rewards(scores), want)


def test_temporal_credit_rewards_are_score_differences():
    scores = torch.tensor([[0.1], [0.5], [0.2], [0.9]])
    torch.testing.assert_close(temporal_credit_rewards(scores), torch.tensor([[0.4], [-0.3], [0.7]]))


@settings(max_examples=40, deadline=None)
@given(steps=st.integers(1, 20), batch=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_temporal_credit_return_equals_final_return_minus_blank_score(steps, batch, seed):
    scores = torch.randn(steps + 1, batch, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    temporal = temporal_credit_rewards(scores)
    final = final_step_rewards(scores)
    assert temporal.shape == final.shape == (steps, batch)
    torch.testing.assert_close(temporal.sum(0), final.sum(0) - scores[0])


@pytest.mark.parametrize("scores", [torch.zeros(1, 3), torch.zeros(())], ids=["one-canvas", "scalar"])
def test_rewards_need_two_canvases(scores):
    with pytest.raises(ValueError, match=r"scores must be \[T\+1, B, \.\.\.\] with T ≥ 1"):
        final_step_rewards(scores)


def test_new_strokes_from_flag_sequence():
    # 1 1 0 1 0 0 1 → strokes start at 0 (after reset the brush is lifted), 3 and 6.
    flags = torch.tensor([1, 1, 0, 1, 0, 0, 1])[:, None]
    want = torch.tensor([1, 0, 0, 1, 0, 0, 1], dtype=torch.bool)[:, None]
    torch.testing.assert_close(new_strokes(flags), want)
    # A move-first episode starts no stroke at t = 0.
    assert new_strokes(torch.tensor([[0], [1], [1]]))[:, 0].tolist() == [False, True, False]


def test_new_strokes_respects_episode_starts():
    flags = torch.tensor([[1, 1], [1, 1], [1, 1]])
    first = torch.tensor([[True, True], [False, True], [False, False]])
    assert new_strokes(flags, first).tolist() == [[True, True], [False, True], [False, False]]


@pytest.mark.parametrize(
    "flags,first,message",
    [
        (torch.tensor([0, 1]), None, r"flags must have shape \[T, B\], got \[2\]"),
        (torch.tensor([[0], [2]]), None, r"flags must be 0 \(move\) or 1 \(paint\), got values \[0, 2\]"),
        (torch.tensor([[0], [1]]), torch.zeros(3, 1, dtype=torch.bool), r"first must have the shape of flags \[2, 1\]"),
    ],
    ids=["rank", "values", "first-shape"],
)
def test_new_strokes_bad_input(flags, first, message):
    with pytest.raises(ValueError, match=message):
        new_strokes(flags, first)


def test_compute_rewards_penalty_and_scale():
    scores = torch.tensor([[0.0], [0.2], [0.1], [0.6]])
    flags = torch.tensor([[1], [0], [1]])  # two new strokes: t = 0 and t = 2
    cfg = RewardConfig(temporal_credit=True, stroke_penalty=0.05, scale=2.0)
    want = 2.0 * (torch.tensor([[0.2], [-0.1], [0.5]]) - 0.05 * torch.tensor([[1.0], [0.0], [1.0]]))
    torch.testing.assert_close(compute_rewards(scores, cfg, flags), want)
    final = compute_rewards(scores, RewardConfig(temporal_credit=False, scale=3.0))
    torch.testing.assert_close(final, torch.tensor([[0.0], [0.0], [1.8]]))


def test_compute_rewards_penalty_needs_flags():
    with pytest.raises(ValueError, match=r"reward.stroke_penalty is 0.1 but no flags were given"):
        compute_rewards(torch.zeros(3, 2), RewardConfig(stroke_penalty=0.1))
    with pytest.raises(ValueError, match=r"flags must have shape \[2, 2\] \(one per action\), got \[3, 2\]"):
        compute_rewards(torch.zeros(3, 2), RewardConfig(stroke_penalty=0.1), torch.zeros(3, 2, dtype=torch.long))


# ------------------------------------------------------------------------------ L2 targets ---


def test_l2_scores_against_non_zero_targets_per_batch_column():
    # Column 0's target is grey 0.5, column 1's is a checkerboard; canvases are [T+1=2, B=2, 1, 2, 2].
    target = torch.tensor([[[[0.5, 0.5], [0.5, 0.5]]], [[[1.0, 0.0], [0.0, 1.0]]]])
    canvases = torch.zeros(2, 2, 1, 2, 2)
    canvases[1, 0] = 1.0  # |1 − 0.5| = 0.5 everywhere → −0.25
    canvases[1, 1] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # wrong on 2 of 4 pixels by 1 → −0.5
    # Blank canvases: column 0 is off by 0.5 everywhere (−0.25), column 1 on the two inked pixels (−0.5).
    want = torch.tensor([[-0.25, -0.5], [-0.25, -0.5]])
    torch.testing.assert_close(l2_scores(canvases, target), want)
    # A canvas equal to its target scores exactly 0, and swapping the roles changes nothing (squared error).
    assert l2_scores(target, target).tolist() == [0.0, 0.0]
    torch.testing.assert_close(l2_scores(target, canvases[1]), want[1])


def test_l2_scores_of_a_single_image_is_a_scalar():
    canvas, target = torch.full((1, 3, 3), 0.25), torch.full((1, 3, 3), 0.75)
    score = l2_scores(canvas, target)
    assert score.shape == ()
    assert score.item() == pytest.approx(-0.25)


@pytest.mark.parametrize(
    "canvases,target",
    [(torch.zeros(4, 4), torch.zeros(1, 4, 4)), (torch.zeros(2, 1, 4, 4), torch.zeros(4, 4))],
    ids=["canvas-2d", "target-2d"],
)
def test_l2_scores_rejects_inputs_without_channel_axis(canvases, target):
    with pytest.raises(ValueError, match=r"canvases and target must end in \[C, H, W\]"):
        l2_scores(canvases, target)


# ---------------------------------------------------------------------------- gaussian blur ---


def _blur_reference(images: np.ndarray, sigma: float) -> np.ndarray:
    """Explicit (non-separable) 2-D convolution with zero padding, an independent check of the two 1-D passes:

        out[y, x] = Σ_{|i|, |j| ≤ r} G(i, j) · img[y + i, x + j],   G(i, j) ∝ exp(−(i² + j²) / 2σ²),  Σ G = 1,

    with radius r = max(1, round(3σ)) and img = 0 outside the image.
    """
    radius = max(1, round(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    height, width = images.shape[-2:]
    padded = np.zeros(images.shape[:-2] + (height + 2 * radius, width + 2 * radius))
    padded[..., radius : radius + height, radius : radius + width] = images
    out = np.zeros_like(images)
    for a, i in enumerate(offsets):
        for b, j in enumerate(offsets):
            out += kernel[a, b] * padded[..., radius + i : radius + i + height, radius + j : radius + j + width]
    return out


# σ = 0.16 has radius max(1, round(0.48)) = 1; 0.7 → 2; 1.3 → 4; 2.0 (every preset's blur_sigma) → 6.
@pytest.mark.parametrize("sigma", [0.16, 0.7, 1.3, 2.0])
def test_gaussian_blur_matches_explicit_2d_convolution(sigma):
    # [T+1, B, C, H, W] with H ≠ W, so a swapped axis or a wrong reshape shows.
    images = torch.rand(2, 3, 2, 9, 14, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    images[0, 0, 0] = 0.0
    images[0, 0, 0, 4, 7] = 1.0  # an impulse: the exact zeros around its support pin the radius
    got = gaussian_blur(images, sigma)
    assert got.shape == images.shape and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), _blur_reference(images.numpy(), sigma), rtol=1e-12, atol=0)


def test_gaussian_blur_impulse_response_has_hand_computed_values():
    # σ = 1, radius 3: the 1-D weights are exp(−x²/2) / S with S = Σ_{x=−3..3} exp(−x²/2) = 2.505950.
    image = torch.zeros(1, 15, 15, dtype=torch.float64)
    image[0, 7, 7] = 1.0
    out = gaussian_blur(image, 1.0)[0]
    assert out[7, 7].item() == pytest.approx(0.159241126, rel=1e-8)  # 1 / S²
    assert out[7, 8].item() == pytest.approx(0.096584625, rel=1e-8)  # exp(−½) / S²
    assert out[6, 7].item() == pytest.approx(out[7, 8].item(), rel=1e-12)  # isotropic
    assert out[7, 11].item() == 0.0 and out[3, 7].item() == 0.0  # beyond the radius


@pytest.mark.parametrize("sigma", [0.7, 2.0])
def test_gaussian_blur_preserves_mass_away_from_borders(sigma):
    image = torch.zeros(1, 40, 40, dtype=torch.float64)
    image[0, 12, 20] = 3.0
    image[0, 25, 17] = 1.5
    out = gaussian_blur(image, sigma)
    assert out.sum().item() == pytest.approx(4.5, rel=1e-12)
    assert bool((out >= 0).all())
    # Near a border the zero padding takes ink away: a constant image darkens only at its rim.
    flat = gaussian_blur(torch.ones(1, 40, 40, dtype=torch.float64), sigma)[0]
    radius = max(1, round(3 * sigma))
    torch.testing.assert_close(flat[radius:-radius, radius:-radius], torch.ones(40 - 2 * radius, 40 - 2 * radius, dtype=torch.float64))
    assert flat[0, 0].item() < flat[0, 20].item() < 1.0


def test_gaussian_blur_with_zero_sigma_is_identity():
    images = torch.rand(2, 1, 5, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(gaussian_blur(images, 0.0), images)


def test_one_action_episode_and_unbatched_scores():
    # T = 1 (two canvases) is the shortest episode; a [T+1] column without a batch axis is accepted too.
    scores = torch.tensor([[0.2, -0.1], [0.5, 0.3]])
    torch.testing.assert_close(final_step_rewards(scores), torch.tensor([[0.5, 0.3]]))
    torch.testing.assert_close(temporal_credit_rewards(scores), torch.tensor([[0.3, 0.4]]))
    torch.testing.assert_close(final_step_rewards(torch.tensor([0.1, 0.5, 0.7])), torch.tensor([0.0, 0.7]))
