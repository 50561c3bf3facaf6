"""The one dataset type every consumer sees, and the error every loader raises.

Loaders (``mnist``, ``omniglot``, ``celeba``, ``folder``, ``shapes``) build an :class:`ImageDataset`;
the actors draw conditional targets from it and the discriminator learner draws real images from it,
both through :meth:`ImageDataset.sample`.
"""

from __future__ import annotations

import enum

import torch

__all__ = ["DatasetError", "ImageDataset", "Split"]


class DatasetError(ValueError):
    """A dataset is missing, corrupt or mis-configured; the message names the file and what is wrong."""


class Split(str, enum.Enum):
    """Which side of the deterministic split to draw from."""

    TRAIN = "train"
    HELD_OUT = "held_out"


def _to_uint8(images: torch.Tensor, what: str) -> torch.Tensor:
    """Validate ``[N, C, H, W]`` images and store them as uint8 (4× smaller than float32).

    Every source is 8-bit to begin with (PNG, JPEG, IDX ubyte, an 8-bit render), so quantising a
    float input back to 1/255 steps loses nothing a loader ever had.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DatasetError(f"{what} must be [N, C, H, W] with C = 1 (grayscale) or 3 (RGB), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.contiguous()
    if not images.is_floating_point():
        raise DatasetError(f"{what} must be uint8 or float in [0, 1], got dtype {images.dtype}")
    if images.numel() and (images.min() < 0.0 or images.max() > 1.0 or not torch.isfinite(images).all()):
        raise DatasetError(
            f"{what} must lie in [0, 1], got min {images.min().item():.4g} and max {images.max().item():.4g}"
        )
    return (images * 255.0).round_().to(torch.uint8).contiguous()


class ImageDataset:
    """Train and held-out images, resized to the canvas, in the ink style and colour mode asked for.

    ``train`` and ``held_out`` are float32 ``[N, C, H, W]`` tensors in [0, 1] (C = 1 grayscale, 3 RGB);
    the two never share an image. Storage is uint8: the float tensors are built on first access and
    then kept, so a process that only calls :meth:`sample` never pays for a float copy of the whole
    set (60,000 MNIST images at 64×64 would be 1 GB in float32).

    Immutable after construction. Safe to share between threads: :meth:`sample` only reads.
    """

    __slots__ = ("_held_out_f32", "_held_out_u8", "_name", "_train_f32", "_train_u8")

    def __init__(self, name: str, train: torch.Tensor, held_out: torch.Tensor) -> None:
        """Build from uint8 images or float images in [0, 1], both ``[N, C, H, W]``.

        Raises:
            DatasetError: wrong rank, channel count, dtype or range; empty splits; or train and
                held-out disagreeing on ``C, H, W``.
        """
        train_u8 = _to_uint8(train, f"dataset {name!r} train images")
        held_out_u8 = _to_uint8(held_out, f"dataset {name!r} held-out images")
        if train_u8.shape[0] == 0 or held_out_u8.shape[0] == 0:
            raise DatasetError(
                f"dataset {name!r} needs at least one train and one held-out image, "
                f"got {train_u8.shape[0]} and {held_out_u8.shape[0]}"
            )
        if train_u8.shape[1:] != held_out_u8.shape[1:]:
            raise DatasetError(
                f"dataset {name!r}: train images are {tuple(train_u8.shape[1:])} but held-out images are "
                f"{tuple(held_out_u8.shape[1:])} (C, H, W must match)"
            )
        self._name = name
        self._train_u8 = train_u8
        self._held_out_u8 = held_out_u8
        self._train_f32: torch.Tensor | None = None
        self._held_out_f32: torch.Tensor | None = None

    # ------------------------------------------------------------------ read-only views ---

    @property
    def name(self) -> str:
        return self._name

    @property
    def train(self) -> torch.Tensor:
        """Float32 ``[N, C, H, W]`` in [0, 1]. Do not modify in place: it is shared."""
        if self._train_f32 is None:
            self._train_f32 = self._train_u8.float().div_(255.0)
        return self._train_f32

    @property
    def held_out(self) -> torch.Tensor:
        """Float32 ``[M, C, H, W]`` in [0, 1], never trained on. Do not modify in place: it is shared."""
        if self._held_out_f32 is None:
            self._held_out_f32 = self._held_out_u8.float().div_(255.0)
        return self._held_out_f32

    def uint8(self, split: Split | str = Split.TRAIN) -> torch.Tensor:
        """The stored uint8 ``[N, C, H, W]`` images of one split (0..255), without a float copy."""
        return self._train_u8 if _as_split(split) is Split.TRAIN else self._held_out_u8

    @property
    def num_train(self) -> int:
        return int(self._train_u8.shape[0])

    @property
    def num_held_out(self) -> int:
        return int(self._held_out_u8.shape[0])

    @property
    def num_channels(self) -> int:
        return int(self._train_u8.shape[1])

    @property
    def image_size(self) -> int:
        """Side of the (square) images in pixels."""
        return int(self._train_u8.shape[2])

    # ------------------------------------------------------------------------- sampling ---

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        split: Split | str = Split.TRAIN,
    ) -> torch.Tensor:
        """Draw ``batch_size`` images uniformly with replacement: float32 ``[B, C, H, W]`` in [0, 1].

        Pass a seeded ``torch.Generator`` for reproducible batches.

        Raises:
            DatasetError: ``batch_size`` < 1 or an unknown ``split``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DatasetError(f"batch_size must be a positive integer, got {batch_size!r}")
        images = self.uint8(split)
        index = torch.randint(images.shape[0], (batch_size,), generator=generator)
        return images[index].float().div_(255.0)

    def __len__(self) -> int:
        return self.num_train

    def __repr__(self) -> str:
        c, h, w = self._train_u8.shape[1:]
        return f"ImageDataset(name={self._name!r}, train={self.num_train}, held_out={self.num_held_out}, C={c}, H={h}, W={w})"


def _as_split(split: Split | str) -> Split:
    try:
        return Split(split)
    except ValueError:
        raise DatasetError(f"split must be one of {[s.value for s in Split]}, got {split!r}") from None
