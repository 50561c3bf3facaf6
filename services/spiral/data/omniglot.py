"""Omniglot (Lake et al.) read straight from its distributed zip archives.

Each archive holds ``<archive>/<alphabet>/<characterNN>/<id>_<drawer>.png``: 105×105 1-bit PNGs,
black strokes on white. Which archives to use is set by ``data.subset``:

- ``"A"`` — train on archive ``A`` (e.g. ``images_background_small1``) and hold out a deterministic
  ``data.held_out_fraction`` of it;
- ``"A:B"`` — train on all of ``A``, hold out all of ``B`` (the one-shot experiments' protocol:
  ``images_background_small1:images_background_small2``, or ``images_background:images_evaluation``);
- unset — ``images_background`` for training and ``images_evaluation`` held out (the official split),
  or a split of ``images_background`` when the evaluation archive is absent.

``data.path`` is the folder holding the archives, or one archive itself (then ``subset`` stays unset).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import NamedTuple

import torch

from spiral.config import ColorMode
from spiral.data.base import DatasetError
from spiral.data.folder import decode_images, select_subset

__all__ = ["OMNIGLOT_ARCHIVES", "OMNIGLOT_URL", "OmniglotArchives", "read_omniglot_archive", "resolve_omniglot_archives"]

OMNIGLOT_URL = "https://github.com/brendenlake/omniglot/tree/master/python"
OMNIGLOT_ARCHIVES = ("images_background", "images_evaluation", "images_background_small1", "images_background_small2")


class OmniglotArchives(NamedTuple):
    train: Path
    held_out: Path | None  # None: split ``train`` deterministically


def _archive(folder: Path, name: str) -> Path:
    name = name.strip().removesuffix(".zip")
    if not name:
        raise DatasetError(f"data.subset names an empty Omniglot archive; valid: {', '.join(OMNIGLOT_ARCHIVES)}")
    path = folder / f"{name}.zip"
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("*.zip"))
        raise DatasetError(
            f"Omniglot archive {path.name} is missing in {folder} (found: {found or 'no zip archives'}). "
            f"The archives are {', '.join(a + '.zip' for a in OMNIGLOT_ARCHIVES)} from {OMNIGLOT_URL}; "
            f"`spiral data download omniglot --dest {folder}` fetches them"
        )
    return path


def resolve_omniglot_archives(path: Path, subset: str | None) -> OmniglotArchives:
    """Which archive trains and which (if any) is held out, per the module docstring.

    Raises:
        DatasetError: a missing folder or archive (listing what is there and where to get them), or a
            malformed ``subset``.
    """
    path = Path(path)
    if path.is_file():
        if subset:
            raise DatasetError(
                f"data.path {path} is a single Omniglot archive, so data.subset must be unset (got {subset!r}); "
                "point data.path at the folder to choose archives by name"
            )
        return OmniglotArchives(train=path, held_out=None)
    if not path.is_dir():
        raise DatasetError(
            f"Omniglot path {path} does not exist: data.path must be a folder holding the archives "
            f"{', '.join(a + '.zip' for a in OMNIGLOT_ARCHIVES)} (from {OMNIGLOT_URL}) or one of them"
        )
    if subset is None:
        held_out = path / "images_evaluation.zip"
        return OmniglotArchives(train=_archive(path, "images_background"), held_out=held_out if held_out.is_file() else None)
    parts = subset.split(":")
    if len(parts) == 1:
        return OmniglotArchives(train=_archive(path, parts[0]), held_out=None)
    if len(parts) == 2:
        train, held_out = _archive(path, parts[0]), _archive(path, parts[1])
        if train.resolve() == held_out.resolve():
            raise DatasetError(f"data.subset {subset!r} trains and holds out the same archive; name two different ones")
        return OmniglotArchives(train=train, held_out=held_out)
    raise DatasetError(
        f"data.subset {subset!r} is not an Omniglot subset: use 'ARCHIVE' or 'TRAIN_ARCHIVE:HELD_OUT_ARCHIVE' "
        f"with archives among {', '.join(OMNIGLOT_ARCHIVES)}"
    )


def read_omniglot_archive(
    archive: Path, canvas_size: int, color: ColorMode, max_images: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Every PNG in ``archive`` (sorted by member name), resized: uint8 ``[N, C, S, S]``, black on white.

    Raises:
        DatasetError: not a readable zip, no PNG inside, or a member that fails its CRC or does not decode
            (named in the message).
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise DatasetError(
            f"Omniglot archive {archive} is not a readable zip file ({err}): truncated or damaged download? "
            f"Fetch it again from {OMNIGLOT_URL}"
        ) from None
    with zf:
        members = sorted(info.filename for info in zf.infolist() if not info.is_dir() and info.filename.lower().endswith(".png"))
        if not members:
            raise DatasetError(f"Omniglot archive {archive} holds no PNG images (expected alphabet/character/*.png)")
        members = select_subset(members, max_images, seed)
        return decode_images(members, zf.read, str(archive), canvas_size, color, background=255)
