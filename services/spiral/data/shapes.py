"""``shapes``: the built-in, offline default dataset — thick brush strokes drawn procedurally.

Why this distribution: each image is 1–3 quadratic Bézier strokes of one thick round brush, the very
primitive the painting agent emits, so a perfect reconstruction exists within a handful of steps and
the agent visibly learns within minutes. It is not trivial: stroke count, placement, length,
curvature (straight line to a strong arc) and width vary, and half of the follow-up strokes start where
the previous one ended (the corners of "V", "L", "S"-like shapes), which rewards continuous strokes
instead of move-then-paint.

Rendering: Pillow draws the strokes as round-jointed polylines with round caps at twice the
resolution; a 2×2 box reduction antialiases the edges. White on black, uint8. About 7,000
images/s on one core at 64×64. Deterministic from the seed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["DEFAULT_NUM_SHAPES", "generate_shapes"]

#: 10,000 train + 1,000 held-out at the default held-out fraction of 0.1 (well, 9,900 + 1,100).
DEFAULT_NUM_SHAPES = 11_000

_MAX_STROKES = 3
_STROKE_COUNT_P = (0.35, 0.40, 0.25)  # 1, 2 or 3 strokes
_CONTINUE_P = 0.5  # a follow-up stroke starts at the previous end point
_MARGIN = 0.1  # strokes (and their Bézier hull) stay inside [margin, 1 - margin] of the canvas
_LENGTH = (0.35, 0.8)  # chord length, fraction of the canvas side
_END_CANDIDATES = 8
_BEND = 0.4  # control point offset from the chord midpoint, up to ±this × chord length
_WIDTHS_AT_64 = (4, 5, 6)  # brush diameters in pixels at a 64×64 canvas, scaled with the canvas
_CURVE_POINTS = 13  # polyline points per Bézier
_SUPERSAMPLE = 2


def _stroke_geometry(rng: np.random.Generator, num_images: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample all strokes at once, in canvas fractions: points ``[N, K, 3, 2]``, counts ``[N]``, widths ``[N]``."""
    lo, hi = _MARGIN, 1.0 - _MARGIN
    counts = rng.choice(np.arange(1, _MAX_STROKES + 1), size=num_images, p=_STROKE_COUNT_P)
    widths = rng.choice(np.asarray(_WIDTHS_AT_64, dtype=np.float64), size=num_images)
    starts = rng.uniform(lo, hi, size=(num_images, _MAX_STROKES, 2))
    # End points: the first of a few uniform candidates whose chord length lies in _LENGTH (the longest
    # one when none does), so strokes are long enough to read yet stay whole inside the margin.
    candidates = rng.uniform(lo, hi, size=(num_images, _MAX_STROKES, _END_CANDIDATES, 2))
    bends = rng.uniform(-_BEND, _BEND, size=(num_images, _MAX_STROKES))
    chained = rng.random(size=(num_images, _MAX_STROKES)) < _CONTINUE_P

    points = np.empty((num_images, _MAX_STROKES, 3, 2))
    rows = np.arange(num_images)
    for k in range(_MAX_STROKES):
        start = starts[:, k]
        if k > 0:
            start = np.where(chained[:, k, None], points[:, k - 1, 2], start)
        chords = np.linalg.norm(candidates[:, k] - start[:, None], axis=-1)  # [N, C]
        fits = (chords >= _LENGTH[0]) & (chords <= _LENGTH[1])
        pick = np.where(fits.any(axis=1), fits.argmax(axis=1), chords.argmax(axis=1))
        end = candidates[rows, k, pick]
        chord = chords[rows, pick][:, None]
        direction = (end - start) / np.maximum(chord, 1e-9)
        normal = np.stack([-direction[:, 1], direction[:, 0]], axis=-1)
        control = np.clip((start + end) / 2 + normal * bends[:, k, None] * chord, lo, hi)
        points[:, k] = np.stack([start, control, end], axis=1)
    return points, counts, widths


def generate_shapes(num_images: int, canvas_size: int, seed: int) -> np.ndarray:
    """Draw ``num_images`` stroke images: uint8 ``[N, S, S]``, white strokes on black, S = canvas_size.

    Raises:
        ValueError: ``num_images`` < 1 or ``canvas_size`` < 8.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be ≥ 1, got {num_images}")
    if canvas_size < 8:
        raise ValueError(f"canvas_size must be ≥ 8, got {canvas_size}")
    rng = np.random.default_rng(seed)
    points, counts, widths = _stroke_geometry(rng, num_images)

    # Evaluate every Bézier up front (vectorised); the per-image loop then only draws.
    big = canvas_size * _SUPERSAMPLE
    t = np.linspace(0.0, 1.0, _CURVE_POINTS)[None, None, :, None]
    p0, p1, p2 = points[:, :, 0:1], points[:, :, 1:2], points[:, :, 2:3]
    curves = ((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2) * big  # [N, K, P, 2]
    pen = np.maximum(np.rint(widths * canvas_size / 64.0 * _SUPERSAMPLE), 2).astype(int)

    curves_list, counts_list, pen_list = curves.tolist(), counts.tolist(), pen.tolist()
    out = bytearray(num_images * canvas_size * canvas_size)
    frame = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(frame)
    stride = canvas_size * canvas_size
    for i in range(num_images):
        draw.rectangle((0, 0, big, big), fill=0)
        width = pen_list[i]
        radius = width / 2.0
        for k in range(counts_list[i]):
            polyline = curves_list[i][k]
            draw.line([tuple(p) for p in polyline], fill=255, width=width)
            # A disc on every vertex gives round joints and caps; much cheaper than Pillow's
            # joint="curve", which builds its pie slices in Python.
            for x, y in polyline:
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
        out[i * stride : (i + 1) * stride] = frame.reduce(_SUPERSAMPLE).tobytes()
    return np.frombuffer(out, dtype=np.uint8).reshape(num_images, canvas_size, canvas_size)
