"""spiral.data on the real distribution files (MNIST t10k, Omniglot small1/small2) via ``datasets_dir``."""

from __future__ import annotations

import numpy as np
import torch

from spiral.config import ColorMode, DataConfig, DatasetName, InkStyle
from spiral.data import load_dataset
from spiral.data.idx import read_idx
from spiral.data.mnist import read_mnist


def test_real_mnist_t10k_and_labels(datasets_dir):
    mnist = read_mnist(datasets_dir / "mnist")
    assert mnist.train is None  # the train images are not distributed to these machines
    assert mnist.test.shape == (10_000, 28, 28) and mnist.test.dtype == np.uint8
    counts = np.bincount(mnist.test_labels, minlength=10)
    assert counts.sum() == 10_000 and counts.min() > 850 and counts.max() < 1200  # published: 892..1135
    assert 0.12 < mnist.test.mean() / 255 < 0.145  # the t10k mean is 0.1325
    assert (mnist.test[:, 0, :] == 0).all()  # white digits on a black border
    train_labels = read_idx(datasets_dir / "mnist" / "train-labels-idx1-ubyte.gz", expected_ndim=1)
    assert train_labels.shape == (60_000,) and set(np.unique(train_labels)) == set(range(10))


def test_real_mnist_dataset_splits_t10k(datasets_dir):
    cfg = DataConfig(name=DatasetName.MNIST, path=datasets_dir / "mnist", seed=0)
    ds = load_dataset(cfg, 64, ColorMode.GRAYSCALE, InkStyle.WHITE_ON_BLACK)
    assert (ds.num_train, ds.num_held_out) == (9_000, 1_000)
    assert ds.train.shape == (9_000, 1, 64, 64)
    assert 0.11 < ds.train.mean().item() < 0.15
    inverted = load_dataset(cfg, 64, ColorMode.GRAYSCALE, InkStyle.BLACK_ON_WHITE)
    assert torch.equal(inverted.uint8(), 255 - ds.uint8())


def test_real_omniglot_small1_trains_and_small2_is_held_out(datasets_dir):
    cfg = DataConfig(
        name=DatasetName.OMNIGLOT, path=datasets_dir / "omniglot", subset="images_background_small1:images_background_small2"
    )
    ds = load_dataset(cfg, 64, ColorMode.GRAYSCALE, InkStyle.WHITE_ON_BLACK)
    assert (ds.num_train, ds.num_held_out) == (2_720, 3_120)
    # ~8% of Omniglot's 105×105 pixels are stroke; white on black after conversion
    assert 0.04 < ds.train.mean().item() < 0.15 and 0.04 < ds.held_out.mean().item() < 0.15
    small1 = load_dataset(
        DataConfig(name=DatasetName.OMNIGLOT, path=datasets_dir / "omniglot", subset="images_background_small1"),
        64,
        ColorMode.GRAYSCALE,
        InkStyle.BLACK_ON_WHITE,
    )
    assert (small1.num_train, small1.num_held_out) == (2_448, 272)
    assert small1.train.mean().item() > 0.85  # native black strokes on white paper
