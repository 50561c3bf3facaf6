"""Stroke semantics, observations and bad-input errors, run against BOTH painting backends.

The same assertions hold for the real libmypaint and for the fast torch renderer: that is the
contract that lets an agent trained on one be run on the other.
"""

from __future__ import annotations

import pytest
import torch

from spiral.config import ColorMode, EnvConfig, InkStyle, Renderer
from spiral.envs.factory import make_env
from spiral.envs.strokes import quadratic_bezier

BACKENDS = [Renderer.FAST, Renderer.LIBMYPAINT]
GRID = 32


def cell(y: int, x: int, grid: int = GRID) -> int:
    return y * grid + x


def env_for(renderer: Renderer, **overrides):
    return make_env(EnvConfig(renderer=renderer, **overrides))


def act(env, **components) -> torch.Tensor:
    """One action row (defaults 0) as a [1, K] batch."""
    return torch.tensor([[components.get(n, 0) for n in env.action_spec.names]])


def batch(env, rows: list[dict]) -> torch.Tensor:
    return torch.tensor([[row.get(n, 0) for n in env.action_spec.names] for row in rows])


@pytest.fixture(params=BACKENDS, ids=[r.value for r in BACKENDS])
def renderer(request) -> Renderer:
    return request.param


@pytest.mark.parametrize(
    ("ink", "color", "channels", "blank"),
    [
        (InkStyle.WHITE_ON_BLACK, ColorMode.GRAYSCALE, 1, 0.0),
        (InkStyle.BLACK_ON_WHITE, ColorMode.GRAYSCALE, 1, 1.0),
        (InkStyle.BLACK_ON_WHITE, ColorMode.RGB, 3, 1.0),
    ],
)
def test_reset_gives_blank_canvas_and_zero_mask(renderer, ink, color, channels, blank):
    env = env_for(renderer, ink=ink, color=color, episode_length=7)
    obs = env.reset(3)
    assert obs.canvas.shape == (3, channels, 64, 64) and obs.canvas.dtype == torch.float32
    # libmypaint's fresh surface is 0xFFFF everywhere until cleared: blank means exactly background.
    assert torch.equal(obs.canvas, torch.full_like(obs.canvas, blank))
    assert obs.step.tolist() == [0, 0, 0] and obs.episode_length.tolist() == [7, 7, 7]
    assert obs.action_mask.shape == (3, len(env.action_spec)) and not obs.action_mask.any()
    assert torch.equal(env.canvas, obs.canvas)
    assert env.num_channels == channels and env.canvas_size == 64


def test_move_paints_nothing_and_masks_only_flag_and_end(renderer):
    env = env_for(renderer)
    env.reset(1)
    obs = env.step(act(env, flag=0, end=cell(20, 20), control=cell(5, 30), size=5, pressure=9))
    assert not obs.canvas.any(), "a move must not leave ink"
    assert dict(zip(env.action_spec.names, obs.action_mask[0].tolist())) == {
        "flag": 1.0, "end": 1.0, "control": 0.0, "size": 0.0, "pressure": 0.0,
    }
    assert obs.step.tolist() == [1]


def test_paint_marks_pixels_along_the_curve_and_nowhere_else(renderer):
    env = env_for(renderer)
    env.reset(1)
    start, control, end = (10, 6), (2, 28), (25, 25)  # grid cells (y, x)
    env.step(act(env, flag=0, end=cell(*start)))
    obs = env.step(act(env, flag=1, end=cell(*end), control=cell(*control), size=1, pressure=4))  # r=2, p=0.5
    assert obs.action_mask[0].tolist() == [1.0] * 5
    canvas = obs.canvas[0, 0]
    pixel = lambda c: torch.tensor([[2.0 * c[0], 2.0 * c[1]]])  # noqa: E731
    curve = quadratic_bezier(pixel(start), pixel(control), pixel(end), 41)[0]
    # Ink on (almost) every point of the curve: dry_brush scatters dabs, so allow a few gaps.
    on_curve = torch.stack([canvas[int(y), int(x)] for y, x in curve[4:-4].tolist()])
    assert (on_curve > 0.2).float().mean() > 0.9, on_curve
    # Nothing far from the curve (distance > 12 px).
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    grid = torch.stack((ys, xs), -1).view(-1, 1, 2)
    dense = quadratic_bezier(pixel(start), pixel(control), pixel(end), 400)[0]
    distance = (grid - dense.unsqueeze(0)).norm(dim=-1).min(dim=1).values.view(64, 64)
    assert canvas[distance > 12].max() < 0.02
    assert canvas[distance < 1.5].mean() > 0.3


def test_brush_starts_at_origin_and_move_keeps_x_and_y_apart(renderer):
    """No `x = y` bug: after a move to (y=4, x=28) the next stroke starts there, not at (4, 4)."""
    env = env_for(renderer)
    env.reset(2)
    env.step(batch(env, [{"flag": 1, "end": cell(8, 8), "control": cell(4, 4), "size": 1, "pressure": 9}, {"flag": 0, "end": cell(4, 28)}]))
    obs = env.step(batch(env, [{"flag": 0, "end": cell(8, 8)}, {"flag": 1, "end": cell(4, 20), "control": cell(4, 24), "size": 1, "pressure": 9}]))
    first, second = obs.canvas[0, 0], obs.canvas[1, 0]
    assert first[:3, :3].max() > 0.2, "the first stroke starts at (0, 0)"
    assert second[7:10, 50:57].max() > 0.2, "the stroke after the move starts at its end point (8, 56)"
    assert second[7:10, 7:10].max() < 0.02, "nothing at (y, y)"


def test_pressure_changes_opacity(renderer):
    env = env_for(renderer, brush_sizes=(2.0,))
    env.reset(2)
    env.step(batch(env, [{"flag": 0, "end": cell(16, 4)}] * 2))
    stroke = {"flag": 1, "end": cell(16, 28), "control": cell(16, 16)}
    obs = env.step(batch(env, [{**stroke, "pressure": 0}, {**stroke, "pressure": 6}]))  # p = 0.1 and 0.7
    light, heavy = obs.canvas[0, 0], obs.canvas[1, 0]
    assert light.sum() > 5, "low pressure still paints"
    assert heavy.sum() > 2.0 * light.sum()
    assert heavy[30:34, 16:48].mean() > light[30:34, 16:48].mean() + 0.2


def test_colour_lands_as_given(renderer):
    env = env_for(renderer, color=ColorMode.RGB, color_levels=21, brush_sizes=(4.0,))
    env.reset(1)
    env.step(act(env, flag=0, end=cell(16, 4)))
    obs = env.step(act(env, flag=1, end=cell(16, 28), control=cell(16, 16), pressure=9, red=20, green=0, blue=10))
    canvas = obs.canvas[0]
    inked = canvas[0] > 0.6  # black background: red channel = 1.0 × coverage
    assert inked.sum() > 50
    red, green, blue = canvas[0][inked], canvas[1][inked], canvas[2][inked]
    assert green.max() < 0.02
    assert torch.allclose(blue / red, torch.full_like(red, 0.5), atol=0.03)


def test_black_on_white_ink_darkens_the_paper(renderer):
    env = env_for(renderer, ink=InkStyle.BLACK_ON_WHITE, brush_sizes=(4.0,))
    env.reset(1)
    obs = env.step(act(env, flag=1, end=cell(20, 20), control=cell(10, 10), pressure=9))
    canvas = obs.canvas[0, 0]
    assert canvas.min() < 0.2 and canvas.max() == 1.0 and canvas[50:, :10].min() > 0.999


def test_strokes_accumulate_and_earlier_observations_are_not_mutated(renderer):
    env = env_for(renderer)
    env.reset(1)
    first = env.step(act(env, flag=1, end=cell(10, 30), control=cell(5, 15), size=1, pressure=9)).canvas
    snapshot = first.clone()
    second = env.step(act(env, flag=1, end=cell(30, 5), control=cell(20, 20), size=1, pressure=9)).canvas
    assert torch.equal(first, snapshot)
    assert (second >= first - 1e-6).all() and second.sum() > first.sum() + 10


def test_episode_has_length_minus_one_actions_then_refuses(renderer):
    env = env_for(renderer, episode_length=3)
    env.reset(2)
    obs = env.step(batch(env, [{"flag": 0, "end": 1}] * 2))
    assert not obs.done.any()
    obs = env.step(batch(env, [{"flag": 0, "end": 2}] * 2))
    assert obs.done.all() and obs.step.tolist() == [2, 2]
    with pytest.raises(RuntimeError, match=r"episode is over: it has taken all 2 actions of episode_length 3"):
        env.step(batch(env, [{"flag": 0, "end": 3}] * 2))
    env.reset(2)  # a reset starts a new episode
    env.step(batch(env, [{"flag": 0, "end": 3}] * 2))


def test_step_before_reset_and_canvas_before_reset_raise(renderer):
    env = env_for(renderer)
    with pytest.raises(RuntimeError, match=r"before reset"):
        env.step(act(env, flag=0))
    with pytest.raises(RuntimeError, match=r"call reset\(batch_size\) first"):
        _ = env.canvas
    with pytest.raises(ValueError, match=r"batch_size must be ≥ 1, got 0"):
        env.reset(0)


@pytest.mark.parametrize(
    ("make_actions", "message"),
    [
        pytest.param(lambda: torch.tensor([[1, 1024, 0, 0, 0]] * 2), r"component 'end' of batch row 0 is 1024; valid range is 0..1023", id="out-of-range"),
        pytest.param(lambda: torch.tensor([[1, 5, 0, 0, 0], [1, 5, 0, 0, 10]]), r"component 'pressure' of batch row 1 is 10; valid range is 0..9", id="pressure-row-1"),
        pytest.param(lambda: torch.tensor([[1, 5, 0, 0]] * 2), r"shape \[B, 5\] with columns \['flag', 'end', 'control', 'size', 'pressure'\], got shape \[2, 4\]", id="missing-component"),
        pytest.param(lambda: torch.zeros(2, 5), r"integer tensor \(int64\), got dtype torch.float32", id="float"),
        pytest.param(lambda: torch.zeros(3, 5, dtype=torch.long), r"batch size 3, the environment was reset with 2", id="batch-size"),
        pytest.param(lambda: [[0, 0, 0, 0, 0]] * 2, r"must be a torch.Tensor", id="list"),
    ],
)
def test_bad_actions_raise_value_error_naming_the_problem(renderer, make_actions, message):
    env = env_for(renderer)
    env.reset(2)
    before = env.canvas.clone()
    with pytest.raises(ValueError, match=message):
        env.step(make_actions())
    # Nothing was clipped and painted: the canvas and step counter are unchanged.
    assert torch.equal(env.canvas, before)
    assert env.step(torch.zeros(2, 5, dtype=torch.long)).step.tolist() == [1, 1]


def test_small_grid_and_non_tile_canvas(renderer):
    """A canvas that is not a multiple of libmypaint's 64-px tiles, and a coarse grid."""
    env = env_for(renderer, canvas_size=80, grid_size=8, brush_sizes=(3.0,), use_pressure=False)
    assert list(env.action_spec.names) == ["flag", "end", "control"]
    obs = env.reset(1)
    assert obs.canvas.shape == (1, 1, 80, 80)
    obs = env.step(torch.tensor([[1, cell(7, 7, 8), cell(7, 0, 8)]]))  # ends at pixel (70, 70), past the first tile
    canvas = obs.canvas[0, 0]
    # The curve's end and its midpoint B(0.5) = (52.5, 17.5) are inked; the far corner is not.
    assert canvas[68:73, 68:73].max() > 0.3 and canvas[51:55, 16:20].max() > 0.3 and canvas[:10, 60:].max() < 0.02
