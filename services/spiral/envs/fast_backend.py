"""The ``fast`` painting backend: all ``B`` canvases stepped at once in torch, no per-environment loop.

Same programme semantics as the libmypaint backend (the geometry comes from
:mod:`spiral.envs.strokes`), but the brush is a deterministic model of ``classic/dry_brush``'s
*expected* ink rather than libmypaint's random dabs:

* libmypaint lays ``dabs_per_radius / r`` dabs per pixel of path, each with opacity ``o(p)`` and a
  soft profile of ink mass ``profile_mass · r²``. Each stroke's Bézier is sampled at ``M`` points
  (``M`` per stroke: long thin strokes need many, short fat ones few) and a sample stands for the
  dabs on its share of arc length, so the sample count never changes the ink laid down.
* dry_brush scatters dabs by a Gaussian of std ``offset_by_random(p) · r``; in expectation a dab is
  its profile blurred by that Gaussian. The profile is modelled as a Gaussian of the same variance,
  so each sample is one isotropic Gaussian of std ``r · sqrt(σ_profile² + offset(p)²)`` (widened by
  the pixel square's variance 1/12 so thin strokes keep their ink on the pixel grid).
* An isotropic Gaussian is *separable*: ``Py(y) · Px(x)``. A stroke's ink density is then
  ``Σ_m Py_m ⊗ Px_m`` — a matrix product ``[H, M] @ [M, W]`` per canvas, done by BLAS as one
  ``bmm`` per group of strokes with the same ``M``; it is the only ``O(B·M·H·W)`` work.
* Density becomes coverage as overlapping faint dabs do under "over" compositing:
  ``alpha = 1 − exp(−density)``, then ``canvas ← canvas − (canvas − colour) · alpha``.
  (Computed as ``lerp(colour, canvas, exp(−density))``, the exponential in base 2: see ``LOG2E``.)

Why this design (measured on the 2-core CI CPU, one thread, 256 canvases of 64×64): per-dab
distance fields cost ``B·M·H·W`` transcendental ops (~0.2 s a step); FFT convolution of a
rasterised path ~70 ms; this separable form ~3 ms, over 20× libmypaint's strokes/s — see
``tests/benchmarks/bench_renderer.py``. It runs on the CPU or CUDA; the fidelity to libmypaint is
bounded in ``tests/envs/test_backend_fidelity.py``.

Known differences from libmypaint: no per-dab speckle (the expectation is drawn), and a stroke of
zero length paints nothing (libmypaint may leave one dab).
"""

from __future__ import annotations

import copy
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
    bezier_coefficients,
    decode_actions,
    initial_brush_state,
    next_brush_state,
    start_pressure,
)


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

    def opacity(self, pressure: torch.Tensor) -> torch.Tensor:
        """Per-dab opacity at ``pressure`` (libmypaint clamps ``opaque`` to [0, 1])."""
        return (self.opaque_base + self.opaque_pressure * pressure).clamp(0.0, 1.0) * pressure


log = logging.getLogger(__name__)

#: The dry_brush model (the default brush).
DRY_BRUSH = BrushModel()
#: The libmypaint brush :data:`DRY_BRUSH` models.
DRY_BRUSH_NAME = "classic/dry_brush"

#: Upper bound on path samples per stroke (a diagonal with a far control point is < 200 px long).
MAX_SAMPLES = 512
#: Rows rendered per pass; larger batches are split so the flat sample factors stay bounded.
ROW_CHUNK = 512
#: Sample counts are rounded up to a multiple of this; each distinct count costs one ``bmm`` call.
SAMPLE_QUANTUM = 4
#: Path samples are at most ``max(MIN_SPACING, SPACING_STDS · std)`` pixels apart: at 2 std the
#: ripple of a sum of Gaussians along the stroke is below 1%.
MIN_SPACING = 1.0
SPACING_STDS = 2.0
#: Variance of a uniform pixel square along one axis: a sampled Gaussian at least this wide
#: keeps its mass on the pixel grid.
PIXEL_VARIANCE = 1.0 / 12.0
#: exp(x) = 2^(x · log2 e). torch's CPU ``exp2`` is ~3× faster than its ``exp`` (measured with
#: AVX-512, one thread: 0.30 vs 0.92 ms per million floats), and the renderer's two large
#: elementwise passes are exponentials, so it works in base 2 (issue #15).
LOG2E = math.log2(math.e)


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


class RenderBuffers:
    """Reusable scratch memory for :func:`stroke_density`.

    A fresh multi-megabyte tensor every step costs page faults that showed up as ~30% of a step in
    the benchmark; these buffers grow to the largest size seen and are then reused. Tensors handed
    out are views, valid until the next request for the same name. Not thread-safe.
    """

    def __init__(self) -> None:
        self._store: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` with ``like``'s dtype and device."""
        numel = math.prod(shape)
        buffer = self._store.get(name)
        if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = torch.empty(numel, dtype=like.dtype, device=like.device)
            self._store[name] = buffer
        return buffer[:numel].view(shape)


def _stroke_std(radius: torch.Tensor, pressure: torch.Tensor, brush: BrushModel) -> torch.Tensor:
    """Per-axis std (pixels) of one path sample's expected ink: profile ⊕ random offset ⊕ pixel box."""
    spread = brush.profile_std**2 + (brush.offset_per_pressure * pressure) ** 2
    return torch.sqrt(radius**2 * spread + PIXEL_VARIANCE)


def samples_per_stroke(
    start: torch.Tensor,
    control: torch.Tensor,
    end: torch.Tensor,
    p_start: torch.Tensor,
    p_end: torch.Tensor,
    radius: torch.Tensor,
    brush: BrushModel = DRY_BRUSH,
) -> torch.Tensor:
    """int64 ``[B]``: path samples each stroke needs, a multiple of :data:`SAMPLE_QUANTUM`.

    Neighbouring samples are at most ``max(MIN_SPACING, SPACING_STDS · std)`` apart; the Bézier is
    never longer than its control polygon, which bounds the spacing. ``radius`` is the dab radius
    (``brush.radius_gain`` applied).
    """
    polygon = (control - start).norm(dim=-1) + (end - control).norm(dim=-1)
    std = _stroke_std(radius, torch.minimum(p_start, p_end), brush)
    needed = (polygon / torch.clamp(SPACING_STDS * std, min=MIN_SPACING)).ceil() + 1
    quantised = (needed / SAMPLE_QUANTUM).ceil() * SAMPLE_QUANTUM
    return quantised.clamp(SAMPLE_QUANTUM, MAX_SAMPLES).long()


def stroke_density(
    start: torch.Tensor,
    control: torch.Tensor,
    end: torch.Tensor,
    p_start: torch.Tensor,
    p_end: torch.Tensor,
    radius: torch.Tensor,
    canvas_size: int,
    brush: BrushModel = DRY_BRUSH,
    buffers: RenderBuffers | None = None,
) -> torch.Tensor:
    """float32 ``[B, H, W]``: the expected ink density of one quadratic-Bézier stroke per row (pure).

    start, control, end:  ``[B, 2]`` ``(y, x)`` pixels.
    p_start, p_end:       ``[B]`` pressure at the two ends (linear in between).
    radius:               ``[B]`` brush radius in pixels.
    buffers:              reusable scratch memory; when given, the result is a view into it,
                          valid until the next call with the same buffers.

    Coverage is ``1 − exp(−density)``. Each row gets the samples it needs (thin long strokes many,
    fat ones few). Rows are sorted by sample count and all samples laid out flat, so every
    per-sample quantity is computed in one pass for the whole batch; rows with the same count then
    form a contiguous ``[rows, M, size]`` block, and each block is one ``bmm`` — the only per-group
    work.
    """
    if start.shape[0] > ROW_CHUNK:  # bound memory: ≤ ROW_CHUNK · MAX_SAMPLES · 2 · size floats at once
        # Each chunk renders into the shared scratch and is copied out, so a large batch allocates
        # nothing per step either (fresh buffers per chunk made batch 4096 3× slower per stroke).
        buffers = buffers if buffers is not None else RenderBuffers()
        out = buffers.get("chunked", (start.shape[0], canvas_size, canvas_size), start)
        parts = zip(*(t.split(ROW_CHUNK) for t in (start, control, end, p_start, p_end, radius)), strict=True)
        row = 0
        for s, c, e, ps, pe, r in parts:
            out[row : row + len(s)].copy_(stroke_density(s, c, e, ps, pe, r, canvas_size, brush, buffers))
            row += len(s)
        return out
    device, dtype = start.device, start.dtype
    size = canvas_size
    radius = radius * brush.radius_gain
    counts = samples_per_stroke(start, control, end, p_start, p_end, radius, brush)
    counts, order = torch.sort(counts, stable=True)
    # Per-row polynomial coefficients: B(t) = a0 + t·a1 + t²·a2; p(t) = p0 + t·dp (linear ramp).
    curve = bezier_coefficients(start[order], control[order], end[order]).flatten(1)  # [B, 6]
    rows = torch.cat((curve, p_start[order, None], (p_end - p_start)[order, None], radius[order, None]), dim=1)  # [B, 9]
    per_sample = torch.repeat_interleave(rows, counts, dim=0)  # [S, 9]
    total = per_sample.shape[0]
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    steps = torch.repeat_interleave(counts - 1, counts).to(dtype)
    t = ((torch.arange(total, device=device) - first).to(dtype) / steps).unsqueeze(1)  # [S, 1]
    a0, a1, a2 = per_sample[:, 0:2], per_sample[:, 2:4], per_sample[:, 4:6]
    points = a0 + t * (a1 + t * a2)  # [S, 2]
    pressure = per_sample[:, 6] + t[:, 0] * per_sample[:, 7]
    r = per_sample[:, 8]
    # Arc length each sample stands for: half of each neighbouring segment within its own row.
    seg = (points[1:] - points[:-1]).norm(dim=-1) * (first[1:] == first[:-1])
    share = torch.nn.functional.pad(seg, (1, 0)) + torch.nn.functional.pad(seg, (0, 1))
    # Dabs on the share, × opacity × one dab's ink mass: 0.5·share·(dabs/r)·o(p)·profile_mass·r².
    mass = (0.5 * brush.dabs_per_radius * brush.profile_mass) * share * r * brush.opacity(pressure)
    var = _stroke_std(r, pressure, brush) ** 2
    # mass · N(point, var·I) = mass/(2π var) · exp(−d²/(2 var)), split into y and x factors, each
    # exp(coef · (1, c, c²)) at pixel centres c; the normalising constant rides on the y factor.
    k = 0.5 / var
    log_weight = torch.log(mass.clamp_min(1e-30) / (2.0 * math.pi * var))
    # Coordinates relative to the canvas centre halve the magnitudes in the (1, c, c²) expansion,
    # whose float32 cancellation error grows with c².
    middle = 0.5 * size
    y, x = points[:, 0] - middle, points[:, 1] - middle
    coef = torch.stack(
        (
            torch.cat((log_weight - k * y * y, -k * x * x)),
            torch.cat((2.0 * k * y, 2.0 * k * x)),
            torch.cat((-k, -k)),
        ),
        dim=1,
    )  # [2S, 3]
    centres = torch.arange(size, device=device, dtype=dtype) + (0.5 - middle)
    basis = torch.stack((torch.ones_like(centres), centres, centres * centres))  # [3, size]
    # Far tails would underflow to denormals, ~10x slower in exp and in the bmm that follows;
    # exp(-40) ≈ 4e-18 keeps products of two factors normal and is invisible on a canvas.
    # Base 2 (see LOG2E): scaling the [2S, 3] coefficients is cheaper than the [2S, size] result.
    factors = torch.mm(coef.mul_(LOG2E), basis, out=_buffer(buffers, "factors", (2 * total, size), coef))
    factors.clamp_(min=-40.0 * LOG2E).exp2_()
    py, px = factors[:total], factors[total:]
    shape = (start.shape[0], size, size)
    density = _buffer(buffers, "sorted", shape, start)
    groups, sizes = torch.unique_consecutive(counts, return_counts=True)
    row = sample = 0
    for m, n in zip(groups.tolist(), sizes.tolist(), strict=True):
        block = slice(sample, sample + n * m)
        torch.bmm(py[block].view(n, m, size).transpose(1, 2), px[block].view(n, m, size), out=density[row : row + n])
        row, sample = row + n, sample + n * m
    # Back to the callers' row order: a gather by the inverse permutation copies whole rows and
    # is ~3× faster on the CPU than index_copy_'s scatter by ``order``.
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(len(order), device=device))
    return torch.index_select(density, 0, inverse, out=_buffer(buffers, "density", shape, start))


def _buffer(buffers: RenderBuffers | None, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    if buffers is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return buffers.get(name, shape, like)


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
        if brush is DRY_BRUSH and cfg.brush != DRY_BRUSH_NAME:
            log.warning("fast renderer models %s; env.brush %r is only honoured by the libmypaint renderer", DRY_BRUSH_NAME, cfg.brush)
        self.device = resolve_device(str(device) if device is not None else cfg.device)
        self.action_spec = painting_action_spec(cfg)
        self.num_channels = num_channels(cfg)
        self.canvas_size = cfg.canvas_size
        self._background = background_color(cfg).to(self.device)
        self._canvas: torch.Tensor | None = None
        self._brush_state: BrushState | None = None
        self._step = 0
        self._buffers = RenderBuffers()
        self._preview_buffers = RenderBuffers()  # previews never alias the committed step's scratch

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

    def preview(self, candidates: torch.Tensor) -> torch.Tensor:
        """float32 ``[B, K, C, H, W]``: the canvas each of ``K`` candidate actions per episode would
        leave, from the current state; the environment itself does not change (search ranks the
        candidates, then :meth:`step` commits one).

        All ``B·K`` strokes render in one batch, exactly as :meth:`step` would render them.

        Raises:
            ValueError: ``candidates`` is not ``[B, K, A]`` for this batch, or a component is out of range.
            RuntimeError: before ``reset``, or past the episode's last step.
        """
        if self._brush_state is None or self._canvas is None:
            raise RuntimeError("preview() called before reset(batch_size)")
        if self._step >= self.cfg.episode_length - 1:
            raise RuntimeError("preview() after the episode's last step: nothing is left to choose")
        batch = self._canvas.shape[0]
        if candidates.dim() != 3 or candidates.shape[0] != batch or candidates.shape[2] != len(self.action_spec):
            raise ValueError(
                f"candidates must have shape [B={batch}, K, A={len(self.action_spec)}], got {list(candidates.shape)}"
            )
        k = candidates.shape[1]
        flat = candidates.to(self.device).reshape(batch * k, -1)
        strokes = decode_actions(flat, self.action_spec, self.cfg)
        state = BrushState(*(t.repeat_interleave(k, 0) for t in self._brush_state))
        canvas = self._canvas.repeat_interleave(k, 0)
        painted = self._composite(canvas, state, strokes, self._preview_buffers)
        return painted.view(batch, k, *painted.shape[1:])

    def branch(self, rows: torch.Tensor, actions: torch.Tensor) -> tuple[FastPaintEnv, Observation]:
        """A new environment holding episodes ``rows`` (``LongTensor[N]``, repeats allowed) of this
        one after ``actions`` (``LongTensor[N, A]``), and its observation; this one does not change.

        Search's lookahead (:mod:`spiral.learning.search`) previews what could follow an action on
        the branch. The branch shares this environment's configuration, not its scratch buffers.

        Raises:
            ValueError: ``rows`` out of range or not matching ``actions``, or a bad action.
            RuntimeError: before ``reset``, or past the episode's last step.
        """
        if self._brush_state is None or self._canvas is None:
            raise RuntimeError("branch() called before reset(batch_size)")
        batch = self._canvas.shape[0]
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        if rows.dim() != 1 or (rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= batch)):
            raise ValueError(f"rows must be a 1-d index into the {batch} episodes, got shape {list(rows.shape)}")
        if actions.dim() != 2 or actions.shape[0] != rows.shape[0]:
            raise ValueError(f"actions must be [N={rows.shape[0]}, A] (one per branched row), got {list(actions.shape)}")
        child = copy.copy(self)
        child._canvas = self._canvas.index_select(0, rows)
        child._brush_state = BrushState(*(t.index_select(0, rows) for t in self._brush_state))
        child._buffers, child._preview_buffers = RenderBuffers(), RenderBuffers()
        return child, child.step(actions)

    def _paint(self, strokes: StrokeBatch) -> None:
        assert self._canvas is not None and self._brush_state is not None
        self._canvas = self._composite(self._canvas, self._brush_state, strokes, self._buffers)

    def _composite(self, canvas: torch.Tensor, state: BrushState, strokes: StrokeBatch, buffers: RenderBuffers) -> torch.Tensor:
        """The canvas after ``strokes`` from brush ``state`` (a new tensor; moves leave rows as they are)."""
        if not bool(strokes.paint.any()):
            return canvas
        args = (
            state.position,
            strokes.control,
            strokes.end,
            start_pressure(state, strokes),
            strokes.pressure,
            strokes.radius,
        )
        batch, size = len(strokes.paint), self.canvas_size
        if bool(strokes.paint.all()):
            density = stroke_density(*args, size, self.brush, buffers=buffers)
        else:
            # Only painting rows are rendered; moves get zero density and leave their canvas as is.
            rows = strokes.paint.nonzero().squeeze(1)
            start, control, end, p_start, p_end, radius = (a[rows] for a in args)
            painted = stroke_density(start, control, end, p_start, p_end, radius, size, self.brush, buffers=buffers)
            density = buffers.get("all_rows", (batch, size, size), painted).zero_().index_copy_(0, rows, painted)
        # "over": canvas ← canvas − (canvas − colour)·alpha = lerp(colour, canvas, keep) with
        # keep = 1 − alpha = exp(−density): one fused pass instead of four (issue #15). ATen's lerp
        # returns its end operand exactly at weight 1, so where alpha is 0 (moves, far pixels) the
        # canvas stays bit-for-bit the same. A new tensor each step, so canvases handed out in
        # earlier observations never change.
        keep = density.mul_(-LOG2E).exp2_().unsqueeze(1)
        # contiguous(): a grayscale colour is one value expanded over the batch (stride 0), and
        # broadcasting a stride-0 operand sends TensorIterator down a path ~20× slower (2 ms a step).
        color = strokes.color[:, : self.num_channels].contiguous().view(-1, self.num_channels, 1, 1)
        return torch.lerp(color, canvas, keep)

    def _observation(self, mask: torch.Tensor) -> Observation:
        canvas = self.canvas  # raises before the first reset
        batch = canvas.shape[0]
        return Observation(
            canvas=canvas,
            step=torch.full((batch,), self._step, dtype=torch.long, device=self.device),
            episode_length=torch.full((batch,), self.cfg.episode_length, dtype=torch.long, device=self.device),
            action_mask=mask.to(torch.float32),
        )
