"""MNIST from its four original IDX gzip files (LeCun, Cortes & Burges).

Official split: the 60,000 ``train`` images train, the 10,000 ``t10k`` images are held out. When the
train images are absent (as on our CI machines, which carry only t10k), the t10k images are split
deterministically instead — logged at WARNING, since a run then trains on 9,000 images, not 60,000.

:func:`load_mnist_labelled` gives the same two sides as ``load_dataset`` with their labels, for the
digit score's classifier (``spiral.learning.digits``), which must train on the train side only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from spiral.config import DataConfig, DatasetName
from spiral.data.base import DatasetError
from spiral.data.folder import select_subset
from spiral.data.idx import read_idx
from spiral.data.splits import split_caps, split_indices
from spiral.data.transforms import grayscale_arrays_to_canvas

__all__ = ["MNIST_FILES", "MNIST_URL", "LabelledMnist", "MnistImages", "load_mnist_labelled", "read_mnist"]

logger = logging.getLogger(__name__)

MNIST_URL = "https://yann.lecun.com/exdb/mnist/"
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
MNIST_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


class MnistImages(NamedTuple):
    """Native 28×28 uint8 images, white digits on black."""

    train: np.ndarray | None  # [60000, 28, 28], None when train-images-idx3-ubyte.gz is absent
    train_labels: np.ndarray | None  # [60000]
    test: np.ndarray  # [10000, 28, 28]
    test_labels: np.ndarray | None  # [10000], None when absent


def _find(folder: Path, name: str) -> Path | None:
    """The gzipped file, or its decompressed twin (``gunzip`` drops the ``.gz``)."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _read_pair(images_path: Path, labels_path: Path | None) -> tuple[np.ndarray, np.ndarray | None]:
    images = read_idx(images_path, expected_ndim=3, expected_dtype=np.uint8)
    if labels_path is None:
        return images, None
    labels = read_idx(labels_path, expected_ndim=1, expected_dtype=np.uint8)
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(
            f"{labels_path} holds {labels.shape[0]} labels but {images_path} holds {images.shape[0]} images; "
            "the pair must match (mixed train/t10k files?)"
        )
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{labels_path} holds label {int(labels.max())}; MNIST labels are 0..9")
    return images, labels


def read_mnist(path: Path) -> MnistImages:
    """Read whichever MNIST files are in ``path``; the t10k images are required.

    Raises:
        DatasetError: the folder or the t10k images are missing (the message lists the four files and
            where to get them), or any file present is corrupt.
    """
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(
            f"MNIST folder {path} does not exist: data.path must be a folder holding {', '.join(MNIST_FILES)} "
            f"(from {MNIST_URL}, or run `spiral data download mnist --dest {path}`)"
        )
    test_images = _find(path, TEST_IMAGES)
    if test_images is None:
        present = sorted(p.name for p in path.iterdir())
        raise DatasetError(
            f"MNIST: {TEST_IMAGES} is missing in {path} (found: {present or 'nothing'}). Expected the original files "
            f"{', '.join(MNIST_FILES)} (t10k images required, train images optional) from {MNIST_URL}; "
            f"`spiral data download mnist --dest {path}` fetches them"
        )
    test, test_labels = _read_pair(test_images, _find(path, TEST_LABELS))
    train_images = _find(path, TRAIN_IMAGES)
    if train_images is None:
        logger.warning(
            "MNIST: %s is missing in %s: splitting the %d t10k images into train and held-out instead of the "
            "official 60,000/10,000 split",
            TRAIN_IMAGES,
            path,
            test.shape[0],
        )
        return MnistImages(train=None, train_labels=None, test=test, test_labels=test_labels)
    train, train_labels = _read_pair(train_images, _find(path, TRAIN_LABELS))
    if train.shape[1:] != test.shape[1:]:
        raise DatasetError(f"MNIST: {train_images} images are {train.shape[1:]} but {test_images} images are {test.shape[1:]}")
    return MnistImages(train=train, train_labels=train_labels, test=test, test_labels=test_labels)


class LabelledMnist(NamedTuple):
    """Both sides of the split ``load_dataset`` makes, with labels: white digits on black, at the canvas size."""

    train: torch.Tensor  # uint8 [N, 1, S, S], the images load_dataset(...).uint8("train") holds, in the same order
    train_labels: torch.Tensor  # int64 [N], 0..9
    held_out: torch.Tensor  # uint8 [M, 1, S, S], equal to load_dataset(...).uint8("held_out")
    held_out_labels: torch.Tensor  # int64 [M]
    official_split: bool  # True: 60,000 train / 10,000 t10k; False: the t10k images split by data.seed


def _labels_of(labels: np.ndarray | None, images_file: str, path: Path) -> np.ndarray:
    if labels is None:
        labels_file = TRAIN_LABELS if images_file == TRAIN_IMAGES else TEST_LABELS
        raise DatasetError(
            f"MNIST: {labels_file} is missing in {path} but labelled images were asked for "
            f"(it pairs with {images_file}); get it from {MNIST_URL} or with `spiral data download mnist --dest {path}`"
        )
    return labels


def load_mnist_labelled(cfg: DataConfig, canvas_size: int, *, max_images: int | None = None) -> LabelledMnist:
    """The images and labels of the train and held-out sides ``load_dataset(cfg, canvas_size, ...)`` makes.

    Same files, same seeded caps and split, same resize, so image ``i`` of ``train`` is image ``i`` of
    ``load_dataset(cfg, canvas_size, ColorMode.GRAYSCALE, InkStyle.WHITE_ON_BLACK).train`` (a test
    pins that). Ink and colour conversion are left out: labels do not depend on them.

    Args:
        cfg: an ``mnist`` data section (path, held-out fraction, seed, max_images).
        canvas_size: side of the output images in pixels (``env.canvas_size``).
        max_images: as in ``load_dataset``; defaults to ``cfg.max_images``.

    Raises:
        DatasetError: ``cfg`` is not an MNIST section, or files are missing or corrupt (including the
            label file that pairs with the images used).
    """
    if cfg.name is not DatasetName.MNIST:
        raise DatasetError(f"data.name must be 'mnist' for labelled MNIST images, got {cfg.name.value!r}")
    assert cfg.path is not None, cfg  # DataConfig refuses an mnist section without a path
    if max_images is None:
        max_images = cfg.max_images
    path = Path(cfg.path).expanduser()
    mnist = read_mnist(path)
    seed = cfg.seed
    if mnist.train is None:
        # The loader's fallback: cap the t10k images, then split them by the seeded permutation.
        keep = select_subset(range(mnist.test.shape[0]), max_images, seed)
        images, labels = mnist.test[keep], _labels_of(mnist.test_labels, TEST_IMAGES, path)[keep]
        split = split_indices(images.shape[0], cfg.held_out_fraction, seed)
        train_np, train_labels = images[split.train.numpy()], labels[split.train.numpy()]
        held_np, held_labels = images[split.held_out.numpy()], labels[split.held_out.numpy()]
        official = False
    else:
        caps = split_caps(max_images, cfg.held_out_fraction)
        train_keep = select_subset(range(mnist.train.shape[0]), caps.train, seed)
        held_keep = select_subset(range(mnist.test.shape[0]), caps.held_out, seed)
        train_np, train_labels = mnist.train[train_keep], _labels_of(mnist.train_labels, TRAIN_IMAGES, path)[train_keep]
        held_np, held_labels = mnist.test[held_keep], _labels_of(mnist.test_labels, TEST_IMAGES, path)[held_keep]
        official = True
    return LabelledMnist(
        train=grayscale_arrays_to_canvas(train_np, canvas_size),
        train_labels=torch.from_numpy(train_labels.astype(np.int64)),
        held_out=grayscale_arrays_to_canvas(held_np, canvas_size),
        held_out_labels=torch.from_numpy(held_labels.astype(np.int64)),
        official_split=official,
    )
