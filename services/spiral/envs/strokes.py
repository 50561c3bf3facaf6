"""Pure stroke geometry shared by the painting backends (SPIRAL-NOTES §1).

Everything here is a stateless tensor function: decoding an action batch into stroke parameters,
grid cells into pixel coordinates, sampling the quadratic Bézier, interpolating pressure, and the
brush's between-step state (where it is, how hard it pressed, whether it is lifted). The
``libmypaint`` backend feeds the sampled points to ``stroke_to``; the ``fast`` backend rasterises
them itself, so both execute exactly the same programme.

Coordinates are ``(y, x)`` in canvas pixels, in libmypaint's convention: pixel ``(i, j)`` covers
``[i, i+1) × [j, j+1)``, so its centre sits at ``(i + 0.5, j + 0.5)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from spiral.config import ColorMode, EnvConfig
from spiral.envs.painting_spec import FLAG_PAINT, color_values, ink_color, pressure_values
from spiral.envs.spec import ActionSpec, Component

#: Points on each stroke's Bézier, counting its start (the released environment: 51 → 50 ``stroke_to``).
BEZIER_POINTS = 51


class StrokeBatch(NamedTuple):
    """One step's decoded actions, ``B`` of them.

    paint:     bool ``[B]``; False = move (lift the brush, only ``end`` matters).
    end:       float32 ``[B, 2]`` ``(y, x)`` pixels.
    control:   float32 ``[B, 2]`` ``(y, x)`` pixels.
    pressure:  float32 ``[B]`` in [0.1, 1] (1 when the spec has no ``pressure``).
    radius:    float32 ``[B]`` brush radius in pixels.
    color:     float32 ``[B, 3]`` RGB in [0, 1] (the ink colour for grayscale).
    """

    paint: torch.Tensor
    end: torch.Tensor
    control: torch.Tensor
    pressure: torch.Tensor
    radius: torch.Tensor
    color: torch.Tensor


class BrushState(NamedTuple):
    """Where the brush is between steps.

    position:  float32 ``[B, 2]`` ``(y, x)``: the previous step's end point ((0, 0) after reset).
    pressure:  float32 ``[B]``: the previous paint step's pressure.
    lifted:    bool ``[B]``: True after reset and after a move; a lifted brush does not ramp pressure.
    """

    position: torch.Tensor
    pressure: torch.Tensor
    lifted: torch.Tensor


def cell_to_pixel(cells: torch.Tensor, grid_size: int, canvas_size: int) -> torch.Tensor:
    """float32 ``[..., 2]`` ``(y, x)``: grid cells (``y * grid + x``) scaled by ``canvas / grid``.

    With a 32 grid on a 64 canvas, cells 0..31 along an axis land on pixels 0, 2, ..., 62.
    """
    scale = canvas_size / grid_size
    y = torch.div(cells, grid_size, rounding_mode="floor")
    x = cells - y * grid_size
    return torch.stack((y, x), dim=-1).to(torch.float32) * scale


def bezier_coefficients(start: torch.Tensor, control: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """float32 ``[B, 3, 2]``: ``(a0, a1, a2)`` with ``B(t) = a0 + a1 t + a2 t²`` for the quadratic
    Bézier ``(1-t)² start + 2 (1-t) t control + t² end`` (inputs ``[B, 2]``)."""
    return torch.stack((start, 2.0 * (control - start), start - 2.0 * control + end), dim=1)


def quadratic_bezier(start: torch.Tensor, control: torch.Tensor, end: torch.Tensor, num_points: int) -> torch.Tensor:
    """float32 ``[B, N, 2]``: ``N`` points at evenly spaced ``t`` in [0, 1] on the quadratic Bézier.

    ``B(t) = (1-t)² start + 2 (1-t) t control + t² end``; point 0 is ``start``, point N-1 is ``end``.
    Inputs are ``[B, 2]``.
    """
    t = torch.linspace(0.0, 1.0, num_points, device=start.device).view(1, num_points, 1)
    a0, a1, a2 = bezier_coefficients(start, control, end).unbind(1)
    points = a0.unsqueeze(1) + t * (a1.unsqueeze(1) + t * a2.unsqueeze(1))
    # Pin the ends exactly (the polynomial form rounds differently at t = 1).
    points[:, 0] = start
    points[:, -1] = end
    return points


def interpolate_pressure(start: torch.Tensor, end: torch.Tensor, num_points: int) -> torch.Tensor:
    """float32 ``[B, N]``: pressure ramping linearly from ``start`` to ``end`` (both ``[B]``)."""
    t = torch.linspace(0.0, 1.0, num_points, device=start.device).view(1, num_points)
    return start.unsqueeze(1) + (end - start).unsqueeze(1) * t


def initial_brush_state(batch_size: int, device: torch.device | str = "cpu") -> BrushState:
    """The brush after reset: at (0, 0), lifted (SPIRAL-NOTES §1)."""
    return BrushState(
        position=torch.zeros(batch_size, 2, device=device),
        pressure=torch.zeros(batch_size, device=device),
        lifted=torch.ones(batch_size, dtype=torch.bool, device=device),
    )


def start_pressure(state: BrushState, strokes: StrokeBatch) -> torch.Tensor:
    """float32 ``[B]``: the pressure a paint step starts from.

    It interpolates from the previous paint step's value, except when the brush was lifted (after
    reset or a move): then nothing ramps and the stroke starts at its own pressure.
    """
    return torch.where(state.lifted, strokes.pressure, state.pressure)


def next_brush_state(state: BrushState, strokes: StrokeBatch) -> BrushState:
    """The brush after ``strokes``: at their end points, lifted where they were moves."""
    return BrushState(
        position=strokes.end,
        pressure=torch.where(strokes.paint, strokes.pressure, state.pressure),
        lifted=~strokes.paint,
    )


def decode_actions(actions: torch.Tensor, spec: ActionSpec, cfg: EnvConfig) -> StrokeBatch:
    """Turn ``LongTensor[B, K]`` actions (columns in ``spec.names`` order) into stroke parameters.

    Components the spec lacks take their fixed values: the first brush size, full pressure, the
    ink colour.

    Raises:
        ValueError: wrong type, dtype or shape, or a component outside its range (names the
            component, the value and the valid range; values are never clipped).
    """
    spec.validate(actions)
    actions = actions.long()
    device = actions.device
    batch = actions.shape[0]

    def column(component: Component) -> torch.Tensor:
        return actions[:, spec.index(component)]

    end = cell_to_pixel(column(Component.END), cfg.grid_size, cfg.canvas_size)
    control = cell_to_pixel(column(Component.CONTROL), cfg.grid_size, cfg.canvas_size)
    if spec.has(Component.SIZE):
        radius = torch.tensor(cfg.brush_sizes, dtype=torch.float32, device=device)[column(Component.SIZE)]
    else:
        radius = torch.full((batch,), float(cfg.brush_sizes[0]), device=device)
    if spec.has(Component.PRESSURE):
        pressure = pressure_values(cfg).to(device)[column(Component.PRESSURE)]
    else:
        pressure = torch.ones(batch, device=device)
    if cfg.color == ColorMode.RGB:
        levels = color_values(cfg).to(device)
        color = torch.stack([levels[column(c)] for c in (Component.RED, Component.GREEN, Component.BLUE)], dim=1)
    else:
        color = ink_color(cfg).to(device).expand(batch, 3)
    return StrokeBatch(
        paint=column(Component.FLAG) == FLAG_PAINT,
        end=end,
        control=control,
        pressure=pressure,
        radius=radius,
        color=color,
    )
