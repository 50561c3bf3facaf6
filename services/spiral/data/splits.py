"""Deterministic train / held-out split by a seeded permutation (pure, no I/O)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from spiral.data.base import DatasetError

__all__ = ["SplitIndices", "split_indices"]


class SplitIndices(NamedTuple):
    """Disjoint index sets into one collection; together they cover it exactly."""

    train: torch.Tensor  # LongTensor [N - M], ascending
    held_out: torch.Tensor  # LongTensor [M], ascending


def split_indices(num_items: int, held_out_fraction: float, seed: int) -> SplitIndices:
    """Split ``range(num_items)`` by a permutation seeded with ``seed``.

    ``round(num_items * held_out_fraction)`` items go to held-out, clamped so that each side keeps at
    least one. The same (``num_items``, fraction, seed) always gives the same split; indices are
    returned sorted so that the images keep their file order inside each side.

    Raises:
        DatasetError: fewer than 2 items, or a fraction outside (0, 1).
    """
    if not 0.0 < held_out_fraction < 1.0:
        raise DatasetError(f"data.held_out_fraction must be in (0, 1), got {held_out_fraction!r}")
    if num_items < 2:
        raise DatasetError(f"a train/held-out split needs at least 2 images, got {num_items}")
    num_held_out = min(max(round(num_items * held_out_fraction), 1), num_items - 1)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_items, generator=generator)
    held_out, _ = order[:num_held_out].sort()
    train, _ = order[num_held_out:].sort()
    return SplitIndices(train=train, held_out=held_out)


class SplitCaps(NamedTuple):
    """Upper bounds on each side when a dataset with an official split is capped to ``max_images``."""

    train: int | None
    held_out: int | None


def split_caps(max_images: int | None, held_out_fraction: float) -> SplitCaps:
    """Share ``max_images`` between the sides of an official split in the held-out fraction's ratio.

    Raises:
        DatasetError: ``max_images`` < 2.
    """
    if max_images is None:
        return SplitCaps(None, None)
    if max_images < 2:
        raise DatasetError(f"max_images must be ≥ 2 (one train and one held-out image), got {max_images}")
    held_out = min(max(round(max_images * held_out_fraction), 1), max_images - 1)
    return SplitCaps(train=max_images - held_out, held_out=held_out)
