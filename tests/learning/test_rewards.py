"""Rewards (spiral.learning.rewards): final-step, temporal credit, L2, stroke penalty, scale."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral.config import DiscriminatorLoss, RewardConfig
from spiral.learning.rewards import (
    compute_rewards,
    discriminator_scores,
    final_step_rewards,
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
