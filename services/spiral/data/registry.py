"""``load_dataset``: one entry point from a :class:`~spiral.config.DataConfig` to an :class:`ImageDataset`.

Each dataset has a loader that returns uint8 images already resized to the canvas, plus an official
held-out side when the dataset has one; this module then splits (when needed), converts the colour
mode and the ink style, and wraps the result. Called by the actors (conditional targets) and the
discriminator learner (real images).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from spiral.config import ColorMode, DataConfig, DatasetName, InkStyle
from spiral.data.base import DatasetError, ImageDataset, _to_uint8
from spiral.data.celeba import read_celeba
from spiral.data.folder import read_image_folder, select_subset
from spiral.data.mnist import read_mnist
from spiral.data.omniglot import read_omniglot_archive, resolve_omniglot_archives
from spiral.data.shapes import generate_shapes
from spiral.data.splits import split_caps, split_indices
from spiral.data.transforms import apply_ink, convert_color, grayscale_arrays_to_canvas

__all__ = ["load_dataset"]

logger = logging.getLogger(__name__)

_MIN_CANVAS = 8


class _Loaded(NamedTuple):
    """What a loader hands back: uint8 ``[N, C, S, S]`` images in their native ink."""

    train: torch.Tensor
    held_out: torch.Tensor | None  # None: split ``train`` by the seeded permutation
    native_ink: InkStyle | None  # None: natural images, never inverted
    label: str  # dataset name shown in logs and on the ImageDataset


class _Request(NamedTuple):
    cfg: DataConfig
    canvas_size: int
    color: ColorMode
    max_images: int | None
    num_shapes: int


def _require_path(cfg: DataConfig) -> Path:
    # DataConfig already refuses a file dataset without a path (the rule lives in spiral.config).
    assert cfg.path is not None, cfg
    return Path(cfg.path).expanduser()


def _reject_subset(cfg: DataConfig) -> None:
    if cfg.subset is not None:
        raise DatasetError(f"data.subset is not used by dataset {cfg.name.value!r} (got {cfg.subset!r}); leave it unset")


def _cap_rows(images: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    keep = select_subset(range(images.shape[0]), cap, seed)
    return images if len(keep) == images.shape[0] else images[keep]


# ------------------------------------------------------------------------------ loaders ---


def _load_shapes(req: _Request) -> _Loaded:
    if req.cfg.path is not None:
        logger.warning("data.path %s is ignored: dataset 'shapes' is generated, not read", req.cfg.path)
    _reject_subset(req.cfg)
    images = generate_shapes(req.num_shapes, req.canvas_size, req.cfg.seed)
    return _Loaded(torch.from_numpy(images).unsqueeze(1), None, InkStyle.WHITE_ON_BLACK, "shapes")


def _load_mnist(req: _Request) -> _Loaded:
    _reject_subset(req.cfg)
    path = _require_path(req.cfg)
    mnist = read_mnist(path)
    seed, size = req.cfg.seed, req.canvas_size
    if mnist.train is None:
        test = _cap_rows(mnist.test, req.max_images, seed)
        return _Loaded(grayscale_arrays_to_canvas(test, size), None, InkStyle.WHITE_ON_BLACK, "mnist")
    caps = split_caps(req.max_images, req.cfg.held_out_fraction)
    train = grayscale_arrays_to_canvas(_cap_rows(mnist.train, caps.train, seed), size)
    held_out = grayscale_arrays_to_canvas(_cap_rows(mnist.test, caps.held_out, seed), size)
    return _Loaded(train, held_out, InkStyle.WHITE_ON_BLACK, "mnist")


def _load_omniglot(req: _Request) -> _Loaded:
    path = _require_path(req.cfg)
    archives = resolve_omniglot_archives(path, req.cfg.subset)
    seed, size, color = req.cfg.seed, req.canvas_size, req.color
    label = f"omniglot:{archives.train.stem}"
    if archives.held_out is None:
        train = read_omniglot_archive(archives.train, size, color, req.max_images, seed)
        return _Loaded(train, None, InkStyle.BLACK_ON_WHITE, label)
    caps = split_caps(req.max_images, req.cfg.held_out_fraction)
    train = read_omniglot_archive(archives.train, size, color, caps.train, seed)
    held_out = read_omniglot_archive(archives.held_out, size, color, caps.held_out, seed)
    return _Loaded(train, held_out, InkStyle.BLACK_ON_WHITE, f"{label}:{archives.held_out.stem}")


def _load_celeba(req: _Request) -> _Loaded:
    _reject_subset(req.cfg)
    path = _require_path(req.cfg)
    faces = read_celeba(path, req.canvas_size, req.color, req.cfg.held_out_fraction, req.max_images, req.cfg.seed)
    return _Loaded(faces.train, faces.held_out, None, "celeba")


def _load_folder(req: _Request) -> _Loaded:
    # data.subset declares the native ink of line art; unset means natural images (never inverted).
    subset = req.cfg.subset
    valid = [s.value for s in InkStyle]
    if subset is not None and subset not in valid:
        raise DatasetError(
            f"data.subset {subset!r} is not valid for dataset 'folder': set it to the images' own ink, one of "
            f"{valid}, to convert line art to env.ink, or leave it unset for natural images (never inverted)"
        )
    native = InkStyle(subset) if subset is not None else None
    path = _require_path(req.cfg)
    background = 0 if native is InkStyle.WHITE_ON_BLACK else 255
    images = read_image_folder(path, req.canvas_size, req.color, background, req.max_images, req.cfg.seed)
    return _Loaded(images, None, native, f"folder:{path.name}")


def _load_mujoco_scenes(req: _Request) -> _Loaded:
    _reject_subset(req.cfg)
    path = _require_path(req.cfg)
    from spiral.data.mujoco_scenes import load_mujoco_scenes  # lazy: keeps MuJoCo out of every other import

    images = _to_uint8(load_mujoco_scenes(path, req.canvas_size), f"MuJoCo Scenes at {path}")
    if images.shape[-1] != req.canvas_size or images.shape[-2] != req.canvas_size:
        raise DatasetError(
            f"MuJoCo Scenes at {path} are {images.shape[-2]}×{images.shape[-1]} but the canvas is "
            f"{req.canvas_size}×{req.canvas_size}; render them at env.canvas_size"
        )
    images = images[select_subset(range(images.shape[0]), req.max_images, req.cfg.seed)]
    return _Loaded(images, None, None, "mujoco-scenes")


_LOADERS: dict[DatasetName, Callable[[_Request], _Loaded]] = {
    DatasetName.SHAPES: _load_shapes,
    DatasetName.MNIST: _load_mnist,
    DatasetName.OMNIGLOT: _load_omniglot,
    DatasetName.CELEBA: _load_celeba,
    DatasetName.FOLDER: _load_folder,
    DatasetName.MUJOCO_SCENES: _load_mujoco_scenes,
}


# ------------------------------------------------------------------------------ public ---


def load_dataset(
    cfg: DataConfig,
    canvas_size: int,
    color: ColorMode,
    ink: InkStyle,
    *,
    max_images: int | None = None,
    num_shapes: int | None = None,
) -> ImageDataset:
    """Load, resize, split and convert the dataset ``cfg`` names.

    Args:
        cfg: which dataset, where, the held-out fraction and the split seed.
        canvas_size: side of the output images in pixels (``env.canvas_size``).
        color: 1 channel (grayscale) or 3 (RGB).
        ink: the ink style wanted; line-art datasets (shapes, MNIST, Omniglot, a folder whose
            ``data.subset`` declares its ink) are inverted when theirs differs. Photos are left alone.
        max_images: read at most this many images (a seeded choice, made before decoding), shared
            between the sides of an official split in the held-out ratio. ``None``: all of them.
        num_shapes: images generated for ``shapes`` (train + held-out).
        (Both default to ``cfg.max_images`` / ``cfg.num_shapes``.)

    Returns:
        An :class:`ImageDataset` whose train and held-out sides never share an image.

    Raises:
        DatasetError: missing or corrupt files (named, with where to get them), a bad ``data.subset``,
            a missing ``data.path``, or bad sizes.
    """
    if max_images is None:
        max_images = cfg.max_images
    if num_shapes is None:
        num_shapes = cfg.num_shapes
    if canvas_size < _MIN_CANVAS:
        raise DatasetError(f"canvas_size must be ≥ {_MIN_CANVAS}, got {canvas_size}")
    if max_images is not None and max_images < 2:
        raise DatasetError(f"max_images must be ≥ 2 (one train and one held-out image) or None, got {max_images}")
    if num_shapes < 2:
        raise DatasetError(f"num_shapes must be ≥ 2, got {num_shapes}")
    color, ink = ColorMode(color), InkStyle(ink)
    started = time.perf_counter()
    loaded = _LOADERS[cfg.name](_Request(cfg, canvas_size, color, max_images, num_shapes))

    train, held_out = loaded.train, loaded.held_out
    if held_out is None:
        split = split_indices(train.shape[0], cfg.held_out_fraction, cfg.seed)
        train, held_out = train[split.train], train[split.held_out]
    if loaded.native_ink is None and ink is not InkStyle.WHITE_ON_BLACK:
        logger.info("dataset %s holds natural images: env.ink %s does not apply, images kept as they are", loaded.label, ink.value)
    train = apply_ink(convert_color(train, color), loaded.native_ink, ink)
    held_out = apply_ink(convert_color(held_out, color), loaded.native_ink, ink)
    dataset = ImageDataset(loaded.label, train, held_out)
    logger.info(
        "dataset %s: %d train + %d held-out images, %d×%d×%d, %s, loaded in %.2f s",
        dataset.name,
        dataset.num_train,
        dataset.num_held_out,
        dataset.num_channels,
        canvas_size,
        canvas_size,
        ink.value,
        time.perf_counter() - started,
    )
    return dataset
