"""The DCGAN-style discriminator (spiral.agents.discriminator)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

from spiral.agents import Discriminator, discriminator_input_channels
from spiral.config import ConditioningMode, DiscriminatorConfig, DiscriminatorLoss
from spiral.learning.losses import discriminator_inputs, wgan_gp_loss


@pytest.mark.parametrize("channels", [1, 3], ids=["gray", "rgb"])
@pytest.mark.parametrize("mode", list(ConditioningMode), ids=[m.value for m in ConditioningMode])
@pytest.mark.parametrize("size", [64, 28], ids=["64px", "28px"])
def test_scores_shape_for_every_conditioning(channels, mode, size):
    disc = Discriminator(channels, size, DiscriminatorConfig(channels=8), mode)
    assert disc.in_channels == (channels if mode == ConditioningMode.NONE else 2 * channels)
    target, canvas = torch.rand(5, channels, size, size), torch.rand(5, channels, size, size)
    for real in (True, False):
        scores = disc(discriminator_inputs(mode, target, canvas, real=real, generator=torch.Generator().manual_seed(0)))
        assert scores.shape == (5,)
        assert bool(torch.isfinite(scores).all())


def test_input_channels_helper():
    assert discriminator_input_channels(3, ConditioningMode.NONE) == 3
    assert discriminator_input_channels(3, ConditioningMode.PAIR) == 6
    assert discriminator_input_channels(1, ConditioningMode.COMPLEMENT) == 2


def _layers(disc):
    return [m for m in disc.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def test_spectral_norm_on_every_layer_only_for_sn_loss():
    sn = Discriminator(1, 64, DiscriminatorConfig(loss=DiscriminatorLoss.SN_NONSATURATING), ConditioningMode.PAIR)
    plain = Discriminator(1, 64, DiscriminatorConfig(loss=DiscriminatorLoss.WGAN_GP), ConditioningMode.PAIR)
    assert len(_layers(sn)) == 5  # 64 → 32 → 16 → 8 → 4, then linear
    assert all(parametrize.is_parametrized(m, "weight") for m in _layers(sn))
    assert not any(parametrize.is_parametrized(m, "weight") for m in _layers(plain))
    # Spectral norm bounds each layer's largest singular value by ~1 after a few power iterations.
    sn.train()
    x = torch.rand(4, 2, 64, 64)
    for _ in range(20):
        sn(x)
    conv = _layers(sn)[1]
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, rel=0.1)


def test_width_doubles_per_layer_and_no_batchnorm():
    disc = Discriminator(3, 64, DiscriminatorConfig(channels=16), ConditioningMode.NONE)
    convs = [m for m in _layers(disc) if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128]
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in disc.modules())


def test_trains_one_wgan_step():
    disc = Discriminator(1, 32, DiscriminatorConfig(channels=8), ConditioningMode.NONE)
    real, fake = torch.rand(4, 1, 32, 32), torch.rand(4, 1, 32, 32)
    loss = wgan_gp_loss(disc, real, fake, gp_coef=10.0, gp_target_norm=1.0)
    loss.total.backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in disc.parameters())


@pytest.mark.parametrize(
    "shape,message",
    [
        ((2, 1, 64, 64), r"discriminator input must have shape \[B, 2, 64, 64\] \(conditioning 'pair'\), got \[2, 1, 64, 64\]"),
        ((2, 2, 32, 32), r"must have shape \[B, 2, 64, 64\]"),
        ((2, 64, 64), r"got \[2, 64, 64\]"),
    ],
    ids=["channels", "size", "rank"],
)
def test_bad_input_shape_raises(shape, message):
    disc = Discriminator(1, 64, DiscriminatorConfig(channels=4), ConditioningMode.PAIR)
    with pytest.raises(ValueError, match=message):
        disc(torch.zeros(shape))


def test_bad_construction_raises():
    with pytest.raises(ValueError, match=r"canvas_size must be ≥ 8 for the discriminator, got 4"):
        Discriminator(1, 4, DiscriminatorConfig(), ConditioningMode.NONE)
    with pytest.raises(ValueError, match=r"'bogus' is not a valid ConditioningMode"):
        Discriminator(1, 64, DiscriminatorConfig(), "bogus")
