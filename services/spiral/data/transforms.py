"""Pure image transforms shared by every loader: crop, resize to the canvas, colour mode, ink style.

Resizing uses Pillow's bilinear filter, which Pillow widens by the scale factor when shrinking (so it
antialiases like an area filter) and which never overshoots: Lanczos or bicubic would put faint
halos around strokes, a target no brush stroke can paint.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from spiral.config import ColorMode, InkStyle

__all__ = [
    "RESAMPLE",
    "apply_ink",
    "center_square_crop",
    "convert_color",
    "grayscale_arrays_to_canvas",
    "image_to_canvas",
    "stack_images",
]

RESAMPLE = Image.Resampling.BILINEAR

#: ITU-R 601-2 luma, the weights Pillow's ``convert("L")`` uses (in 1/1000).
_LUMA = (299, 587, 114)


def center_square_crop(image: Image.Image) -> Image.Image:
    """The centred square of side ``min(width, height)``: CelebA's 178×218 → the middle 178×178."""
    width, height = image.size
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    if (left, top, side) == (0, 0, width) and width == height:
        return image
    return image.crop((left, top, left + side, top + side))


def _flatten_alpha(image: Image.Image, background: int) -> Image.Image:
    """Composite transparent images over a plain background (paper for black ink, black for white ink)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (background, background, background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return image


def image_to_canvas(image: Image.Image, canvas_size: int, color: ColorMode, background: int = 255) -> np.ndarray:
    """Crop to the centred square, resize to ``canvas_size`` and convert: uint8 ``[C, H, W]``.

    ``background`` (0..255) fills transparent pixels before they are dropped.
    """
    image = _flatten_alpha(image, background)
    image = image.convert("L" if color is ColorMode.GRAYSCALE else "RGB")
    image = center_square_crop(image)
    if image.size != (canvas_size, canvas_size):
        image = image.resize((canvas_size, canvas_size), RESAMPLE)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def grayscale_arrays_to_canvas(images: np.ndarray, canvas_size: int) -> torch.Tensor:
    """Resize a stack of grayscale uint8 ``[N, H, W]`` images to uint8 ``[N, 1, S, S]`` (S = canvas_size)."""
    if images.ndim != 3:
        raise ValueError(f"expected grayscale images [N, H, W], got shape {images.shape}")
    n, height, width = images.shape
    if (height, width) == (canvas_size, canvas_size):
        return torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).unsqueeze(1)
    out = np.empty((n, canvas_size, canvas_size), dtype=np.uint8)
    for i in range(n):
        out[i] = np.asarray(Image.fromarray(images[i]).resize((canvas_size, canvas_size), RESAMPLE))
    return torch.from_numpy(out).unsqueeze(1)


def stack_images(arrays: list[np.ndarray]) -> torch.Tensor:
    """Stack same-shaped uint8 ``[C, H, W]`` arrays into one uint8 ``[N, C, H, W]`` tensor."""
    return torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, 1, 0, 0, dtype=torch.uint8)


def convert_color(images: torch.Tensor, color: ColorMode) -> torch.Tensor:
    """Convert uint8 ``[N, C, H, W]`` to 1 (luma, as Pillow computes it) or 3 (replicated) channels."""
    channels = images.shape[1]
    if color is ColorMode.GRAYSCALE and channels == 3:
        weights = torch.tensor(_LUMA, dtype=torch.int32).view(1, 3, 1, 1)
        luma = (images.to(torch.int32) * weights).sum(dim=1, keepdim=True)
        return ((luma + 500) // 1000).clamp_(0, 255).to(torch.uint8)
    if color is ColorMode.RGB and channels == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    return images


def apply_ink(images: torch.Tensor, native: InkStyle | None, wanted: InkStyle) -> torch.Tensor:
    """Invert uint8 images whose native ink differs from the one wanted.

    ``native=None`` marks natural images (photos, renders): they have no ink and are never inverted.
    """
    if native is None or native is wanted:
        return images
    return 255 - images
