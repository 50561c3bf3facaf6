"""`spiral paint`: random and file programs, both backends, the sequence grid, error messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from spiral.config import ColorMode, EnvConfig
from spiral.envs.paint_cli import paint_command, programs_document, programs_to_actions, read_programs
from spiral.envs.painting_spec import painting_action_spec
from spiral.images import HEADER_HEIGHT

app = typer.Typer()
app.command()(paint_command)
runner = CliRunner()

PROGRAM = [
    {"flag": 0, "end": 3 * 32 + 3, "control": 0, "pressure": 0, "size": 0},
    {"flag": 1, "end": 28 * 32 + 20, "control": 5 * 32 + 28, "pressure": 9, "size": 2},
    {"flag": 1, "end": 10 * 32 + 25, "control": 20 * 32 + 2, "pressure": 5, "size": 1},
]


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    return result


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.float32) / 255.0


@pytest.mark.parametrize("renderer", ["fast", "libmypaint"])
def test_paint_a_program_file(tmp_path, renderer):
    program = tmp_path / "program.json"
    program.write_text(json.dumps(PROGRAM))
    out = tmp_path / "out.png"
    result = invoke("--program", str(program), "--renderer", renderer, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"painted 1 program(s) of 3 action(s) with {renderer}" in result.output
    image = png(out)
    assert image.shape == (64, 64)
    assert image.max() > 0.8 and (image > 0.3).mean() > 0.03  # white ink on black
    assert image[:4, 60:].max() < 0.05  # the far corner stays blank


def test_paint_random_grid_with_options(tmp_path):
    out = tmp_path / "grid.png"
    result = invoke("--random", "5", "-n", "4", "--seed", "3", "--set", "color=rgb", "--set", "env.ink=black_on_white",
                    "--set", "canvas_size=32", "--set", "grid_size=16", "--set", "brush_sizes=[1,2]", "--set", "use_pressure=false",
                    "--scale", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    image = png(out)
    assert image.shape == (2 * (2 * 32 + 3 * 2), 2 * (2 * 32 + 3 * 2), 3)  # 2×2 grid, pad 2, scale 2
    canvas = image[4:68, 4:68]  # the first canvas, scaled
    assert canvas.max() == 1.0 and canvas.min() < 0.7  # coloured ink on white paper


def test_same_seed_same_picture(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for out in (a, b):
        assert invoke("--random", "4", "-n", "2", "--seed", "7", "--out", str(out)).exit_code == 0
    assert np.array_equal(png(a), png(b))


def test_sequence_writes_every_step(tmp_path):
    program = tmp_path / "program.json"
    program.write_text(json.dumps(PROGRAM))
    out = tmp_path / "seq.png"
    result = invoke("--program", str(program), "--sequence", "--out", str(out))
    assert result.exit_code == 0, result.output
    image = png(out)
    # Blank + 3 steps in one row, under a header row of step numbers (HEADER_HEIGHT pixels): the
    # header is new with the labelled pictures (issue 13), the frames are where they were below it.
    assert image.shape == (HEADER_HEIGHT + 64 + 4, 4 * 66 + 2)
    frames = [image[HEADER_HEIGHT + 2 : HEADER_HEIGHT + 66, 2 + 66 * i : 66 + 66 * i] for i in range(4)]
    assert frames[0].max() == 0 and frames[1].max() == 0  # blank, then a move
    assert frames[2].sum() > 20 and frames[3].sum() > frames[2].sum() + 10
    header = image[:HEADER_HEIGHT]
    assert header.max() > 0.8 and (header > 0.5).mean() < 0.3  # light label text on a dark strip


def test_programs_object_with_config_several_images(tmp_path):
    cfg = EnvConfig(color=ColorMode.RGB, brush_sizes=(2.0, 4.0))
    spec = painting_action_spec(cfg)
    actions = torch.stack([torch.tensor([[1, 40, 900, 1, 9, 19, 0, 0], [1, 900, 40, 0, 5, 0, 19, 0]])] * 2)
    doc = programs_document(cfg, actions)
    doc["programs"][1] = doc["programs"][1][:1]  # programs may differ in length
    path = tmp_path / "programs.json"
    path.write_text(json.dumps(doc))
    parsed = read_programs(path)
    assert parsed.env["color"] == "rgb" and len(parsed.programs) == 2
    padded = programs_to_actions(spec, parsed.programs)
    assert padded.shape == (2, 2, 8) and padded[1, 1, 0] == 0 and padded[1, 1, 1] == 900  # padded with a move
    out = tmp_path / "out.png"
    result = invoke("--program", str(path), "--renderer", "libmypaint", "--out", str(out))
    assert result.exit_code == 0, result.output
    image = png(out)
    assert image.shape == (68, 134, 3)
    first, second = image[2:66, 2:66], image[2:66, 68:132]
    assert first[..., 0].max() > 0.8 and first[..., 1].max() < 0.05  # red ink
    assert second[..., 1].max() > 0.8 and second[..., 0].max() < 0.05  # green ink


@pytest.mark.parametrize(
    ("program", "message"),
    [
        pytest.param([{**PROGRAM[0]}, {**PROGRAM[1], "end": 1024}], "action 1: component 'end' is 1024; valid range is 0..1023", id="out-of-range"),
        pytest.param([{k: v for k, v in PROGRAM[0].items() if k != "pressure"}], "action 0: missing components ['pressure']", id="missing"),
        pytest.param([{**PROGRAM[0], "red": 3}], "unknown components ['red']", id="unknown"),
        pytest.param([{**PROGRAM[0], "size": 1.5}], "action 0: component 'size' must be an integer, got 1.5", id="float"),
        pytest.param({"programs": [PROGRAM, [PROGRAM[0], {**PROGRAM[1], "flag": 2}]]}, "program 1, action 1: component 'flag' is 2; valid range is 0..1", id="second-program"),
        pytest.param({"programs": "x"}, "'programs' must be a non-empty list", id="programs-not-a-list"),
        pytest.param({"config": {"grid_size": 99}, "programs": [PROGRAM]}, "env.grid_size", id="bad-config"),
    ],
)
def test_bad_programs_name_the_action_and_component(tmp_path, program, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(program))
    result = invoke("--program", str(path), "--out", str(tmp_path / "x.png"))
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split()), result.output
    assert not (tmp_path / "x.png").exists()


def test_conflicting_and_bad_options(tmp_path):
    program = tmp_path / "p.json"
    program.write_text(json.dumps(PROGRAM))
    result = invoke("--program", str(program), "--random", "3")
    assert result.exit_code == 2 and "either --program FILE or --random N" in result.output
    result = invoke("--random", "3", "--set", "brush=classic/nope", "--renderer", "libmypaint", "--out", str(tmp_path / "x.png"))
    assert result.exit_code == 2 and "classic/nope" in result.output and "classic/dry_brush" in result.output
    result = invoke("--random", "3", "--set", "grid_sise=16", "--out", str(tmp_path / "x.png"))
    assert result.exit_code == 2 and "grid_sise" in result.output
    result = invoke("--random", "3", "--set", "grid_size", "--out", str(tmp_path / "x.png"))
    assert result.exit_code == 2 and "KEY=VALUE" in result.output
    result = invoke("--program", str(tmp_path / "missing.json"))
    assert result.exit_code == 2 and "cannot read program file" in result.output
