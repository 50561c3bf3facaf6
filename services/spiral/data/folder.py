"""Any folder of PNG/JPEG images (searched recursively, sorted for determinism), plus the decode
loop that the Omniglot and CelebA loaders share.

A decode failure is never skipped: it raises with the file (or archive member) that failed, because a
silently shrunken dataset is worse than a stopped run.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from rich.progress import track

from spiral.config import ColorMode
from spiral.data.base import DatasetError
from spiral.data.transforms import image_to_canvas, stack_images

__all__ = ["IMAGE_SUFFIXES", "decode_images", "list_image_files", "read_image_folder", "select_subset"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_PROGRESS_FROM = 5_000  # show a progress bar only for decodes long enough to watch
_T = TypeVar("_T")


def list_image_files(folder: Path) -> list[Path]:
    """Every PNG/JPEG under ``folder`` (any depth, suffix case ignored), sorted by relative path.

    Raises:
        DatasetError: ``folder`` is not a directory or holds no such image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"image folder {folder} does not exist or is not a directory (data.path)")
    files = sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not files:
        raise DatasetError(f"image folder {folder} holds no images: looked recursively for {', '.join(IMAGE_SUFFIXES)} files")
    return files


def select_subset(names: Sequence[_T], max_images: int | None, seed: int) -> list[_T]:
    """At most ``max_images`` of ``names``, chosen by a seeded permutation, kept in their original order."""
    if max_images is None or len(names) <= max_images:
        return list(names)
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(names), generator=generator)[:max_images].sort().values.tolist()
    return [names[i] for i in keep]


def decode_images(
    names: Sequence[str],
    read: Callable[[str], bytes],
    where: str,
    canvas_size: int,
    color: ColorMode,
    background: int = 255,
) -> torch.Tensor:
    """Decode, centre-crop and resize every named image: uint8 ``[N, C, S, S]``.

    Args:
        names: file paths or archive member names, in the order wanted.
        read: returns the encoded bytes of one name.
        where: the folder or archive, for messages.
        background: 0..255 fill of transparent pixels.

    Raises:
        DatasetError: a name that cannot be read or decoded; the message names it and ``where``.
    """
    started = time.perf_counter()
    arrays: list[np.ndarray] = []
    for name in track(names, description=f"decoding {Path(where).name}", transient=True, disable=len(names) < _PROGRESS_FROM):
        try:
            data = read(name)
        except Exception as err:  # noqa: BLE001 - zip CRC errors, I/O errors: all name the member
            raise DatasetError(f"cannot read {name!r} in {where}: {err}") from None
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.format == "JPEG":
                    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale while the short side stays ≥ the canvas:
                    # several times faster on CelebA-sized photos and still antialiased (DCT scaling).
                    image.draft("L" if color is ColorMode.GRAYSCALE else "RGB", (canvas_size, canvas_size))
                image.load()
                arrays.append(image_to_canvas(image, canvas_size, color, background))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            raise DatasetError(f"cannot decode image {name!r} in {where}: {err}") from None
    logger.info("decoded %d images from %s in %.2f s", len(arrays), where, time.perf_counter() - started)
    return stack_images(arrays)


def read_image_folder(
    folder: Path, canvas_size: int, color: ColorMode, background: int = 255, max_images: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Every image of ``folder`` (see :func:`list_image_files`), as uint8 ``[N, C, S, S]``.

    Raises:
        DatasetError: no images, or an image that cannot be decoded.
    """
    folder = Path(folder)
    files = [p.relative_to(folder).as_posix() for p in list_image_files(folder)]
    files = select_subset(files, max_images, seed)
    return decode_images(files, lambda rel: (folder / rel).read_bytes(), str(folder), canvas_size, color, background)
