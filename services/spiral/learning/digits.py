"""The digit score: how many generated MNIST samples a digit classifier recognises, and of which classes.

Unconditional MNIST generation has no target to compare a sample with, so it is judged the way GAN
papers judge it: a small CNN trained on the MNIST *train* split only (never the held-out images)
classifies each generated canvas. :func:`digit_score` reports the fraction classified with p ≥ 0.9
and the per-class histogram of those confident samples (mode coverage). A good generator reaches
≥ 60% of 1,000 samples confident with every class ≥ 3%.

The classifier has an 11th class, *not a digit*, trained on synthetic negatives (blank and constant
canvases, noise, blobs, random scribbles, two digits side by side, shuffled digit quadrants). A
plain 10-way softmax gives uniform noise or a blank canvas a confident "8" or "1"; with a reject
class those get a low digit probability, so the score ranks real digits far above noise and
near-misses. Positives are augmented (shift, scale, rotation, shear; for half of them also stroke
thickness, hardness and intensity) because painted strokes look slightly different from pen digits.

Training takes ≤ 2 minutes on 2 CPU cores (measured: 99.0% held-out accuracy on the 9,000 / 1,000
t10k split after 600 steps, ~40 s of one core); :func:`load_or_train_digit_classifier` caches the weights
under ``~/.cache/spiral/digits/<key>.pt`` (``$XDG_CACHE_HOME`` if set), keyed by the train split's
bytes, the canvas size, the training settings and :data:`CODE_VERSION`. Cache files are local
artefacts, never committed.

Called by the evaluator and the ``spiral eval`` command (wired by the learning lead); nothing here
reads a run's config beyond the ``data`` section and the canvas size.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from spiral.config import DataConfig, InkStyle
from spiral.data.mnist import LabelledMnist, load_mnist_labelled

__all__ = [
    "CODE_VERSION",
    "CONFIDENCE_THRESHOLD",
    "DigitClassifier",
    "DigitNet",
    "DigitScore",
    "TrainingSettings",
    "default_cache_dir",
    "digit_cache_key",
    "digit_score",
    "load_or_train_digit_classifier",
    "train_digit_classifier",
    "train_split_fingerprint",
]

logger = logging.getLogger(__name__)

#: Bump when the network, the preprocessing or the training recipe changes: it is part of the cache
#: key, so stale weights are never loaded into a changed network.
CODE_VERSION = 1
#: A sample counts as a recognised digit when the classifier gives its class at least this probability.
CONFIDENCE_THRESHOLD = 0.9
NUM_DIGITS = 10
#: Index of the reject class in the network's 11 outputs.
NOT_A_DIGIT = NUM_DIGITS
#: Side the canvases are resized to before classification: 64×64 canvases halve exactly, and MNIST's
#: 28×28 digits lose nothing at 32×32.
INPUT_SIZE = 32
#: Share of each training batch that is synthetic negatives (not-a-digit examples).
_NEGATIVE_FRACTION = 0.25
_BATCH_SIZE = 128
_LEARNING_RATE = 2e-3
#: Canvases classified at once by digit_score (bounds memory, not results).
_INFERENCE_BATCH = 512
#: Float canvases may overshoot [0, 1] by rounding; beyond this they are a caller's bug.
_RANGE_TOLERANCE = 1e-3


# ------------------------------------------------------------------------------- network ---


class DigitNet(nn.Module):
    """Three conv blocks (32×32 → 4×4) and a two-layer head: ~0.16 M parameters, 11 logits."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(1, 16), block(16, 32), block(32, 64))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, NUM_DIGITS + 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 32, 32]`` white-on-black in [0, 1] → logits ``[B, 11]`` (digits 0..9, then not-a-digit)."""
        return self.head(self.features(images))


def _to_input(canvases: torch.Tensor) -> torch.Tensor:
    """Resize float ``[N, 1, H, W]`` canvases to the network's ``[N, 1, 32, 32]`` (antialiased when shrinking)."""
    if canvases.shape[-2:] == (INPUT_SIZE, INPUT_SIZE):
        return canvases
    return F.interpolate(canvases, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False).clamp_(0.0, 1.0)


def _inputs_from_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 1, S, S]`` → float network inputs ``[N, 1, 32, 32]``, converted in chunks.

    Chunked because a float copy of the official 60,000 train images at 64×64 would be 1 GB at once.
    """
    chunks = [_to_input(images[i : i + 4096].float().div_(255.0)) for i in range(0, images.shape[0], 4096)]
    return torch.cat(chunks) if chunks else torch.empty(0, 1, INPUT_SIZE, INPUT_SIZE)


# ------------------------------------------------------------------------ the classifier ---


class TrainingSettings(NamedTuple):
    """How a classifier was trained; part of the cache key, so a quick test model never stands in for a full one."""

    seconds_budget: float  # wall-clock budget of the optimisation loop
    max_steps: int | None  # optimiser steps at most; None: only the time budget stops training
    seed: int  # initialisation, batch order, augmentation and negatives


class DigitClassifier:
    """A trained digit classifier in inference mode, with what it was trained on.

    ``train_sha256`` fingerprints the train split's uint8 images and labels, so a caller (or a test)
    can check which images it saw; the held-out images are only ever used for ``held_out_accuracy``:
    the share of them whose top class of all 11 is their label (a digit rejected as not-a-digit counts
    as an error).

    Safe to share between threads: :meth:`probabilities` only reads the network (eval mode, no
    batch-norm statistics are updated).
    """

    def __init__(self, net: DigitNet, *, canvas_size: int, held_out_accuracy: float, num_train: int, train_sha256: str) -> None:
        self.net = net.eval()
        self.canvas_size = canvas_size
        self.held_out_accuracy = held_out_accuracy
        self.num_train = num_train
        self.train_sha256 = train_sha256

    def probabilities(self, canvases: torch.Tensor, ink: InkStyle = InkStyle.WHITE_ON_BLACK) -> torch.Tensor:
        """Class probabilities ``[N, 11]`` (digits 0..9, then not-a-digit); rows sum to 1.

        Args:
            canvases: float ``[N, C, H, W]`` in [0, 1], C = 1 (or 3: converted to luma); any H, W.
            ink: the canvases' ink; black-on-white canvases are inverted to MNIST's white on black.

        Raises:
            ValueError: wrong shape, dtype or value range (the message names what was given).
        """
        images = _prepare(canvases, _ink_style(ink))
        out = []
        with torch.inference_mode():
            for start in range(0, images.shape[0], _INFERENCE_BATCH):
                batch = _to_input(images[start : start + _INFERENCE_BATCH])
                out.append(self.net(batch).softmax(dim=1))
        return torch.cat(out) if out else torch.empty(0, NUM_DIGITS + 1)

    def state(self) -> dict:
        """What the cache file holds: tensors and plain values only, so ``torch.load(weights_only=True)`` reads it."""
        return {
            "code_version": CODE_VERSION,
            "state_dict": self.net.state_dict(),
            "canvas_size": self.canvas_size,
            "held_out_accuracy": self.held_out_accuracy,
            "num_train": self.num_train,
            "train_sha256": self.train_sha256,
        }

    @classmethod
    def from_state(cls, state: dict) -> DigitClassifier:
        """Rebuild from :meth:`state`.

        Raises:
            ValueError: the state comes from another :data:`CODE_VERSION` or lacks a field.
        """
        if state.get("code_version") != CODE_VERSION:
            raise ValueError(f"digit classifier state has code_version {state.get('code_version')!r}, this code reads {CODE_VERSION}")
        net = DigitNet()
        net.load_state_dict(state["state_dict"])
        return cls(
            net,
            canvas_size=int(state["canvas_size"]),
            held_out_accuracy=float(state["held_out_accuracy"]),
            num_train=int(state["num_train"]),
            train_sha256=str(state["train_sha256"]),
        )

    def __repr__(self) -> str:
        return (
            f"DigitClassifier(canvas_size={self.canvas_size}, held_out_accuracy={self.held_out_accuracy:.4f}, "
            f"num_train={self.num_train}, train_sha256={self.train_sha256[:12]}…)"
        )


def _ink_style(ink: InkStyle | str) -> InkStyle:
    try:
        return InkStyle(ink)
    except ValueError:
        raise ValueError(f"ink must be one of {[style.value for style in InkStyle]}, got {ink!r}") from None


def _prepare(canvases: torch.Tensor, ink: InkStyle) -> torch.Tensor:
    """Validate canvases and turn them into float white-on-black ``[N, 1, H, W]`` in [0, 1]."""
    if not isinstance(canvases, torch.Tensor) or canvases.ndim != 4 or canvases.shape[1] not in (1, 3):
        shape = tuple(canvases.shape) if isinstance(canvases, torch.Tensor) else type(canvases).__name__
        raise ValueError(f"canvases must be a [N, C, H, W] tensor with C = 1 or 3, got {shape}")
    if not canvases.is_floating_point():
        raise ValueError(f"canvases must be float in [0, 1], got dtype {canvases.dtype}")
    images = canvases.detach().float().cpu()
    if images.numel():
        low, high = images.min().item(), images.max().item()
        if not (math.isfinite(low) and math.isfinite(high)) or low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
            raise ValueError(f"canvases must lie in [0, 1], got min {low:.4g} and max {high:.4g}")
        images = images.clamp(0.0, 1.0)
    if images.shape[1] == 3:
        # ITU-R 601-2 luma, as the data loaders convert RGB to grayscale.
        images = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    if ink is InkStyle.BLACK_ON_WHITE:
        images = 1.0 - images
    return images


# ------------------------------------------------------------------------------- scoring ---


class DigitScore(NamedTuple):
    """How many samples read as digits, and how evenly they cover the ten classes.

    ``histogram[k]`` is the fraction of *all* samples confidently (p ≥ 0.9) classified as digit ``k``:
    unrecognisable samples count in no class, so ``sum(histogram) == confident_fraction`` and a class
    is only "covered" by samples that actually look like it. ``min_class_fraction`` (≥ 0.03 for a good
    generator) is therefore a joint measure of quality and mode coverage.
    """

    confident_fraction: float  # share of samples whose most likely digit has p ≥ 0.9
    histogram: tuple[float, ...]  # 10 fractions of all samples, confident ones only, by class 0..9
    min_class_fraction: float  # min(histogram): the least covered class
    mean_max_probability: float  # mean over samples of the largest digit probability (not-a-digit excluded)

    def as_record(self) -> dict[str, float]:
        """The run-log scalars (``eval/`` group, like the held-out L2)."""
        return {
            "eval/digit_confident": self.confident_fraction,
            "eval/digit_min_class": self.min_class_fraction,
            "eval/digit_mean_max_probability": self.mean_max_probability,
        }


def digit_score(
    classifier: DigitClassifier,
    canvases: torch.Tensor,
    *,
    ink: InkStyle = InkStyle.WHITE_ON_BLACK,
    threshold: float = CONFIDENCE_THRESHOLD,
) -> DigitScore:
    """Score generated canvases with a trained classifier.

    Args:
        classifier: from :func:`load_or_train_digit_classifier`.
        canvases: float ``[N, 1, H, W]`` in [0, 1] (N ≥ 1; 3 channels are converted to luma).
        ink: the canvases' ink style (``env.ink``); black-on-white canvases are inverted first.
        threshold: the probability a sample's digit needs to count as recognised.

    Raises:
        ValueError: no canvases, a threshold outside (0.5, 1] (below ½ a sample's "confident" class
            would not be unique), or canvases of the wrong shape, dtype or range.
    """
    if not 0.5 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0.5, 1] so that a confident class is unique, got {threshold!r}")
    if isinstance(canvases, torch.Tensor) and canvases.ndim == 4 and canvases.shape[0] == 0:
        raise ValueError("canvases is empty (N = 0): the digit score needs at least one sample")
    digits = classifier.probabilities(canvases, ink)[:, :NUM_DIGITS]
    max_probability, label = digits.max(dim=1)
    confident = max_probability >= threshold
    num = digits.shape[0]
    counts = torch.bincount(label[confident], minlength=NUM_DIGITS)
    histogram = tuple(float(c) / num for c in counts.tolist())
    return DigitScore(
        confident_fraction=float(confident.sum().item()) / num,
        histogram=histogram,
        min_class_fraction=min(histogram),
        mean_max_probability=float(max_probability.mean().item()),
    )


# ------------------------------------------------------------- augmentation and negatives ---


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _random_affine(images: torch.Tensor, generator: torch.Generator, *, max_shift: float = 0.2) -> torch.Tensor:
    """Rotate ±15°, scale 0.8-1.15, shear ±0.15 and shift by up to ``max_shift`` (in units of half the side)."""
    n = images.shape[0]
    angle = _uniform(n, -math.pi / 12, math.pi / 12, generator)
    scale = _uniform(n, 0.8, 1.15, generator)
    aspect = _uniform(n, 0.9, 1.1, generator)
    shear = _uniform(n, -0.15, 0.15, generator)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output coordinates to input ones, so dividing by the scale enlarges the digit.
    sx, sy = 1.0 / (scale * aspect), 1.0 / (scale / aspect)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * sx
    theta[:, 0, 1] = (-sin + shear) * sx
    theta[:, 1, 0] = sin * sy
    theta[:, 1, 1] = cos * sy
    theta[:, 0, 2] = _uniform(n, -max_shift, max_shift, generator)
    theta[:, 1, 2] = _uniform(n, -max_shift, max_shift, generator)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _vary_strokes(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Thicken or thin strokes by a random amount, dim the ink and add faint noise, as brushes do."""
    n = images.shape[0]
    dilated = F.max_pool2d(images, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-images, 3, stride=1, padding=1)
    amount = _uniform(n, -0.6, 1.0, generator).view(n, 1, 1, 1)
    images = torch.where(amount >= 0, images + amount * (dilated - images), images + (-amount) * (eroded - images))
    # Brush ink is not always full white, and a soft brush leaves a grey rim: vary gain and gamma.
    gain = _uniform(n, 0.6, 1.0, generator).view(n, 1, 1, 1)
    gamma = torch.exp(_uniform(n, -0.5, 0.5, generator)).view(n, 1, 1, 1)
    images = gain * images.clamp(0.0, 1.0).pow(gamma)
    # A hard-edged brush paints binary strokes: binarise a third of the digits at a random level.
    level = _uniform(n, 0.2, 0.6, generator).view(n, 1, 1, 1)
    hard = (torch.rand(n, 1, 1, 1, generator=generator) < 1 / 3)
    images = torch.where(hard, gain * (images > level * gain).float(), images)
    noise_level = _uniform(n, 0.0, 0.04, generator).view(n, 1, 1, 1)
    return (images + noise_level * torch.randn(images.shape, generator=generator)).clamp_(0.0, 1.0)


def _scribbles(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` canvases of 3-8 random antialiased line segments anywhere: strokes that form no digit."""
    segments = 8
    coords = (torch.arange(INPUT_SIZE, dtype=torch.float32) + 0.5).view(1, 1, -1)
    ys, xs = torch.meshgrid(coords.flatten(), coords.flatten(), indexing="ij")
    pixels = torch.stack([xs.flatten(), ys.flatten()], dim=1).view(1, 1, -1, 2)  # [1, 1, P, 2]
    start = torch.rand(n, segments, 1, 2, generator=generator) * INPUT_SIZE
    end = torch.rand(n, segments, 1, 2, generator=generator) * INPUT_SIZE
    direction = end - start
    along = ((pixels - start) * direction).sum(-1) / direction.pow(2).sum(-1).clamp_min(1e-6)
    nearest = start + along.clamp(0.0, 1.0).unsqueeze(-1) * direction
    distance = (pixels - nearest).norm(dim=-1)  # [n, segments, P]
    width = _uniform(n, 1.0, 3.5, generator).view(n, 1, 1)
    ink = (width / 2 + 0.5 - distance).clamp(0.0, 1.0)
    used = torch.arange(segments).view(1, -1, 1) < torch.randint(3, segments + 1, (n, 1, 1), generator=generator)
    return (ink * used).amax(dim=1).view(n, 1, INPUT_SIZE, INPUT_SIZE)


def _negatives(digits: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` not-a-digit canvases ``[n, 1, 32, 32]`` of six kinds in equal shares, some built from ``digits``."""
    shares = [n // 6 + (1 if k < n % 6 else 0) for k in range(6)]
    blank, noise, blobs, scribbles, pairs, shuffled = shares
    size = (INPUT_SIZE, INPUT_SIZE)
    # Blank or a constant field; half of them exactly black, the blank canvas every episode starts from.
    level = torch.rand(blank, 1, 1, 1, generator=generator) * (torch.rand(blank, 1, 1, 1, generator=generator) < 0.5)
    kinds = [level.expand(blank, 1, *size)]
    kinds.append(_pixel_noise(noise, generator))
    # Smooth blobs (coarse noise upsampled and thresholded): smudges and filled areas.
    smooth = F.interpolate(torch.rand(blobs, 1, 6, 6, generator=generator), size=size, mode="bicubic", align_corners=False)
    cut = _uniform(blobs, 0.3, 0.8, generator).view(blobs, 1, 1, 1)
    kinds.append(((smooth - cut) * 6.0).clamp(0.0, 1.0))
    kinds.append(_scribbles(scribbles, generator))
    # Two digits side by side ("a 10"), each shrunk: digit strokes, but no one digit.
    first = digits[torch.randint(digits.shape[0], (pairs,), generator=generator)]
    second = digits[torch.randint(digits.shape[0], (pairs,), generator=generator)]
    kinds.append(_two_digits(first, second, generator))
    # A digit with its four quadrants moved round (never in place): the right strokes, the wrong shape.
    kinds.append(_shuffle_quadrants(digits[torch.randint(digits.shape[0], (shuffled,), generator=generator)], generator))
    return torch.cat(kinds)


def _pixel_noise(n: int, generator: torch.Generator) -> torch.Tensor:
    """Dense or sparse uniform noise drawn at 1-4× the input side and area-averaged down.

    Noise drawn on a 64×64 canvas and shrunk to 32×32 is greyer and smoother than 32×32 noise; a
    network that only saw the latter called the former a confident "8" (measured), so both are drawn.
    """
    factor = int(torch.randint(1, 5, (1,), generator=generator))
    side = INPUT_SIZE * factor
    density = _uniform(n, 0.02, 1.0, generator).view(n, 1, 1, 1)
    noise = torch.rand(n, 1, side, side, generator=generator) * (torch.rand(n, 1, side, side, generator=generator) < density)
    return F.avg_pool2d(noise, factor) if factor > 1 else noise


def _two_digits(left: torch.Tensor, right: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n = left.shape[0]
    scale = _uniform(n, 0.55, 0.75, generator)
    offset = _uniform(n, 0.35, 0.5, generator)
    angle = torch.rand(n, generator=generator) * 2 * math.pi
    dx, dy = offset * torch.cos(angle), offset * torch.sin(angle)
    placed = []
    for sign, images in ((1.0, left), (-1.0, right)):
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = 1.0 / scale
        theta[:, 1, 1] = 1.0 / scale
        theta[:, 0, 2] = sign * dx / scale
        theta[:, 1, 2] = sign * dy / scale
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        placed.append(F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    return torch.maximum(placed[0], placed[1])


def _shuffle_quadrants(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n, half = images.shape[0], INPUT_SIZE // 2
    quads = torch.stack(
        [images[..., :half, :half], images[..., :half, half:], images[..., half:, :half], images[..., half:, half:]], dim=1
    )  # [n, 4, 1, h, h]
    # A cyclic shift of the quadrant order by 1..3 positions: never the identity.
    shift = torch.randint(1, 4, (n, 1), generator=generator)
    order = (torch.arange(4).view(1, 4) + shift) % 4
    picked = quads.gather(1, order.view(n, 4, 1, 1, 1).expand_as(quads))
    top = torch.cat([picked[:, 0], picked[:, 1]], dim=-1)
    bottom = torch.cat([picked[:, 2], picked[:, 3]], dim=-1)
    return torch.cat([top, bottom], dim=-2)


# ------------------------------------------------------------------------------ training ---


def train_split_fingerprint(data: LabelledMnist, canvas_size: int) -> str:
    """SHA-256 of the train images and labels (not the held-out side) at ``canvas_size``: the cache key's core."""
    digest = hashlib.sha256()
    digest.update(f"spiral-digits canvas={canvas_size} n={data.train.shape[0]};".encode())
    digest.update(data.train.contiguous().numpy().tobytes())
    digest.update(data.train_labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _accuracy(net: DigitNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``images`` (float ``[M, 1, 32, 32]``) whose top class over all 11 is the true digit."""
    net.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, images.shape[0], _INFERENCE_BATCH):
            logits = net(images[start : start + _INFERENCE_BATCH])
            correct += int((logits.argmax(dim=1) == labels[start : start + _INFERENCE_BATCH]).sum())
    return correct / max(images.shape[0], 1)


def _train_on(data: LabelledMnist, canvas_size: int, settings: TrainingSettings) -> DigitClassifier:
    """Fit a fresh network on ``data.train`` only; ``data.held_out`` is touched once, after training, to report accuracy."""
    train = _inputs_from_uint8(data.train)
    labels = data.train_labels
    started = time.perf_counter()  # the budget covers optimisation only, not this conversion
    generator = torch.Generator().manual_seed(settings.seed)
    # fork_rng: seed the initialisation and dropout without changing the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        net = DigitNet()
        optimizer = torch.optim.Adam(net.parameters(), lr=_LEARNING_RATE)
        num_negatives = max(1, round(_BATCH_SIZE * _NEGATIVE_FRACTION))
        num_positives = _BATCH_SIZE - num_negatives
        target = torch.cat([torch.empty(num_positives, dtype=torch.long), torch.full((num_negatives,), NOT_A_DIGIT)])
        step, progress = 0, 0.0
        net.train()
        while progress < 1.0:
            # Cosine decay over whichever budget runs out first: the last steps refine at a low rate.
            for group in optimizer.param_groups:
                group["lr"] = _LEARNING_RATE * 0.5 * (1.0 + math.cos(math.pi * progress))
            index = torch.randint(train.shape[0], (num_positives,), generator=generator)
            positives = _random_affine(train[index], generator)
            # Brush-like strokes on half the digits, pen strokes on the rest: varying all of them cost
            # 2.7 points of held-out accuracy at 600 steps (96.3% vs 99.0%, measured).
            half = num_positives // 2
            positives = torch.cat([_vary_strokes(positives[:half], generator), positives[half:]])
            negatives = _negatives(train, num_negatives, generator)
            target[:num_positives] = labels[index]
            loss = F.cross_entropy(net(torch.cat([positives, negatives])), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            progress = (time.perf_counter() - started) / settings.seconds_budget
            if settings.max_steps is not None:
                progress = max(progress, step / settings.max_steps)
    train_seconds = time.perf_counter() - started
    accuracy = _accuracy(net, _inputs_from_uint8(data.held_out), data.held_out_labels)
    logger.info(
        "digit classifier: %.2f%% accuracy on %d held-out images after %d steps (%.1f s) on %d train images, canvas %d",
        100.0 * accuracy,
        data.held_out.shape[0],
        step,
        train_seconds,
        data.train.shape[0],
        canvas_size,
    )
    return DigitClassifier(
        net,
        canvas_size=canvas_size,
        held_out_accuracy=accuracy,
        num_train=int(data.train.shape[0]),
        train_sha256=train_split_fingerprint(data, canvas_size),
    )


def _settings(seconds_budget: float, max_steps: int | None, seed: int) -> TrainingSettings:
    if not (isinstance(seconds_budget, (int, float)) and math.isfinite(seconds_budget) and seconds_budget > 0):
        raise ValueError(f"seconds_budget must be a positive number of seconds, got {seconds_budget!r}")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be a positive integer or None (time budget only), got {max_steps!r}")
    return TrainingSettings(float(seconds_budget), max_steps, int(seed))


def train_digit_classifier(
    data_cfg: DataConfig,
    canvas_size: int,
    *,
    seconds_budget: float = 120.0,
    max_steps: int | None = None,
    seed: int = 0,
) -> DigitClassifier:
    """Train the digit classifier on the MNIST train split that ``load_dataset(data_cfg, canvas_size, ...)`` makes.

    Uses torch's current thread setting. Logs the held-out accuracy (≥ 97% with the default budget).

    Args:
        data_cfg: an ``mnist`` data section; its split (and ``max_images``) decide the train images.
        canvas_size: the canvas side the images are loaded at (``env.canvas_size``) before the
            classifier resizes them to 32×32, as it will resize generated canvases.
        seconds_budget: wall-clock seconds of optimisation (loading and evaluation come on top).
        max_steps: stop after this many optimiser steps if that comes first (tests use a few hundred).
        seed: initialisation, batches, augmentation and negatives.

    Raises:
        DatasetError: not an MNIST section, or missing / corrupt files.
        ValueError: a non-positive budget or step count.
    """
    settings = _settings(seconds_budget, max_steps, seed)
    return _train_on(load_mnist_labelled(data_cfg, canvas_size), canvas_size, settings)


# --------------------------------------------------------------------------------- cache ---


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/spiral/digits``, or ``~/.cache/spiral/digits`` when it is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spiral" / "digits"


def digit_cache_key(train_sha256: str, canvas_size: int, settings: TrainingSettings) -> str:
    """File stem of a cached classifier: the train split's fingerprint, canvas, settings and code version."""
    budget = f"s{settings.seconds_budget:g}" + (f"-n{settings.max_steps}" if settings.max_steps is not None else "")
    return f"v{CODE_VERSION}-c{canvas_size}-{budget}-seed{settings.seed}-{train_sha256[:16]}"


def load_or_train_digit_classifier(
    data_cfg: DataConfig,
    canvas_size: int,
    cache_dir: Path | str | None = None,
    *,
    seconds_budget: float = 120.0,
    max_steps: int | None = None,
    seed: int = 0,
) -> DigitClassifier:
    """The cached classifier for this train split and canvas size, training (and caching) it on a miss.

    The cache file is read with ``torch.load(weights_only=True)``, so a tampered file cannot run code;
    an unreadable or mismatched file is logged and replaced. Writes go to a temporary file renamed
    into place, so concurrent evaluators never read a half-written file (the last writer wins).

    Args:
        data_cfg, canvas_size, seconds_budget, max_steps, seed: as in :func:`train_digit_classifier`.
        cache_dir: folder of the cached weights; default :func:`default_cache_dir`.

    Raises:
        DatasetError: not an MNIST section, or missing / corrupt dataset files.
        ValueError: a non-positive budget or step count.
        OSError: the cache folder cannot be created or written.
    """
    settings = _settings(seconds_budget, max_steps, seed)
    data = load_mnist_labelled(data_cfg, canvas_size)
    fingerprint = train_split_fingerprint(data, canvas_size)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / f"{digit_cache_key(fingerprint, canvas_size, settings)}.pt"
    if path.is_file():
        try:
            classifier = DigitClassifier.from_state(torch.load(path, map_location="cpu", weights_only=True))
        except (OSError, EOFError, RuntimeError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as error:
            logger.warning("digit classifier cache %s is unreadable (%s): training a new one", path, error)
        else:
            if classifier.train_sha256 == fingerprint and classifier.canvas_size == canvas_size:
                logger.info("digit classifier loaded from %s (%.2f%% held-out accuracy)", path, 100.0 * classifier.held_out_accuracy)
                return classifier
            logger.warning("digit classifier cache %s was trained on other images: training a new one", path)
    classifier = _train_on(data, canvas_size, settings)
    _save(classifier, path)
    return classifier


def _save(classifier: DigitClassifier, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(classifier.state(), file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("digit classifier cached at %s", path)
