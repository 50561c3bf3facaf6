"""CelebA (Liu et al.), aligned-and-cropped faces: the ``img_align_celeba/`` folder or
``img_align_celeba.zip`` of 178×218 JPEGs, as distributed.

Each face is centre-cropped to 178×178 (the usual crop, keeping the face and dropping background
above and below) and resized to the canvas. When the official ``list_eval_partition.txt`` is found
(beside the images or in ``Eval/``, as the distribution lays it out), partition 0 trains and partitions
1 and 2 (validation, test) are held out; otherwise the images are split deterministically.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from spiral.config import ColorMode
from spiral.data.base import DatasetError
from spiral.data.folder import IMAGE_SUFFIXES, decode_images, list_image_files, select_subset
from spiral.data.splits import split_caps

__all__ = ["CELEBA_URL", "CelebaImages", "read_celeba"]

logger = logging.getLogger(__name__)

CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
_FOLDER = "img_align_celeba"
_PARTITION = "list_eval_partition.txt"


class CelebaImages(NamedTuple):
    train: torch.Tensor  # uint8 [N, C, S, S]
    held_out: torch.Tensor | None  # uint8 [M, C, S, S]; None: no official partition, split later


class _Source(NamedTuple):
    names: list[str]  # relative paths or zip member names, sorted
    root: Path  # the folder the distribution's other files sit near
    where: str
    archive: Path | None


def _locate(path: Path) -> _Source:
    if path.is_file() and path.suffix.lower() == ".zip":
        return _zip_source(path)
    if path.is_dir():
        for base in (path, path / "Img"):
            if (base / _FOLDER).is_dir():
                return _folder_source(base / _FOLDER)
            if (base / f"{_FOLDER}.zip").is_file():
                return _zip_source(base / f"{_FOLDER}.zip")
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            return _folder_source(path)
    raise DatasetError(
        f"CelebA not found at {path}: data.path must be the {_FOLDER}/ folder or {_FOLDER}.zip of aligned JPEGs "
        f"(or a folder holding either, optionally under Img/), from {CELEBA_URL}"
    )


def _folder_source(folder: Path) -> _Source:
    names = [p.relative_to(folder).as_posix() for p in list_image_files(folder)]
    return _Source(names=names, root=folder.parent, where=str(folder), archive=None)


def _zip_source(archive: Path) -> _Source:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = sorted(
                i.filename for i in zf.infolist() if not i.is_dir() and Path(i.filename).suffix.lower() in IMAGE_SUFFIXES
            )
    except (zipfile.BadZipFile, OSError) as err:
        raise DatasetError(f"CelebA archive {archive} is not a readable zip file ({err}): truncated or damaged download?") from None
    if not names:
        raise DatasetError(f"CelebA archive {archive} holds no JPEG/PNG images")
    return _Source(names=names, root=archive.parent, where=str(archive), archive=archive)


def _read_partition(root: Path) -> dict[str, int] | None:
    for candidate in (root / _PARTITION, root / "Eval" / _PARTITION, root.parent / "Eval" / _PARTITION):
        if candidate.is_file():
            break
    else:
        return None
    partition: dict[str, int] = {}
    for number, line in enumerate(candidate.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DatasetError(f"{candidate} line {number}: expected '<image>.jpg <0|1|2>', got {line!r}")
        partition[fields[0]] = int(fields[1])
    logger.info("CelebA: using the official partition in %s (%d entries)", candidate, len(partition))
    return partition


def read_celeba(
    path: Path, canvas_size: int, color: ColorMode, held_out_fraction: float, max_images: int | None = None, seed: int = 0
) -> CelebaImages:
    """Decode CelebA faces, centre-cropped and resized: uint8 ``[N, C, S, S]`` per side.

    Raises:
        DatasetError: images not found (message gives the layouts accepted and the official URL), an
            image missing from the partition file, a malformed partition line, or an image that does not
            decode (named).
    """
    source = _locate(Path(path))
    zf = zipfile.ZipFile(source.archive) if source.archive else None
    try:
        read: Callable[[str], bytes]
        if zf is not None:
            read = zf.read
        else:
            folder = Path(source.where)
            read = lambda rel: (folder / rel).read_bytes()  # noqa: E731
        partition = _read_partition(source.root)
        if partition is None:
            names = select_subset(source.names, max_images, seed)
            return CelebaImages(decode_images(names, read, source.where, canvas_size, color), None)

        unlisted = [n for n in source.names if Path(n).name not in partition]
        if unlisted:
            raise DatasetError(
                f"CelebA: {len(unlisted)} images in {source.where} have no entry in {_PARTITION} "
                f"(first: {unlisted[:3]}); use the matching partition file or remove it to split deterministically"
            )
        if len(partition) > len(source.names):
            logger.warning("CelebA: %s lists %d images, %d are present", _PARTITION, len(partition), len(source.names))
        train = [n for n in source.names if partition[Path(n).name] == 0]
        held_out = [n for n in source.names if partition[Path(n).name] != 0]
        if not train or not held_out:
            logger.warning("CelebA: the images present cover only one side of %s; splitting them deterministically", _PARTITION)
            names = select_subset(source.names, max_images, seed)
            return CelebaImages(decode_images(names, read, source.where, canvas_size, color), None)
        caps = split_caps(max_images, held_out_fraction)
        return CelebaImages(
            train=decode_images(select_subset(train, caps.train, seed), read, source.where, canvas_size, color),
            held_out=decode_images(select_subset(held_out, caps.held_out, seed), read, source.where, canvas_size, color),
        )
    finally:
        if zf is not None:
            zf.close()
