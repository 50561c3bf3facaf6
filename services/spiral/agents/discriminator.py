"""The SPIRAL discriminator (critic): a DCGAN-style convolutional network (SPIRAL-NOTES §3).

``[B, C_in, H, W] → [B]`` unbounded scores. Stride-2 4×4 convolutions with LeakyReLU(0.2) halve
the resolution and double the width until 4×4, then one linear layer. There is no batch
normalisation: WGAN-GP penalises per-sample input gradients, which batch statistics would couple
(Gulrajani et al., §4). With ``DiscriminatorLoss.SN_NONSATURATING`` (SPIRAL++) every layer is
spectrally normalised.

For conditional generation (``PAIR`` or ``COMPLEMENT``) the input is two images concatenated on the
channel axis, so ``C_in = 2·C``; :func:`spiral.learning.losses.discriminator_inputs` builds them.
Used by the discriminator learner (training) and the policy learner (scoring final canvases).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from spiral.config import ConditioningMode, DiscriminatorConfig, DiscriminatorLoss


def discriminator_input_channels(num_channels: int, conditioning: ConditioningMode) -> int:
    """Input channels the discriminator expects: ``C`` unconditional, ``2·C`` for image pairs."""
    return num_channels if ConditioningMode(conditioning) == ConditioningMode.NONE else 2 * num_channels


class Discriminator(nn.Module):
    """DCGAN-style critic.

    Args:
        num_channels: canvas channels C (1 grayscale, 3 RGB).
        canvas_size: canvas side H = W.
        cfg: ``channels`` (first width, doubled per stride-2 layer) and ``loss`` (spectral norm
            for ``sn_nonsaturating``).
        conditioning: ``none`` → C input channels; ``pair``/``complement`` → 2·C.

    Raises:
        ValueError: a canvas smaller than 8 or non-positive channel count.
    """

    def __init__(
        self, num_channels: int, canvas_size: int, cfg: DiscriminatorConfig, conditioning: ConditioningMode
    ) -> None:
        super().__init__()
        if num_channels < 1:
            raise ValueError(f"num_channels must be ≥ 1, got {num_channels}")
        if canvas_size < 8:
            raise ValueError(f"canvas_size must be ≥ 8 for the discriminator, got {canvas_size}")
        self.conditioning = ConditioningMode(conditioning)
        self.in_channels = discriminator_input_channels(num_channels, self.conditioning)
        self.canvas_size = canvas_size
        self.spectral_norm = DiscriminatorLoss(cfg.loss) == DiscriminatorLoss.SN_NONSATURATING
        wrap = spectral_norm if self.spectral_norm else (lambda m: m)

        layers: list[nn.Module] = []
        channels_in, channels_out, size = self.in_channels, cfg.channels, canvas_size
        # Halve while an even size stays ≥ 4 (64 → 32 → 16 → 8 → 4); odd sizes stop early and the
        # linear layer takes whatever is left.
        while size > 4 and size % 2 == 0:
            layers += [wrap(nn.Conv2d(channels_in, channels_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            channels_in, channels_out, size = channels_out, channels_out * 2, size // 2
        self.features = nn.Sequential(*layers)
        self.score = wrap(nn.Linear(channels_in * size * size, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``[B]`` for inputs ``[B, C_in, H, W]``.

        Raises:
            ValueError: the input shape is not ``[B, C_in, H, W]`` (names the expected shape and,
                for a channel mismatch, the conditioning mode that decides it).
        """
        expected = (self.in_channels, self.canvas_size, self.canvas_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"discriminator input must have shape [B, {', '.join(map(str, expected))}] "
                f"(conditioning {self.conditioning.value!r}), got {list(x.shape)}"
            )
        return self.score(self.features(x).flatten(1)).squeeze(-1)
