"""PNG grids of canvases: how every tool in the project shows images (``spiral paint``, training
snapshots, samples).

Pure array layout (:func:`make_grid`) is separate from file output (:func:`save_grid`,
:func:`save_sequence`) so the layout can be tested without touching the disk.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, pad_value: float = 0.5) -> torch.Tensor:
    """Tile ``[N, C, H, W]`` images into one ``[C, rows·(H+pad)+pad, nrow·(W+pad)+pad]`` image.

    ``nrow`` is the number of images per row (default: ``ceil(sqrt(N))``, a near-square grid).

    Raises:
        ValueError: not a 4-d tensor, a channel count other than 1 or 3, ``N == 0``, ``nrow < 1`` or
            ``pad < 0``.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a [N, C, H, W] tensor, got {shape}")
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"images must have 1 (grayscale) or 3 (RGB) channels, got {c}")
    if n == 0:
        raise ValueError("images is empty (N = 0): nothing to draw")
    if pad < 0:
        raise ValueError(f"pad must be ≥ 0, got {pad}")
    nrow = nrow if nrow is not None else math.ceil(math.sqrt(n))
    if nrow < 1:
        raise ValueError(f"nrow must be ≥ 1, got {nrow}")
    nrow = min(nrow, n)
    rows = math.ceil(n / nrow)
    grid = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value, dtype=torch.float32)
    for i, image in enumerate(images.detach().to("cpu", torch.float32)):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = image
    return grid


def to_pil(image: torch.Tensor) -> Image.Image:
    """A ``[C, H, W]`` tensor in [0, 1] as an 8-bit PIL image (values outside are clamped)."""
    array = (image.detach().cpu().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).numpy()
    if array.shape[0] == 1:
        return Image.fromarray(array[0], mode="L")
    return Image.fromarray(np.ascontiguousarray(np.moveaxis(array, 0, -1)), mode="RGB")


def save_grid(images: torch.Tensor, path: Path | str, nrow: int | None = None, pad: int = 2, scale: int = 1) -> Path:
    """Write ``[N, C, H, W]`` images in [0, 1] as one PNG grid; returns the path.

    ``scale`` enlarges each pixel (nearest neighbour) so 64×64 canvases are readable.

    Raises:
        ValueError: see :func:`make_grid`; ``scale`` < 1.
    """
    if scale < 1:
        raise ValueError(f"scale must be ≥ 1, got {scale}")
    grid = make_grid(images, nrow=nrow, pad=pad)
    picture = to_pil(grid)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def save_sequence(frames: torch.Tensor, path: Path | str, pad: int = 2, scale: int = 1) -> Path:
    """Write stroke-by-stroke frames ``[T, N, C, H, W]`` as a grid: one row per image, one column
    per step (``T`` frames, the blank canvas first).

    Raises:
        ValueError: ``frames`` is not 5-d, or see :func:`save_grid`.
    """
    if not isinstance(frames, torch.Tensor) or frames.dim() != 5:
        shape = list(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a [T, N, C, H, W] tensor, got {shape}")
    t, n = frames.shape[:2]
    rows = frames.transpose(0, 1).reshape(t * n, *frames.shape[2:])
    return save_grid(rows, path, nrow=t, pad=pad, scale=scale)
