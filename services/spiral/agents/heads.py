"""Building blocks of the SPIRAL policy's action side: component embeddings and decoders.

* :class:`ComponentEmbedding` turns one discrete action component into a vector — spatial
  components as their (y, x) cell centre in [−1, 1] through a linear layer (so nearby cells get
  nearby embeddings), the others through a learned table (equivalent to one-hot → linear).
* :class:`SpatialDecoder` maps the head state ``z`` to ``grid × grid`` logits with a small
  deconvolution stack (SPIRAL-NOTES §2), :class:`MLPDecoder` maps it to ``size`` logits.
* :func:`make_decoder` picks the right decoder for a :class:`ComponentSpec`.

Used only by :mod:`spiral.agents.policy`.
"""

from __future__ import annotations

import torch
from torch import nn

from spiral.envs.spec import ComponentSpec


def grid_coordinates(index: torch.Tensor, grid: int) -> torch.Tensor:
    """Cell index ``[...]`` of a ``grid × grid`` lattice → float ``[..., 2]`` (y, x) in [−1, 1].

    Cells are unravelled row-major, as the environments do (SPIRAL-NOTES §1).
    """
    y = torch.div(index, grid, rounding_mode="floor")
    x = index - y * grid
    scale = 2.0 / max(grid - 1, 1)
    return torch.stack((y, x), dim=-1).to(torch.float32) * scale - 1.0


class ComponentEmbedding(nn.Module):
    """Embed one action component ``LongTensor[B]`` → ``[B, embed_size]``."""

    def __init__(self, spec: ComponentSpec, embed_size: int) -> None:
        super().__init__()
        self.spec = spec
        if spec.spatial:
            self.layer: nn.Module = nn.Linear(2, embed_size)
        else:
            self.layer = nn.Embedding(spec.size, embed_size)

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        if self.spec.spatial:
            assert self.spec.grid is not None
            return self.layer(grid_coordinates(value, self.spec.grid))
        return self.layer(value)


def upsampling_plan(grid: int) -> tuple[int, int]:
    """``(start_size, num_doublings)`` with ``start_size · 2**num_doublings == grid``.

    Doubles as often as the grid allows while the starting map stays at least 4×4, so grid 32
    starts at 4×4 with three stride-2 deconvolutions, grid 12 at 6×6 with one, grid 6 at 6×6 with none.
    """
    doublings = 0
    while grid % (2 ** (doublings + 1)) == 0 and grid // (2 ** (doublings + 1)) >= 4:
        doublings += 1
    return grid // (2**doublings), doublings


class SpatialDecoder(nn.Module):
    """``z [B, hidden]`` → ``grid × grid`` logits ``[B, grid²]`` (row-major cell order).

    linear → ``channels × s × s`` map → n × (4×4 stride-2 deconvolution, ReLU) → 3×3 conv to one
    channel. A deconvolution stack shares weights across positions, which a linear layer to
    ``grid²`` logits would not.
    """

    def __init__(self, hidden_size: int, grid: int, channels: int) -> None:
        super().__init__()
        self.grid = grid
        self.channels = channels
        self.start, doublings = upsampling_plan(grid)
        self.project = nn.Linear(hidden_size, channels * self.start * self.start)
        layers: list[nn.Module] = []
        for _ in range(doublings):
            layers += [nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        self.deconv = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels, 1, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """``skip``: optional ``[B, channels, grid, grid]`` image features added before the last conv."""
        x = self.deconv(torch.relu(self.project(z)).view(-1, self.channels, self.start, self.start))
        if skip is not None:
            x = x + skip
        return self.out(x).flatten(1)


class MLPDecoder(nn.Module):
    """``z [B, hidden]`` → ``[B, size]`` logits through one hidden layer of ``hidden / 2`` units
    (these components have at most a few dozen values; a full-width layer would only add weights)."""

    def __init__(self, hidden_size: int, size: int) -> None:
        super().__init__()
        width = max(hidden_size // 2, 8)
        self.net = nn.Sequential(nn.Linear(hidden_size, width), nn.ReLU(), nn.Linear(width, size))

    def forward(self, z: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z)  # non-spatial: image skip features do not apply


def make_decoder(spec: ComponentSpec, hidden_size: int, decoder_channels: int) -> nn.Module:
    """The decoder of one component: a deconvolution stack if spatial, else an MLP.

    Raises:
        ValueError: a spatial component whose ``size`` is not ``grid²``.
    """
    if spec.spatial:
        assert spec.grid is not None
        if spec.size != spec.grid * spec.grid:
            raise ValueError(
                f"spatial component {spec.name.value!r} has size {spec.size} but grid {spec.grid}; "
                f"size must be grid² = {spec.grid * spec.grid}"
            )
        return SpatialDecoder(hidden_size, spec.grid, decoder_channels)
    return MLPDecoder(hidden_size, spec.size)


class FoldBack(nn.Module):
    """``z ← relu(z + MLP([z, embed]))``: condition the head state on a sampled component.

    The MLP is a single linear layer: the residual form plus the outer ReLU already make each fold
    a nonlinear update, and a second full-width layer per component would add ~0.3M parameters
    to the ``paper`` preset for no published reason.
    """

    def __init__(self, hidden_size: int, embed_size: int) -> None:
        super().__init__()
        self.net = nn.Linear(hidden_size + embed_size, hidden_size)

    def forward(self, z: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return torch.relu(z + self.net(torch.cat((z, embedding), dim=-1)))
