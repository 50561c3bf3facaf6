"""The painting action spec per configuration, the action mask and value tables (SPIRAL-NOTES §1)."""

from __future__ import annotations

import pytest
import torch

from spiral.config import ColorMode, EnvConfig, InkStyle
from spiral.envs.painting_spec import (
    action_mask,
    background_color,
    color_values,
    ink_color,
    painting_action_spec,
    pressure_values,
    random_actions,
)
from spiral.envs.spec import Component

CASES = [
    pytest.param({}, ["flag", "end", "control", "size", "pressure"], [2, 1024, 1024, 6, 10], id="default"),
    pytest.param({"brush_sizes": (3.0,)}, ["flag", "end", "control", "pressure"], [2, 1024, 1024, 10], id="one-size-drops-size"),
    pytest.param({"use_pressure": False}, ["flag", "end", "control", "size"], [2, 1024, 1024, 6], id="no-pressure"),
    pytest.param(
        {"color": ColorMode.RGB, "color_levels": 5},
        ["flag", "end", "control", "size", "pressure", "red", "green", "blue"],
        [2, 1024, 1024, 6, 10, 5, 5, 5],
        id="rgb-adds-colours",
    ),
    pytest.param(
        {"grid_size": 8, "brush_sizes": (1.0,), "use_pressure": False},
        ["flag", "end", "control"],
        [2, 64, 64],
        id="minimal-grid-8",
    ),
    pytest.param({"pressure_levels": 4, "brush_sizes": (1.0, 2.0)}, ["flag", "end", "control", "size", "pressure"], [2, 1024, 1024, 2, 4], id="levels"),
]


@pytest.mark.parametrize(("overrides", "names", "sizes"), CASES)
def test_action_spec_per_configuration(overrides, names, sizes):
    spec = painting_action_spec(EnvConfig(**overrides))
    assert list(spec.names) == names
    assert list(spec.sizes) == sizes


def test_action_spec_follows_policy_head_order_and_marks_spatial_components():
    cfg = EnvConfig(color=ColorMode.RGB, grid_size=16)
    spec = painting_action_spec(cfg)
    order = [c.value for c in Component]
    assert [order.index(n) for n in spec.names] == sorted(order.index(n) for n in spec.names)
    spatial = {c.name.value: c.grid for c in spec.components if c.spatial}
    assert spatial == {"end": 16, "control": 16}
    assert spec.components[spec.index("end")].size == 16 * 16


def test_action_mask_after_move_paint_and_reset_semantics():
    spec = painting_action_spec(EnvConfig(color=ColorMode.RGB))
    mask = action_mask(spec, torch.tensor([0, 1]))
    move = dict(zip(spec.names, mask[0].tolist()))
    assert move == {"flag": 1, "end": 1, "control": 0, "size": 0, "pressure": 0, "red": 0, "green": 0, "blue": 0}
    assert mask[1].tolist() == [1.0] * len(spec)
    assert mask.dtype == torch.float32


def test_value_tables():
    cfg = EnvConfig(pressure_levels=10, color_levels=20)
    assert torch.allclose(pressure_values(cfg), torch.linspace(0.1, 1.0, 10))
    assert color_values(cfg)[0] == 0.0 and color_values(cfg)[-1] == 1.0 and len(color_values(cfg)) == 20


@pytest.mark.parametrize(
    ("ink", "color", "background", "ink_value"),
    [
        (InkStyle.WHITE_ON_BLACK, ColorMode.GRAYSCALE, [0.0], 1.0),
        (InkStyle.BLACK_ON_WHITE, ColorMode.GRAYSCALE, [1.0], 0.0),
        (InkStyle.BLACK_ON_WHITE, ColorMode.RGB, [1.0, 1.0, 1.0], 0.0),
    ],
)
def test_background_and_ink_follow_ink_style(ink, color, background, ink_value):
    cfg = EnvConfig(ink=ink, color=color)
    assert background_color(cfg).tolist() == background
    assert ink_color(cfg).tolist() == [ink_value] * 3


def test_random_actions_are_valid_and_paint_only_sets_flag():
    spec = painting_action_spec(EnvConfig(color=ColorMode.RGB))
    actions = random_actions(spec, 500, torch.Generator().manual_seed(0))
    spec.validate(actions)
    assert set(actions[:, 0].tolist()) == {0, 1}
    painted = random_actions(spec, 50, torch.Generator().manual_seed(0), paint_only=True)
    assert painted[:, 0].eq(1).all()
