"""PNG grids, labelled pictures and GIFs of canvases: how every tool in the project shows images
(``spiral paint``, training snapshots, ``spiral sample``, TensorBoard).

Pure array layout (:func:`make_grid`) is separate from file output (:func:`save_grid`,
:func:`save_sequence`) so the layout can be tested without touching the disk. Pictures a person
reads on their own carry a header row that says what each column is: :func:`pairs_picture`
("target" | "painting", side by side — the one layout of training grids and ``spiral sample``),
:func:`sequence_picture` (step numbers, stroke by stroke) and :func:`save_gif` (the same, animated).
Labels use Pillow's default font, so no font file is needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


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
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
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


# --------------------------------------------------------------------------- labelled pictures ---

#: Height in pixels of the header row of a labelled picture (Pillow's default font is ~11 px).
HEADER_HEIGHT = 16
#: Header colours: light text on dark grey reads on white-on-black and black-on-white canvases alike.
HEADER_BACKGROUND = 48
HEADER_TEXT = 235


def _font(size: int = 11) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font has one size
        return ImageFont.load_default()


def with_header(picture: Image.Image, labels: list[str], cell_width: int, pad: int) -> Image.Image:
    """``picture`` under a header row: ``labels[i]`` centred over column ``i`` (cells of
    ``cell_width`` pixels, ``pad`` pixels apart, as :func:`make_grid` lays them out)."""
    fill = HEADER_BACKGROUND if picture.mode == "L" else (HEADER_BACKGROUND,) * 3
    ink = HEADER_TEXT if picture.mode == "L" else (HEADER_TEXT,) * 3
    out = Image.new(picture.mode, (picture.width, picture.height + HEADER_HEIGHT), fill)
    out.paste(picture, (0, HEADER_HEIGHT))
    draw = ImageDraw.Draw(out)
    font = _font()
    for i, label in enumerate(labels):
        left = pad + i * (cell_width + pad)
        text = label
        while text and draw.textlength(text, font=font) > cell_width + pad:
            text = text[:-1]  # a label wider than its column is cut, never spills into the next
        width = draw.textlength(text, font=font)
        draw.text((left + (cell_width - width) / 2, 2), text, fill=ink, font=font)
    return out


def _scaled_grid(images: torch.Tensor, nrow: int, pad: int, scale: int) -> Image.Image:
    picture = to_pil(make_grid(images, nrow=nrow, pad=pad))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    return picture


def pairs_picture(
    targets: torch.Tensor, canvases: torch.Tensor, pairs_per_row: int = 8, scale: int = 2, pad: int = 2, painting_label: str = "painting"
) -> Image.Image:
    """Targets beside their paintings (``[N, C, H, W]`` each), ``pairs_per_row`` pairs a row, under
    a header row "target | painting | target | painting …".

    Raises:
        ValueError: different shapes, or see :func:`make_grid`.
    """
    if targets.shape != canvases.shape:
        raise ValueError(f"targets {list(targets.shape)} and canvases {list(canvases.shape)} must have the same shape")
    pairs_per_row = max(1, min(pairs_per_row, targets.shape[0]))
    interleaved = torch.stack((targets.detach().cpu().float(), canvases.detach().cpu().float()), 1).flatten(0, 1)
    picture = _scaled_grid(interleaved, 2 * pairs_per_row, pad, scale)
    labels = ["target", painting_label] * pairs_per_row
    return with_header(picture, labels, targets.shape[-1] * scale, pad * scale)


def sequence_picture(frames: torch.Tensor, targets: torch.Tensor | None = None, scale: int = 2, pad: int = 2) -> Image.Image:
    """Stroke by stroke: one row per image, one column per step (``frames`` ``[T, N, C, H, W]``,
    the blank canvas first), the target first when given, under a header "target | 0 | 1 | …".

    Raises:
        ValueError: ``frames`` is not 5-d, or ``targets`` is not ``[N, C, H, W]`` of the frames.
    """
    if not isinstance(frames, torch.Tensor) or frames.dim() != 5:
        shape = list(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a [T, N, C, H, W] tensor, got {shape}")
    t = frames.shape[0]
    columns = frames.detach().cpu().float().transpose(0, 1)  # [N, T, C, H, W]
    labels = [str(step) for step in range(t)]
    if targets is not None:
        if tuple(targets.shape) != tuple(frames.shape[1:]):
            raise ValueError(f"targets must be {list(frames.shape[1:])} (one per image of the frames), got {list(targets.shape)}")
        columns = torch.cat((targets.detach().cpu().float()[:, None], columns), 1)
        labels = ["target", *labels]
    picture = _scaled_grid(columns.reshape(-1, *frames.shape[2:]), len(labels), pad, scale)
    return with_header(picture, labels, frames.shape[-1] * scale, pad * scale)


def save_picture(picture: Image.Image, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def picture_tensor(picture: Image.Image) -> torch.Tensor:
    """A PIL picture as a float ``[C, H, W]`` tensor in [0, 1] (what TensorBoard takes)."""
    array = np.asarray(picture, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[None]
    else:
        array = np.moveaxis(array, -1, 0)
    return torch.from_numpy(np.ascontiguousarray(array))


#: Milliseconds each stroke stays on screen in a GIF; the final canvas stays longer.
GIF_FRAME_MS = 300
GIF_FINAL_MS = 1500


def gif_frames(frames: torch.Tensor, targets: torch.Tensor | None = None, scale: int = 2, pad: int = 2, per_row: int = 8) -> list[Image.Image]:
    """The pictures of an animated painting: one per step of ``frames`` ``[T, N, C, H, W]``, each a
    grid of the canvases at that step (beside their targets when given), headed with the step."""
    if not isinstance(frames, torch.Tensor) or frames.dim() != 5:
        shape = list(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a [T, N, C, H, W] tensor, got {shape}")
    t = frames.shape[0]
    pictures = []
    for step in range(t):
        label = f"step {step}/{t - 1}"
        if targets is not None:
            pictures.append(pairs_picture(targets, frames[step], pairs_per_row=per_row, scale=scale, pad=pad, painting_label=label))
        else:
            n = frames.shape[1]
            nrow = min(per_row, n)
            grid = _scaled_grid(frames[step].detach().cpu().float(), nrow, pad, scale)
            pictures.append(with_header(grid, [label] * nrow, frames.shape[-1] * scale, pad * scale))
    return pictures


def save_gif(frames: torch.Tensor, path: Path | str, targets: torch.Tensor | None = None, scale: int = 2, per_row: int = 8) -> Path:
    """Write an animated GIF of the canvases painting stroke by stroke (looping; the finished
    canvases stay on screen longer); returns the path.

    Raises:
        ValueError: see :func:`gif_frames`.
    """
    pictures = [p.convert("P") if p.mode == "RGB" else p for p in gif_frames(frames, targets, scale=scale, per_row=per_row)]
    durations = [GIF_FRAME_MS] * (len(pictures) - 1) + [GIF_FINAL_MS]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations, loop=0, format="GIF")
    return path
