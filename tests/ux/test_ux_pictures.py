"""Pictures worth opening (points 8 and 9 of issue 13): labelled grids, curves that keep the
interesting range, one evaluation still visible, the critic's panel, GIFs that decode, SVGs that
parse and draw what the renderer paints, TensorBoard files that tensorboard reads."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from spiral.cli import app
from spiral.config import EnvConfig
from spiral.envs.factory import make_env
from spiral.envs.paint_cli import render_programs
from spiral.envs.painting_spec import painting_action_spec, random_actions
from spiral.envs.svg import SVG_NAMESPACE, programs_svg
from spiral.images import HEADER_HEIGHT, gif_frames, pairs_picture, save_gif, sequence_picture
from spiral.learning.plots import Baseline, Panel, Series, panels_for, plot_panels, y_limits

runner = CliRunner()


def header_has_text(picture: Image.Image, left: int, right: int) -> bool:
    strip = np.asarray(picture.convert("L"))[:HEADER_HEIGHT, left:right]
    return bool((strip > 150).any())


def test_pairs_picture_labels_every_column_target_then_painting():
    targets, canvases = torch.zeros(3, 1, 16, 16), torch.ones(3, 1, 16, 16)
    picture = pairs_picture(targets, canvases, pairs_per_row=3, scale=4, pad=2)
    cell = 16 * 4 + 2 * 4
    assert picture.size == (6 * cell + 8, HEADER_HEIGHT + cell + 8)
    assert all(header_has_text(picture, 8 + i * cell, 8 + (i + 1) * cell - 8) for i in range(6))
    body = np.asarray(picture)[HEADER_HEIGHT:]
    assert body[8 + 10, 8 + 10] == 0 and body[8 + 10, 8 + cell + 10] == 255  # target, then its painting


def test_sequence_picture_numbers_the_steps_after_the_target():
    frames = torch.rand(4, 2, 3, 8, 8)
    picture = sequence_picture(frames, torch.rand(2, 3, 8, 8), scale=4)
    assert picture.size[0] == 5 * (32 + 8) + 8 and picture.size[1] == HEADER_HEIGHT + 2 * (32 + 8) + 8
    with pytest.raises(ValueError, match=r"targets must be \[2, 3, 8, 8\]"):
        sequence_picture(frames, torch.rand(3, 3, 8, 8))


def test_gif_animates_every_step_and_decodes(tmp_path):
    frames = torch.stack([torch.full((2, 1, 8, 8), v) for v in (0.0, 0.5, 1.0)])
    path = save_gif(frames, tmp_path / "a.gif", targets=torch.zeros(2, 1, 8, 8))
    gif = Image.open(path)
    assert gif.format == "GIF" and gif.n_frames == 3 and gif.info.get("loop") == 0
    gif.seek(2)
    assert np.asarray(gif.convert("L"))[HEADER_HEIGHT + 4 :, :].max() == 255
    assert len(gif_frames(frames)) == 3


def test_curves_name_an_off_scale_random_baseline_instead_of_squashing_the_range():
    panel = Panel("held-out L2", (Series("greedy", [1, 2, 3], [0.061, 0.060, 0.058]),), (Baseline("blank canvas", 0.0609, "gray"), Baseline("random policy", 0.247, "red")))
    low, high = y_limits(panel)
    assert low < 0.058 and 0.0609 < high < 0.07  # blank drawn, random named, not drawn


def test_panels_come_from_the_logs_one_evaluation_included_and_the_critic_panel():
    records = [
        {"frames": 100, "updates": 1, "charts/episode_reward": 0.1, "losses/entropy": 2.0},
        {"frames": 100, "updates": 1, "eval/held_out_l2": 0.05, "eval/held_out_l2_sampled": 0.06, "eval/blank_l2": 0.08, "eval/random_l2": 0.2},
    ]
    critic = [{"frames": 50, "charts/d_real": 1.0, "charts/d_fake": -1.0}, {"frames": 100, "charts/d_real": 2.0, "charts/d_fake": -2.0}]
    panels = {p.ylabel: p for p in panels_for(records, critic)}
    assert list(panels) == ["held-out L2", "episode reward", "policy entropy", "critic output"]
    assert panels["held-out L2"].series[0].xs == [100]  # one evaluation: one point, drawn with a marker
    assert [s.label for s in panels["critic output"].series] == ["D(real)", "D(fake)"]
    assert panels["critic output"].series[0].xs == [50, 100]  # on the frames axis


def test_a_single_evaluation_is_visible_in_curves_png(tmp_path):
    panel = Panel("held-out L2", (Series("greedy", [100], [0.05]),), (Baseline("blank canvas", 0.08, "gray"),))
    path = plot_panels([panel], tmp_path / "curves.png")
    array = np.asarray(Image.open(path).convert("RGB")).astype(int)
    blue = (array[..., 2] > 150) & (array[..., 0] < 100)  # matplotlib's first colour, the marker
    assert blue.sum() > 10


def _raster_svg(svg_text: str, size: int) -> np.ndarray:
    """Draw the SVG's quadratic Béziers with PIL: a rough rasteriser for the test only."""
    root = ET.fromstring(svg_text)
    picture = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(picture)
    for path in root.iter(f"{{{SVG_NAMESPACE}}}path"):
        _, x0, y0, _, cx, cy, x1, y1 = path.get("d").split()
        x0, y0, cx, cy, x1, y1 = map(float, (x0, y0, cx, cy, x1, y1))
        t = np.linspace(0, 1, 40)
        xs = (1 - t) ** 2 * x0 + 2 * (1 - t) * t * cx + t**2 * x1
        ys = (1 - t) ** 2 * y0 + 2 * (1 - t) * t * cy + t**2 * y1
        draw.line(list(zip(xs, ys)), fill=255, width=max(1, round(float(path.get("stroke-width")))))
    return np.asarray(picture) > 0


def test_svg_parses_and_draws_where_the_fast_renderer_paints():
    cfg = EnvConfig(canvas_size=64, grid_size=32, brush_sizes=(2.0, 4.0), use_pressure=True)
    spec = painting_action_spec(cfg)
    generator = torch.Generator().manual_seed(0)
    actions = torch.stack([random_actions(spec, 4, generator, paint_only=True) for _ in range(5)])
    svg = programs_svg(actions, cfg, columns=1)
    root = ET.fromstring(svg)
    assert root.tag == f"{{{SVG_NAMESPACE}}}svg" and root.get("height") == str(4 * 64 + 3 * 4)
    paths = list(root.iter(f"{{{SVG_NAMESPACE}}}path"))
    assert len(paths) == 20 and all(p.get("d").split()[3] == "Q" for p in paths)
    assert {p.get("stroke") for p in paths} == {"#ffffff"} and {p.get("stroke-width") for p in paths} <= {"4", "8"}
    painted = render_programs(make_env(cfg), actions)[-1]
    for i in range(4):
        one = programs_svg(actions[:, i : i + 1], cfg)
        drawn = _raster_svg(one, 64)
        ink = painted[i, 0].numpy() > 0.2
        overlap = (drawn & ink).sum() / max(1, (drawn | ink).sum())
        assert overlap > 0.35, f"program {i}: SVG and renderer overlap only {overlap:.2f}"


def test_svg_takes_each_actions_colour_in_rgb():
    cfg = EnvConfig(color="rgb", brush_sizes=(3.0,), use_pressure=False, grid_size=8, canvas_size=32)
    spec = painting_action_spec(cfg)
    action = spec.from_dicts([{"flag": 1, "end": 10, "control": 20, "red": 19, "green": 0, "blue": 0}])
    root = ET.fromstring(programs_svg(action[None], cfg))
    (path,) = root.iter(f"{{{SVG_NAMESPACE}}}path")
    assert path.get("stroke") == "#ff0000" and path.get("stroke-width") == "6"


def test_paint_writes_a_gif_and_an_svg_of_a_program_file(tmp_path):
    program = tmp_path / "p.json"
    program.write_text(json.dumps([{"flag": 1, "end": 100, "control": 500, "pressure": 9, "size": 2}, {"flag": 1, "end": 900, "control": 300, "pressure": 5, "size": 4}]))
    result = runner.invoke(app, ["paint", "--program", str(program), "-o", str(tmp_path / "p.png"), "--gif", str(tmp_path / "p.gif"), "--svg", str(tmp_path / "p.svg")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "p.gif").n_frames == 3  # blank + 2 strokes
    assert len(list(ET.parse(tmp_path / "p.svg").getroot().iter(f"{{{SVG_NAMESPACE}}}path"))) == 2
    assert "painted 1 program(s) of 2 action(s)" in result.output


def test_tensorboard_event_files_hold_scalars_on_the_frames_axis_and_the_pictures(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spiral.learning.trainer import SingleProcessTrainer
    from ux_helpers import tiny_config

    cfg = tiny_config(tmp_path / "run", total_updates=4, eval_every_updates=2)
    SingleProcessTrainer(cfg, resume=False).run(show_progress=False)
    folder = tmp_path / "run" / "tensorboard" / "single-process"
    events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"losses/total", "charts/episode_reward", "eval/held_out_l2", "eval/blank_l2"} <= set(tags["scalars"])
    steps = [e.step for e in events.Scalars("losses/total")]
    assert steps == [16, 32, 48, 64]  # frames: 8 envs × 2 actions per update
    assert {"eval/reconstructions", "eval/painting_sequence"} <= set(tags["images"])
    assert {e.step for e in events.Images("eval/reconstructions")} == {32, 64}


def test_discriminator_learner_logs_on_the_policy_learners_frames_and_to_tensorboard(tmp_path):
    """Its records carry the frames the policy learner reported (GetStatus), so D(real)/D(fake)
    share the x-axis of every other curve (and reach curves.png's critic panel)."""
    from types import SimpleNamespace

    from spiral.learning.run_log import read_log
    from spiral.services.discriminator_learner import DiscriminatorLearner
    from ux_helpers import tiny_config

    cfg = tiny_config(tmp_path / "run", reward={"kind": "discriminator"}, discriminator={"batch_size": 4})
    learner = DiscriminatorLearner(cfg, resume=False)
    statuses = iter([SimpleNamespace(frames=160, updates=0, done=False), SimpleNamespace(frames=176, updates=1, done=True)])
    stub = SimpleNamespace(GetStatus=lambda request, timeout: next(statuses))
    fakes = torch.rand(4, 1, 32, 32)
    replay = SimpleNamespace(sample=lambda batch, timeout: SimpleNamespace(images=SimpleNamespace(canvases=fakes, targets=fakes)))
    try:
        assert learner.run(replay, stub) is True
    finally:
        learner.publisher.close()
    (record,) = [r for r in read_log(tmp_path / "run" / "metrics-discriminator.jsonl") if "charts/d_real" in r]
    assert record["frames"] == 160 and record["updates"] == 0
    assert list((tmp_path / "run" / "tensorboard" / "discriminator-learner").glob("events.out.tfevents.*"))
    critic = [p for p in panels_for([], [record]) if p.ylabel == "critic output"]
    assert critic and critic[0].series[0].xs == [160]
