"""MNIST from its four original IDX gzip files (LeCun, Cortes & Burges).

Official split: the 60,000 ``train`` images train, the 10,000 ``t10k`` images are held out. When the
train images are absent (as on our CI machines, which carry only t10k), the t10k images are split
deterministically instead — logged at WARNING, since a run then trains on 9,000 images, not 60,000.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from spiral.data.base import DatasetError
from spiral.data.idx import read_idx

__all__ = ["MNIST_FILES", "MNIST_URL", "MnistImages", "read_mnist"]

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
