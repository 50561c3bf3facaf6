"""Pure stroke geometry: grid → pixel, Bézier sampling, pressure ramps, action decoding."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral.config import ColorMode, EnvConfig, InkStyle
from spiral.envs.painting_spec import painting_action_spec
from spiral.envs.strokes import (
    BrushState,
    StrokeBatch,
    cell_to_pixel,
    decode_actions,
    initial_brush_state,
    interpolate_pressure,
    next_brush_state,
    quadratic_bezier,
    start_pressure,
)


def test_cell_to_pixel_unravels_y_then_x_and_scales():
    pixels = cell_to_pixel(torch.tensor([0, 1, 32, 32 * 31 + 31, 5 * 32 + 7]), grid_size=32, canvas_size=64)
    assert pixels.tolist() == [[0.0, 0.0], [0.0, 2.0], [2.0, 0.0], [62.0, 62.0], [10.0, 14.0]]
    assert cell_to_pixel(torch.tensor([9]), grid_size=4, canvas_size=64).tolist() == [[32.0, 16.0]]


def test_quadratic_bezier_matches_the_bernstein_formula():
    start, control, end = torch.tensor([[0.0, 0.0]]), torch.tensor([[10.0, 40.0]]), torch.tensor([[20.0, 0.0]])
    points = quadratic_bezier(start, control, end, 51)
    assert points.shape == (1, 51, 2)
    for i in (0, 10, 25, 50):
        t = i / 50
        expected = (1 - t) ** 2 * start[0] + 2 * (1 - t) * t * control[0] + t**2 * end[0]
        assert torch.allclose(points[0, i], expected, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=6, max_size=6), st.integers(2, 80))
def test_bezier_stays_in_the_control_polygon_hull_and_hits_both_ends(coords, n):
    s, c, e = (torch.tensor([coords[i : i + 2]]) for i in (0, 2, 4))
    points = quadratic_bezier(s, c, e, n)[0]
    assert torch.allclose(points[0], s[0]) and torch.allclose(points[-1], e[0], atol=1e-4)
    stacked = torch.cat((s, c, e))
    assert (points >= stacked.min(0).values - 1e-3).all() and (points <= stacked.max(0).values + 1e-3).all()


def test_interpolate_pressure_is_linear():
    ramp = interpolate_pressure(torch.tensor([0.2, 1.0]), torch.tensor([1.0, 1.0]), 5)
    assert torch.allclose(ramp[0], torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0]))
    assert torch.allclose(ramp[1], torch.ones(5))


def _strokes(paint, pressure):
    n = len(paint)
    return StrokeBatch(
        paint=torch.tensor(paint),
        end=torch.arange(2 * n, dtype=torch.float32).view(n, 2),
        control=torch.zeros(n, 2),
        pressure=torch.tensor(pressure),
        radius=torch.ones(n),
        color=torch.ones(n, 3),
    )


def test_brush_state_starts_lifted_at_origin_and_pressure_ramps_only_when_down():
    state = initial_brush_state(2)
    assert state.position.tolist() == [[0.0, 0.0], [0.0, 0.0]] and state.lifted.all()
    first = _strokes([True, False], [0.5, 0.9])
    # Lifted brush: the stroke starts at its own pressure.
    assert start_pressure(state, first).tolist() == pytest.approx([0.5, 0.9])
    state = next_brush_state(state, first)
    assert state.lifted.tolist() == [False, True]
    assert state.position.tolist() == first.end.tolist()
    second = _strokes([True, True], [1.0, 0.3])
    # Row 0 painted before: ramps from 0.5; row 1 moved (lifted): no ramp.
    assert start_pressure(state, second).tolist() == pytest.approx([0.5, 0.3])


def test_decode_actions_maps_every_component():
    cfg = EnvConfig(color=ColorMode.RGB, color_levels=5, brush_sizes=(1.0, 2.0, 4.0))
    spec = painting_action_spec(cfg)
    actions = spec.from_dicts(
        [{"flag": 1, "end": 33, "control": 2, "size": 2, "pressure": 9, "red": 4, "green": 0, "blue": 2}]
    )
    s = decode_actions(actions, spec, cfg)
    assert s.paint.tolist() == [True]
    assert s.end.tolist() == [[2.0, 2.0]] and s.control.tolist() == [[0.0, 4.0]]
    assert s.radius.tolist() == [4.0] and s.pressure.tolist() == pytest.approx([1.0])
    assert s.color.tolist() == [[1.0, 0.0, 0.5]]


def test_decode_actions_fills_dropped_components():
    cfg = EnvConfig(brush_sizes=(3.0,), use_pressure=False, ink=InkStyle.BLACK_ON_WHITE)
    spec = painting_action_spec(cfg)
    s = decode_actions(torch.tensor([[0, 5, 6]]), spec, cfg)
    assert s.paint.tolist() == [False] and s.radius.tolist() == [3.0] and s.pressure.tolist() == [1.0]
    assert s.color.tolist() == [[0.0, 0.0, 0.0]]  # black ink on white paper


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        pytest.param(torch.tensor([[1, 1024, 0, 0, 0]]), r"'end' of batch row 0 is 1024; valid range is 0..1023", id="end-out-of-range"),
        pytest.param(torch.tensor([[1, 5, 5, 6, 0]]), r"'size' of batch row 0 is 6; valid range is 0..5", id="size-out-of-range"),
        pytest.param(torch.tensor([[0, 5, 5, 0, 0], [2, 5, 5, 0, 0]]), r"'flag' of batch row 1 is 2; valid range is 0..1", id="flag-row-1"),
        pytest.param(torch.tensor([[1, 5, 5, 0, -1]]), r"'pressure' of batch row 0 is -1", id="negative"),
        pytest.param(torch.tensor([[1, 5, 5, 0]]), r"shape \[B, 5\] with columns \['flag', 'end', 'control', 'size', 'pressure'\]", id="missing-component"),
        pytest.param(torch.tensor([1, 5, 5, 0, 0]), r"shape \[B, 5\]", id="1-d"),
        pytest.param(torch.tensor([[1.0, 5, 5, 0, 0]]), r"integer tensor", id="float-dtype"),
        pytest.param([[1, 5, 5, 0, 0]], r"torch.Tensor", id="list"),
    ],
)
def test_decode_actions_rejects_bad_input_naming_the_problem(actions, message):
    cfg = EnvConfig()
    with pytest.raises(ValueError, match=message):
        decode_actions(actions, painting_action_spec(cfg), cfg)


def test_brush_state_is_a_named_tuple():
    assert BrushState._fields == ("position", "pressure", "lifted")
