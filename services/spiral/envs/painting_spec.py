"""The painting environment's action spec and value tables (SPIRAL-NOTES §1).

Both painting backends (``libmypaint`` and ``fast``), ``spiral paint`` and the policy head build
their :class:`~spiral.envs.spec.ActionSpec` here, so the component set, sizes and column order can
never differ between them. Columns follow :class:`~spiral.envs.spec.Component` order (the policy
head's decoding order: flag, end, control, size, pressure, red, green, blue); components a
configuration does not use are dropped.
"""

from __future__ import annotations

import torch

from spiral.config import ColorMode, EnvConfig, InkStyle
from spiral.envs.spec import ActionSpec, Component, ComponentSpec

#: Pressure values are ``linspace(PRESSURE_MIN, 1, pressure_levels)`` (the released environment's table).
PRESSURE_MIN = 0.1

#: Components that matter after a move (the brush is lifted, only the destination counts).
MOVE_COMPONENTS = frozenset({Component.FLAG, Component.END})

#: ``flag`` values.
FLAG_MOVE = 0
FLAG_PAINT = 1


def painting_action_spec(cfg: EnvConfig) -> ActionSpec:
    """The action spec of a painting environment configured by ``cfg``.

    ``size`` is dropped when ``cfg.brush_sizes`` has one entry, ``pressure`` when
    ``cfg.use_pressure`` is false, and ``red``/``green``/``blue`` for grayscale.
    """
    cells = cfg.grid_size * cfg.grid_size
    components = [
        ComponentSpec(Component.FLAG, 2),
        ComponentSpec(Component.END, cells, grid=cfg.grid_size),
        ComponentSpec(Component.CONTROL, cells, grid=cfg.grid_size),
    ]
    if len(cfg.brush_sizes) > 1:
        components.append(ComponentSpec(Component.SIZE, len(cfg.brush_sizes)))
    if cfg.use_pressure:
        components.append(ComponentSpec(Component.PRESSURE, cfg.pressure_levels))
    if cfg.color == ColorMode.RGB:
        components += [ComponentSpec(c, cfg.color_levels) for c in (Component.RED, Component.GREEN, Component.BLUE)]
    return ActionSpec(tuple(components))


def num_channels(cfg: EnvConfig) -> int:
    """Canvas channels: 1 for grayscale, 3 for RGB."""
    return 3 if cfg.color == ColorMode.RGB else 1


def pressure_values(cfg: EnvConfig) -> torch.Tensor:
    """float32 ``[pressure_levels]``: the pressure each ``pressure`` value stands for."""
    return torch.linspace(PRESSURE_MIN, 1.0, cfg.pressure_levels)


def color_values(cfg: EnvConfig) -> torch.Tensor:
    """float32 ``[color_levels]``: the channel intensity each ``red``/``green``/``blue`` value stands for."""
    return torch.linspace(0.0, 1.0, cfg.color_levels)


def background_color(cfg: EnvConfig) -> torch.Tensor:
    """float32 ``[C]``: the blank canvas (black for white-on-black, white for black-on-white)."""
    value = 0.0 if cfg.ink == InkStyle.WHITE_ON_BLACK else 1.0
    return torch.full((num_channels(cfg),), value)


def ink_color(cfg: EnvConfig) -> torch.Tensor:
    """float32 ``[3]``: the paint colour of grayscale strokes (the opposite of the background)."""
    value = 1.0 if cfg.ink == InkStyle.WHITE_ON_BLACK else 0.0
    return torch.full((3,), value)


def action_mask(spec: ActionSpec, flags: torch.Tensor) -> torch.Tensor:
    """float32 ``[B, K]``: which components of actions with these ``flags`` mattered.

    After a move only ``flag`` and ``end`` matter; after a paint step every component does.
    """
    move_row = torch.tensor([1.0 if c.name in MOVE_COMPONENTS else 0.0 for c in spec.components])
    paint = (flags == FLAG_PAINT).to(torch.float32).unsqueeze(1)
    return paint + (1.0 - paint) * move_row.to(flags.device).unsqueeze(0)


def random_actions(
    spec: ActionSpec, batch_size: int, generator: torch.Generator | None = None, paint_only: bool = False
) -> torch.Tensor:
    """int64 ``[B, K]``: every component uniform over its range (``flag`` = paint if ``paint_only``).

    Random programmes for ``spiral paint --random``, the backend-fidelity test and the benchmark.
    """
    columns = [torch.randint(0, size, (batch_size,), generator=generator) for size in spec.sizes]
    actions = torch.stack(columns, dim=1)
    if paint_only:
        actions[:, spec.index(Component.FLAG)] = FLAG_PAINT
    return actions
