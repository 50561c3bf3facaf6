"""The ``fast`` painting backend: all ``B`` canvases stepped at once in torch, no per-environment loop.

Same programme semantics as the libmypaint backend (the geometry comes from
:mod:`spiral.envs.strokes`), but the brush is a deterministic model of ``classic/dry_brush``'s
*expected* ink rather than libmypaint's random dabs:

* Each stroke's Bézier is sampled at ``M`` points (``M`` adapts to the longest stroke in the batch
  relative to its brush width, so thin strokes stay continuous).
* libmypaint lays ``dabs_per_radius / r`` dabs per pixel of path, each with opacity ``o(p)`` and a
  soft profile of ink mass ``profile_mass · r²``; a path sample stands for the dabs along its share of
  arc length, so sample count never changes the ink laid down.
* dry_brush scatters dabs by a Gaussian of std ``offset_by_random(p) · r``; in expectation a dab is
  its profile blurred by that Gaussian. The profile is modelled as a Gaussian of matching variance,
  so each sample is one isotropic Gaussian of std ``s = r · sqrt(σ_profile² + offset(p)²)``.
* An isotropic Gaussian is *separable*: ``Py(y) · Px(x)`` (sampled at pixel centres, widened by the
  pixel square's variance 1/12 so thin strokes keep their ink on the grid). The stroke's ink density
  is then ``Σ_m mass_m · Py_m ⊗ Px_m`` — one batched matrix product ``[B, H, M] @ [B, M, W]``, the
  only ``O(B·M·H·W)`` work, done by BLAS. Rows are bucketed by the sample count they need.
* Ink density becomes coverage as overlapping dabs do: ``alpha = 1 − exp(−density)`` (the "over"
  composite of many faint dabs), then ``canvas ← colour · alpha + canvas · (1 − alpha)``.

Why this design: see ``tests/benchmarks/bench_renderer.py``. Direct distance fields per dab cost
``B·M·H·W`` transcendental ops; FFT convolution of a rasterised path was measured at ~70 ms per
256 canvases here; the separable product takes a few ms. Runs on the CPU or CUDA.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import torch

from spiral.config import EnvConfig
from spiral.envs.base import Observation
from spiral.envs.painting_spec import action_mask, background_color, num_channels, painting_action_spec
from spiral.envs.strokes import (
    BrushState,
    StrokeBatch,
    decode_actions,
    initial_brush_state,
    interpolate_pressure,
    next_brush_state,
    quadratic_bezier,
    start_pressure,
)

log = logging.getLogger(__name__)


class BrushModel(NamedTuple):
    """Parameters of the expected-ink brush model (see the module docstring).

    Defaults come from ``classic/dry_brush.myb`` (mypaint-brushes 2.0) and libmypaint's dab maths:
    ``opaque = 0.8 + 0.2 p``, ``opaque_multiply = p``, ``offset_by_random = 1.4 p`` (in radii),
    ``hardness 0.2``, ``dabs_per_actual_radius + dabs_per_basic_radius = 6 + 6``. The dab profile
    with hardness ``h`` is ``1 − rr (1/h − 1)`` for ``rr ≤ h`` else ``h/(1−h) (1 − rr)`` with
    ``rr = (d/r)²``: its mass is ``0.2 π r²`` and its per-axis std ``0.342 r``. ``radius_gain`` is
    the brush's ``speed2`` mapping at the slow speeds this environment uses (``exp(0.043)``).
    """

    opaque_base: float = 0.8
    opaque_pressure: float = 0.2
    offset_per_pressure: float = 1.4
    dabs_per_radius: float = 12.0
    profile_mass: float = 0.2 * math.pi
    profile_std: float = 0.342
    radius_gain: float = 1.044
    #: Path samples are spaced at most this many pixels apart, or the stroke's std if wider.
    max_spacing: float = 0.75

    def opacity(self, pressure: torch.Tensor) -> torch.Tensor:
        """Per-dab opacity at ``pressure`` (libmypaint clamps ``opaque`` to [0, 1])."""
        return (self.opaque_base + self.opaque_pressure * pressure).clamp(0.0, 1.0) * pressure


#: The dry_brush model (the default brush).
DRY_BRUSH = BrushModel()

#: Upper bound on path samples per stroke (a diagonal with a far control point is < 200 px long).
MAX_SAMPLES = 512
#: Smallest bucket of path samples.
MIN_SAMPLES = 8
#: Buckets grow by ``2**BUCKET_LOG2_STEP`` (8, 16, 32, ...): every bucket costs ~30 small torch
#: calls, so fewer, coarser buckets beat tighter sample counts at these sizes (measured).
BUCKET_LOG2_STEP = 1
#: Elements of one ``[rows, M, H]`` factor computed at once; bounds memory for big batches (32 MB).
CHUNK_ELEMENTS = 1 << 23
#: Variance of a uniform pixel square along one axis: a sampled Gaussian at least this wide
#: keeps its mass on the pixel grid.
PIXEL_VARIANCE = 1.0 / 12.0


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (or ``cuda:N``), or ``auto`` = CUDA when available.

    Raises:
        ValueError: an unknown device name, or CUDA requested where there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"env.device {name!r} is not a torch device; use 'cpu', 'cuda' or 'auto'") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"env.device {name!r}: the fast renderer runs on 'cpu', 'cuda' or 'auto'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"env.device {name!r}: CUDA is not available here; use 'cpu' or 'auto'")
    return device


def _stroke_std(radius: torch.Tensor, pressure: torch.Tensor, brush: BrushModel) -> torch.Tensor:
    """Per-axis std (pixels) of one path sample's expected ink: profile ⊕ random offset ⊕ pixel box."""
    spread = brush.profile_std**2 + (brush.offset_per_pressure * pressure) ** 2
    return torch.sqrt(radius**2 * spread + PIXEL_VARIANCE)


def _bucket_sizes(start, control, end, p_start, p_end, radius, brush: BrushModel) -> torch.Tensor:
    """int64 ``[B]``: path samples each row needs (a power of two), so neighbouring samples are at
    most ``max(1 px, 2 std)`` apart, where the Gaussian ripple along the stroke is below 1%.

    The Bézier is never longer than its control polygon, which bounds the spacing.
    """
    polygon = (control - start).norm(dim=-1) + (end - control).norm(dim=-1)
    std = _stroke_std(radius, torch.minimum(p_start, p_end), brush)
    needed = (polygon / torch.clamp(2.0 * std, min=1.0)).ceil() + 1
    exponent = (torch.log2(needed.clamp(MIN_SAMPLES, MAX_SAMPLES)) / BUCKET_LOG2_STEP).ceil() * BUCKET_LOG2_STEP
    return (2**exponent).round().long().clamp(max=MAX_SAMPLES)


def _axis_factor(coords: torch.Tensor, log_weight: torch.Tensor, inv_two_var: torch.Tensor, size: int) -> torch.Tensor:
    """``[b, M, size]``: ``exp(log_weight − (c − coord)² / (2 var))`` at pixel centres ``c = i + 0.5``.

    Written as one ``[b·M, 3] @ [3, size]`` product over the basis ``(1, c, c²)`` followed by an
    in-place ``exp``: two passes over the output instead of four elementwise ones.
    """
    centres = torch.arange(size, device=coords.device, dtype=coords.dtype) + 0.5
    basis = torch.stack((torch.ones_like(centres), centres, centres * centres))  # [3, size]
    coef = torch.stack(
        (log_weight - inv_two_var * coords * coords, 2.0 * inv_two_var * coords, -inv_two_var), dim=-1
    )  # [b, M, 3]
    # Far tails would underflow to denormals, which are ~10x slower in exp and in the matmul that
    # follows; exp(-40) ≈ 4e-18 keeps products of two factors normal and is invisible in a canvas.
    return torch.matmul(coef, basis).clamp_(min=-40.0).exp_()


def _bucket_density(start, control, end, p_start, p_end, radius, samples: int, size: int, brush: BrushModel) -> torch.Tensor:
    """``[b, H, W]`` expected ink density of rows that all use ``samples`` path samples."""
    points = quadratic_bezier(start, control, end, samples)  # [b, M, 2]
    pressure = interpolate_pressure(p_start, p_end, samples)  # [b, M]
    # Arc length each sample stands for: half of each neighbouring segment (trapezoid rule).
    seg = (points[:, 1:] - points[:, :-1]).norm(dim=-1)
    share = torch.nn.functional.pad(seg, (1, 0)) + torch.nn.functional.pad(seg, (0, 1))
    r = radius.unsqueeze(1)
    # dabs laid on the share × opacity × ink mass of one dab; = 0.5·share·(dabs/r)·o·mass·r².
    mass = (0.5 * brush.dabs_per_radius * brush.profile_mass) * share * r * brush.opacity(pressure)
    var = _stroke_std(r, pressure, brush) ** 2
    # A normalised 2-d Gaussian: mass / (2π var) · exp(-d²/2var); the constant rides on the y factor.
    log_weight = torch.log(mass.clamp_min(1e-30) / (2.0 * math.pi * var))
    inv_two_var = 0.5 / var
    py = _axis_factor(points[..., 0], log_weight, inv_two_var, size)
    px = _axis_factor(points[..., 1], torch.zeros_like(log_weight), inv_two_var, size)
    return torch.bmm(py.transpose(1, 2), px)


def stroke_density(
    start: torch.Tensor,
    control: torch.Tensor,
    end: torch.Tensor,
    p_start: torch.Tensor,
    p_end: torch.Tensor,
    radius: torch.Tensor,
    canvas_size: int,
    brush: BrushModel = DRY_BRUSH,
) -> torch.Tensor:
    """float32 ``[B, H, W]``: the expected ink density of one quadratic-Bézier stroke per row (pure).

    start, control, end:  ``[B, 2]`` ``(y, x)`` pixels.
    p_start, p_end:       ``[B]`` pressure at the two ends (linear in between).
    radius:               ``[B]`` brush radius in pixels.

    Coverage is ``1 − exp(−density)``. Rows are grouped by how many path samples they need (thin
    long strokes need many, fat ones few), so the cost follows the batch's strokes rather than its
    worst one.
    """
    radius = radius * brush.radius_gain
    density = torch.empty(start.shape[0], canvas_size, canvas_size, device=start.device, dtype=start.dtype)
    buckets = _bucket_sizes(start, control, end, p_start, p_end, radius, brush)
    for samples in torch.unique(buckets).tolist():
        bucket_rows = (buckets == samples).nonzero().squeeze(1)
        chunk = max(1, CHUNK_ELEMENTS // (samples * canvas_size))
        for rows in bucket_rows.split(chunk):
            args = (t[rows] for t in (start, control, end, p_start, p_end, radius))
            density.index_copy_(0, rows, _bucket_density(*args, samples=samples, size=canvas_size, brush=brush))
    return density


def stroke_alpha(
    start: torch.Tensor,
    control: torch.Tensor,
    end: torch.Tensor,
    p_start: torch.Tensor,
    p_end: torch.Tensor,
    radius: torch.Tensor,
    canvas_size: int,
    brush: BrushModel = DRY_BRUSH,
) -> torch.Tensor:
    """float32 ``[B, H, W]`` in [0, 1): one stroke's coverage, ``1 − exp(−density)`` (see
    :func:`stroke_density` for the arguments)."""
    density = stroke_density(start, control, end, p_start, p_end, radius, canvas_size, brush)
    return density.neg_().expm1_().neg_()


class FastPaintEnv:
    """The batched torch painting environment (:class:`~spiral.envs.base.BatchedEnv`).

    Deterministic: the same programme always gives the same canvas (it renders dry_brush's expected
    ink, not a random draw). Not thread-safe.
    """

    def __init__(self, cfg: EnvConfig, device: torch.device | str | None = None, brush: BrushModel = DRY_BRUSH) -> None:
        """
        Raises:
            ValueError: ``device`` (or ``cfg.device``) is unknown or unavailable.
        """
        self.cfg = cfg
        self.brush = brush
        self.device = resolve_device(str(device) if device is not None else cfg.device)
        self.action_spec = painting_action_spec(cfg)
        self.num_channels = num_channels(cfg)
        self.canvas_size = cfg.canvas_size
        self._background = background_color(cfg).to(self.device)
        self._canvas: torch.Tensor | None = None
        self._brush_state: BrushState | None = None
        self._step = 0

    @property
    def canvas(self) -> torch.Tensor:
        """float32 ``[B, C, H, W]`` in [0, 1] after the latest reset/step.

        Raises:
            RuntimeError: before the first ``reset``.
        """
        if self._canvas is None:
            raise RuntimeError("the environment has no canvas yet: call reset(batch_size) first")
        return self._canvas

    def reset(self, batch_size: int) -> Observation:
        """Start ``batch_size`` episodes on blank canvases.

        Raises:
            ValueError: ``batch_size`` < 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        size = self.canvas_size
        self._canvas = self._background.view(1, -1, 1, 1).expand(batch_size, -1, size, size).contiguous()
        self._brush_state = initial_brush_state(batch_size, self.device)
        self._step = 0
        return self._observation(torch.zeros(batch_size, len(self.action_spec), device=self.device))

    def step(self, actions: torch.Tensor) -> Observation:
        """Apply one action per canvas, all canvases at once.

        Raises:
            ValueError: wrong type, dtype or shape, or a component out of range.
            RuntimeError: before ``reset``, or past the episode's last step.
        """
        if self._brush_state is None or self._canvas is None:
            raise RuntimeError("step() called before reset(batch_size)")
        if self._step >= self.cfg.episode_length - 1:
            raise RuntimeError(
                f"episode is over: it has taken all {self.cfg.episode_length - 1} actions of "
                f"episode_length {self.cfg.episode_length} (the reset counts as a step); call reset()"
            )
        batch = self._canvas.shape[0]
        if isinstance(actions, torch.Tensor) and actions.dim() == 2 and actions.shape[0] != batch:
            raise ValueError(f"actions have batch size {actions.shape[0]}, the environment was reset with {batch}")
        strokes = decode_actions(actions.to(self.device) if isinstance(actions, torch.Tensor) else actions, self.action_spec, self.cfg)
        self._paint(strokes)
        self._brush_state = next_brush_state(self._brush_state, strokes)
        self._step += 1
        return self._observation(action_mask(self.action_spec, strokes.paint.long()))

    def _paint(self, strokes: StrokeBatch) -> None:
        if not bool(strokes.paint.any()):
            return
        state = self._brush_state
        args = (
            state.position,
            strokes.control,
            strokes.end,
            start_pressure(state, strokes),
            strokes.pressure,
            strokes.radius,
        )
        if bool(strokes.paint.all()):
            density = stroke_density(*args, self.canvas_size, self.brush)
        else:
            # Only painting rows are rendered; moves get zero density and leave their canvas as is.
            rows = strokes.paint.nonzero().squeeze(1)
            density = torch.zeros(len(strokes.paint), self.canvas_size, self.canvas_size, device=self.device)
            density.index_copy_(0, rows, stroke_density(*(a[rows] for a in args), self.canvas_size, self.brush))
        # "over": canvas ← colour·alpha + canvas·(1 − alpha) = lerp(colour, canvas, exp(−density)).
        # lerp returns a new tensor, so canvases handed out in earlier observations never change.
        transmittance = density.neg_().exp_().unsqueeze(1)
        color = strokes.color[:, : self.num_channels].reshape(-1, self.num_channels, 1, 1)
        self._canvas = torch.lerp(color.expand_as(self._canvas), self._canvas, transmittance)

    def _observation(self, mask: torch.Tensor) -> Observation:
        batch = self._canvas.shape[0]
        return Observation(
            canvas=self._canvas,
            step=torch.full((batch,), self._step, dtype=torch.long, device=self.device),
            episode_length=torch.full((batch,), self.cfg.episode_length, dtype=torch.long, device=self.device),
            action_mask=mask.to(torch.float32),
        )
