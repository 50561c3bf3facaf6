"""The digit score (issue #11): a classifier trained on the MNIST train split only, scoring generated canvases.

One classifier is trained per module on a tiny budget (a few hundred steps instead of the default two
minutes), so the thresholds on real digits are those this budget reaches with margin, not the
≥ 97% held-out accuracy of the full budget. Tests that need MNIST skip without ``$SPIRAL_DATASETS``.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from spiral.config import ColorMode, DataConfig, DatasetName, InkStyle
from spiral.data import DatasetError, load_dataset
from spiral.data.idx import encode_idx
from spiral.data.mnist import LabelledMnist, load_mnist_labelled
from spiral.learning import digits
from spiral.learning.digits import (
    DigitClassifier,
    DigitNet,
    digit_score,
    load_or_train_digit_classifier,
    train_digit_classifier,
)

CANVAS = 64  # the mnist preset's env.canvas_size
#: The tiny budget, ~13 s of one core: measured at seeds 0 and 1, 96.6-97.1% held-out accuracy and
#: 0.89 of real held-out digits confident (0.96 / 99% at 600 steps; the default 2-minute budget runs
#: more). The time cap only guards a badly overloaded machine; the step count normally stops training.
TINY_STEPS = 200
TINY_SECONDS = 90.0


class Trained(NamedTuple):
    classifier: DigitClassifier
    cache_dir: Path
    trained_on: LabelledMnist  # what load_or_train handed to the training loop
    cfg: DataConfig


@pytest.fixture(scope="module")
def mnist_cfg(datasets_dir) -> DataConfig:
    return DataConfig(name=DatasetName.MNIST, path=datasets_dir / "mnist", seed=0)


@pytest.fixture(scope="module")
def trained(mnist_cfg, tmp_path_factory) -> Trained:
    cache_dir = tmp_path_factory.mktemp("digit-cache")
    seen: list[LabelledMnist] = []
    train_on = digits._train_on

    def recording_train_on(data, canvas_size, settings):
        seen.append(data)
        return train_on(data, canvas_size, settings)

    # One intra-op thread, as tests/conftest.py sets for every test (module fixtures run outside it):
    # on the shared 2-core machine a second thread mostly waits for a busy core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(digits, "_train_on", recording_train_on)
            classifier = load_or_train_digit_classifier(
                mnist_cfg, CANVAS, cache_dir, seconds_budget=TINY_SECONDS, max_steps=TINY_STEPS
            )
    finally:
        torch.set_num_threads(threads)
    assert len(seen) == 1, "an empty cache must train exactly once"
    return Trained(classifier, cache_dir, seen[0], mnist_cfg)


@pytest.fixture(scope="module")
def held_out(trained) -> torch.Tensor:
    return load_dataset(trained.cfg, CANVAS, ColorMode.GRAYSCALE, InkStyle.WHITE_ON_BLACK).held_out


# ------------------------------------------------------------------- ranking real vs fake ---


def test_real_digits_score_far_above_noise_and_blank(trained, held_out):
    generator = torch.Generator().manual_seed(1)
    real = digit_score(trained.classifier, held_out)
    noise = digit_score(trained.classifier, torch.rand(500, 1, CANVAS, CANVAS, generator=generator))
    coarse = torch.rand(200, 1, 8, 8, generator=generator).repeat_interleave(8, -1).repeat_interleave(8, -2)
    blocks = digit_score(trained.classifier, coarse)
    blank = digit_score(trained.classifier, torch.zeros(50, 1, CANVAS, CANVAS))
    assert real.confident_fraction > 0.8, real
    assert noise.confident_fraction < 0.1, noise
    assert blocks.confident_fraction < 0.1, blocks
    assert blank.confident_fraction < 0.1, blank
    assert real.mean_max_probability > 0.85 > 0.5 > max(noise.mean_max_probability, blank.mean_max_probability)


def test_near_misses_score_below_real_digits(trained, held_out):
    real = digit_score(trained.classifier, held_out).confident_fraction
    top_halves = held_out.clone()
    top_halves[..., CANVAS // 2 :, :] = 0.0
    # Two digits side by side, each at full size: a "number", not a digit.
    left, right = held_out[:500].roll(-14, dims=-1), held_out[500:].roll(14, dims=-1)
    pairs = torch.maximum(left, right)
    assert digit_score(trained.classifier, top_halves).confident_fraction < real / 3
    assert digit_score(trained.classifier, pairs).confident_fraction < real / 3


def test_real_held_out_digits_cover_every_class(trained, held_out):
    score = digit_score(trained.classifier, held_out)
    # Each class is 8-11% of t10k; a class the classifier never recognised would read 0.
    assert score.min_class_fraction > 0.03, score.histogram
    assert score.min_class_fraction == min(score.histogram)
    assert sum(score.histogram) == pytest.approx(score.confident_fraction)


def test_black_on_white_canvases_are_inverted_before_scoring(trained, held_out):
    white_on_black = digit_score(trained.classifier, held_out)
    black_on_white = digit_score(trained.classifier, 1.0 - held_out, ink=InkStyle.BLACK_ON_WHITE)
    assert black_on_white.confident_fraction == pytest.approx(white_on_black.confident_fraction, abs=0.01)
    # Read with the wrong ink, paper-white canvases are not digits.
    assert digit_score(trained.classifier, 1.0 - held_out).confident_fraction < 0.1


def test_classifier_reports_held_out_accuracy(trained):
    assert trained.classifier.held_out_accuracy > 0.93


# ----------------------------------------------------------------------- the split it saw ---


def test_classifier_trains_on_the_loaders_train_split_only(trained):
    dataset = load_dataset(trained.cfg, CANVAS, ColorMode.GRAYSCALE, InkStyle.WHITE_ON_BLACK)
    seen = trained.trained_on
    assert (dataset.num_train, dataset.num_held_out) == (9_000, 1_000)
    assert torch.equal(seen.train, dataset.uint8("train"))
    assert torch.equal(seen.held_out, dataset.uint8("held_out"))
    assert trained.classifier.num_train == 9_000
    # No held-out image is among the training images (compared pixel for pixel, by row hash).
    train_rows = {hashlib.sha256(row.numpy().tobytes()).digest() for row in dataset.uint8("train")}
    assert not any(hashlib.sha256(row.numpy().tobytes()).digest() in train_rows for row in dataset.uint8("held_out"))
    # The fingerprint the classifier carries is that of exactly these train images and labels.
    assert trained.classifier.train_sha256 == digits.train_split_fingerprint(seen, CANVAS)
    swapped = seen._replace(train=torch.cat([seen.held_out[:1], seen.train[1:]]))
    assert digits.train_split_fingerprint(swapped, CANVAS) != trained.classifier.train_sha256


def test_labels_follow_the_loaders_split(trained):
    labelled = trained.trained_on
    counts = torch.bincount(labelled.train_labels, minlength=10) + torch.bincount(labelled.held_out_labels, minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # t10k's published counts
    assert not labelled.official_split


# ------------------------------------------------------------------------------- caching ---


def test_second_call_loads_the_cache_with_weights_only(trained, monkeypatch, held_out):
    files = list(trained.cache_dir.glob("*.pt"))
    assert len(files) == 1 and files[0].stem.startswith(f"v{digits.CODE_VERSION}-c{CANVAS}-")
    load_calls = []
    real_load = torch.load

    def spying_load(*args, **kwargs):
        load_calls.append(kwargs)
        return real_load(*args, **kwargs)

    def refuse_training(*args, **kwargs):
        raise AssertionError("a cached classifier was trained again")

    monkeypatch.setattr(torch, "load", spying_load)
    monkeypatch.setattr(digits, "_train_on", refuse_training)
    again = load_or_train_digit_classifier(
        trained.cfg, CANVAS, trained.cache_dir, seconds_budget=TINY_SECONDS, max_steps=TINY_STEPS
    )
    assert [call.get("weights_only") for call in load_calls] == [True]
    assert again.train_sha256 == trained.classifier.train_sha256
    assert again.held_out_accuracy == trained.classifier.held_out_accuracy
    batch = held_out[:64]
    torch.testing.assert_close(again.probabilities(batch), trained.classifier.probabilities(batch))


def test_other_training_settings_do_not_share_a_cache_file(trained, monkeypatch):
    trainings = []

    def fake_train_on(data, canvas_size, settings):
        trainings.append(settings)
        return trained.classifier

    monkeypatch.setattr(digits, "_train_on", fake_train_on)
    load_or_train_digit_classifier(trained.cfg, CANVAS, trained.cache_dir, seconds_budget=120.0)
    assert trainings == [digits.TrainingSettings(120.0, None, 0)]
    assert len(list(trained.cache_dir.glob("*.pt"))) == 2


def test_an_unreadable_cache_file_is_replaced(trained, monkeypatch, tmp_path):
    trainings = []

    def fake_train_on(data, canvas_size, settings):
        trainings.append(settings)
        return trained.classifier

    monkeypatch.setattr(digits, "_train_on", fake_train_on)
    key = digits.digit_cache_key(trained.classifier.train_sha256, CANVAS, digits.TrainingSettings(5.0, 3, 0))
    (tmp_path / f"{key}.pt").write_bytes(b"half a file")
    load_or_train_digit_classifier(trained.cfg, CANVAS, tmp_path, seconds_budget=5.0, max_steps=3)
    assert len(trainings) == 1
    state = torch.load(tmp_path / f"{key}.pt", weights_only=True)
    assert DigitClassifier.from_state(state).train_sha256 == trained.classifier.train_sha256
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file is renamed into place"


# ------------------------------------------------ the score's arithmetic (no dataset needed) ---


class _FixedClassifier:
    """Stands in for a DigitClassifier: returns the given [N, 11] probabilities."""

    def __init__(self, probabilities: torch.Tensor) -> None:
        self._probabilities = probabilities

    def probabilities(self, canvases, ink=InkStyle.WHITE_ON_BLACK):
        return self._probabilities


def test_histogram_counts_confident_samples_over_all_samples():
    probabilities = torch.zeros(5, 11)
    probabilities[0, 3] = 0.95  # confident 3
    probabilities[1, 3] = 0.90  # confident 3 (p ≥ 0.9 counts)
    probabilities[2, 7] = 0.89  # unsure 7: in no class
    probabilities[3, 10] = 1.0  # not a digit: max digit probability 0
    probabilities[4, 0] = 0.99  # confident 0
    probabilities[:, 10] += 1.0 - probabilities.sum(dim=1)
    score = digit_score(_FixedClassifier(probabilities), torch.zeros(5, 1, 8, 8))
    assert score.confident_fraction == pytest.approx(3 / 5)
    assert score.histogram == pytest.approx((0.2, 0, 0, 0.4, 0, 0, 0, 0, 0, 0))
    assert score.min_class_fraction == 0.0
    assert score.mean_max_probability == pytest.approx((0.95 + 0.90 + 0.89 + 0.0 + 0.99) / 5)
    assert score.as_record() == {
        "eval/digit_confident": pytest.approx(0.6),
        "eval/digit_min_class": 0.0,
        "eval/digit_mean_max_probability": pytest.approx(score.mean_max_probability),
    }


def _untrained() -> DigitClassifier:
    return DigitClassifier(DigitNet(), canvas_size=CANVAS, held_out_accuracy=0.0, num_train=0, train_sha256="0" * 64)


@pytest.mark.parametrize(
    ("canvases", "kwargs", "want"),
    [
        (torch.zeros(4, 8, 8), {}, r"\[N, C, H, W\] tensor with C = 1 or 3, got \(4, 8, 8\)"),
        (torch.zeros(4, 2, 8, 8), {}, r"C = 1 or 3, got \(4, 2, 8, 8\)"),
        (torch.zeros(4, 1, 8, 8, dtype=torch.uint8), {}, r"float in \[0, 1\], got dtype torch.uint8"),
        (torch.full((4, 1, 8, 8), 2.0), {}, r"lie in \[0, 1\], got min 2 and max 2"),
        (torch.full((4, 1, 8, 8), float("nan")), {}, r"lie in \[0, 1\]"),
        (torch.zeros(0, 1, 8, 8), {}, r"canvases is empty \(N = 0\)"),
        (torch.zeros(4, 1, 8, 8), {"threshold": 0.5}, r"threshold must be in \(0.5, 1\].*got 0.5"),
        (torch.zeros(4, 1, 8, 8), {"ink": "red"}, r"ink must be one of \['white_on_black', 'black_on_white'\], got 'red'"),
    ],
    ids=["rank-3", "two-channels", "uint8", "above-one", "nan", "empty", "threshold-half", "unknown-ink"],
)
def test_digit_score_rejects_bad_input_naming_it(canvases, kwargs, want):
    with pytest.raises(ValueError, match=want):
        digit_score(_untrained(), canvases, **kwargs)


def test_any_canvas_size_and_rgb_canvases_are_scored():
    classifier = _untrained()
    for canvases in (torch.rand(3, 1, 28, 28), torch.rand(3, 1, 128, 128), torch.rand(3, 3, 64, 64)):
        probabilities = classifier.probabilities(canvases)
        assert probabilities.shape == (3, 11)
        torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(3))


def test_classifier_state_round_trips_and_refuses_another_code_version():
    classifier = _untrained()
    state = classifier.state()
    again = DigitClassifier.from_state(state)
    canvases = torch.rand(4, 1, 32, 32)
    torch.testing.assert_close(again.probabilities(canvases), classifier.probabilities(canvases))
    with pytest.raises(ValueError, match=rf"code_version 0, this code reads {digits.CODE_VERSION}"):
        DigitClassifier.from_state({**state, "code_version": 0})


@pytest.mark.parametrize(
    ("kwargs", "want"),
    [
        ({"seconds_budget": 0}, r"seconds_budget must be a positive number of seconds, got 0"),
        ({"seconds_budget": float("inf")}, r"seconds_budget must be a positive number of seconds, got inf"),
        ({"max_steps": 0}, r"max_steps must be a positive integer or None .*got 0"),
    ],
    ids=["zero-seconds", "infinite-seconds", "zero-steps"],
)
def test_training_budget_is_validated_before_loading(kwargs, want, tmp_path):
    cfg = DataConfig(name=DatasetName.MNIST, path=tmp_path / "nowhere")
    with pytest.raises(ValueError, match=want):
        train_digit_classifier(cfg, CANVAS, **kwargs)


# ----------------------------------------------------- labelled MNIST (synthetic IDX files) ---


def _write_idx_gz(path: Path, array: np.ndarray) -> None:
    path.write_bytes(gzip.compress(encode_idx(array)))


def _fake_mnist(folder: Path, n_train: int | None, n_test: int) -> Path:
    """Each image is one flat grey level whose last digit is its label, so labels can be checked from pixels."""
    folder.mkdir()
    for prefix, n in (("t10k", n_test), ("train", n_train)):
        if n is None:
            continue
        levels = (np.arange(n) * 7 % 250).astype(np.uint8)
        _write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", np.repeat(levels, 28 * 28).reshape(n, 28, 28))
        _write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", levels % 10)
    return folder


@pytest.mark.parametrize(("n_train", "max_images"), [(None, None), (None, 40), (120, None), (120, 50)], ids=["t10k-split", "t10k-capped", "official", "official-capped"])
def test_labelled_mnist_matches_the_loaders_split(tmp_path, n_train, max_images):
    cfg = DataConfig(name=DatasetName.MNIST, path=_fake_mnist(tmp_path / "mnist", n_train, 60), seed=3, max_images=max_images)
    labelled = load_mnist_labelled(cfg, 16)
    dataset = load_dataset(cfg, 16, ColorMode.GRAYSCALE, InkStyle.WHITE_ON_BLACK)
    assert torch.equal(labelled.train, dataset.uint8("train"))
    assert torch.equal(labelled.held_out, dataset.uint8("held_out"))
    assert labelled.official_split is (n_train is not None)
    for images, labels in ((labelled.train, labelled.train_labels), (labelled.held_out, labelled.held_out_labels)):
        assert labels.dtype == torch.int64 and labels.shape == (images.shape[0],)
        assert torch.equal(images[:, 0, 0, 0].long() % 10, labels)


def test_labelled_mnist_names_a_missing_label_file(tmp_path):
    folder = _fake_mnist(tmp_path / "mnist", None, 20)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    cfg = DataConfig(name=DatasetName.MNIST, path=folder)
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz is missing in .* pairs with t10k-images-idx3-ubyte.gz"):
        load_mnist_labelled(cfg, 16)


def test_labelled_mnist_refuses_other_datasets():
    with pytest.raises(DatasetError, match=r"data.name must be 'mnist' for labelled MNIST images, got 'shapes'"):
        load_mnist_labelled(DataConfig(name=DatasetName.SHAPES), 16)
