"""The public Python API (point 10 of issue 13): the README's five-line example runs as written,
`import spiral` loads no torch, checkpoints load from str paths; `spiral sample --seed` picks
the targets (point 7)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import spiral
from spiral.cli import app
from spiral.learning.trainer import SingleProcessTrainer
from ux_helpers import tiny_config

ROOT = Path(__file__).resolve().parents[2]


def readme_api_example() -> str:
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.+?)\n```", section, flags=re.S)
    return code


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny trained run at ``<cwd>/runs/default``, where the README's example looks."""
    cwd = tmp_path_factory.mktemp("api")
    cfg = tiny_config(cwd / "runs" / "default", total_updates=2, eval_every_updates=1000)
    SingleProcessTrainer(cfg, resume=False).run(show_progress=False)
    return cwd


def test_the_readme_example_is_five_lines_and_runs_as_written(trained_run, monkeypatch):
    code = readme_api_example()
    assert len(code.splitlines()) == 5
    monkeypatch.chdir(trained_run)
    Image.fromarray((np.random.default_rng(0).random((48, 48)) * 255).astype(np.uint8)).save("drawing.png")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    canvases, programs = namespace["canvases"], namespace["programs"]
    assert canvases.shape == (1, 1, 32, 32) and len(programs) == 1 and len(programs[0]) == 2
    assert Image.open("painted.png").size == (36, 36)
    assert Path("painted.svg").read_text().startswith("<svg")


def test_import_spiral_loads_no_torch_and_names_the_api():
    code = "import sys, spiral; assert 'torch' not in sys.modules; print(sorted(spiral.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "load_agent" in out and "make_env" in out and "load_config" in out
    with pytest.raises(AttributeError, match="the public API is"):
        spiral.nonexistent  # noqa: B018


def test_paint_is_deterministic_and_programs_repaint_the_canvases(trained_run):
    agent = spiral.load_agent(str(trained_run / "runs" / "default" / "checkpoints"))  # a str path
    targets = agent.dataset().held_out[:3]
    first, again = agent.paint(targets), agent.paint(targets)
    torch.testing.assert_close(first.canvases, again.canvases)
    env = spiral.make_env(agent.config)
    from spiral.envs.paint_cli import programs_to_actions, render_programs

    repainted = render_programs(env, programs_to_actions(env.action_spec, first.programs))[-1]
    torch.testing.assert_close(repainted, first.canvases)
    assert agent.paint_steps(targets).shape == (3, 3, 1, 32, 32)  # blank + 2 actions
    with pytest.raises(ValueError, match=r"targets must be \[N, 1, 32, 32\]"):
        agent.paint(torch.zeros(2, 1, 16, 16))


def test_load_checkpoint_and_load_config_take_plain_strings(trained_run):
    payload = spiral.load_checkpoint(str(trained_run / "runs" / "default" / "checkpoints"))
    assert payload["counters"]["updates"] == 2
    assert spiral.load_config("mnist", {"data.path": "x"}).data.name.value == "mnist"


def test_sample_seed_picks_different_targets_and_the_same_seed_repeats(trained_run, tmp_path):
    runner = CliRunner()
    checkpoint = str(trained_run / "runs" / "default" / "checkpoints")

    def sample(seed: int, name: str) -> bytes:
        out = tmp_path / f"{name}.png"
        result = runner.invoke(app, ["sample", "--checkpoint", checkpoint, "-o", str(out), "-n", "4", "--seed", str(seed)])
        assert result.exit_code == 0, result.output
        return Image.open(out).tobytes()

    assert sample(0, "a") != sample(1, "b")
    assert sample(1, "c") == sample(1, "b")


def test_sample_writes_a_labelled_grid_a_gif_and_an_svg(trained_run, tmp_path):
    out = tmp_path / "s.png"
    result = CliRunner().invoke(
        app, ["sample", "--checkpoint", str(trained_run / "runs" / "default" / "checkpoints"), "-o", str(out), "-n", "3", "--gif", str(tmp_path / "s.gif"), "--svg", str(tmp_path / "s.svg")]
    )
    assert result.exit_code == 0, result.output
    from spiral.images import HEADER_HEIGHT

    assert Image.open(out).size[1] == HEADER_HEIGHT + 2 * (32 + 2) + 2 * 2  # one row of pairs under the header, scale 2
    assert Image.open(tmp_path / "s.gif").n_frames == 3
    assert json.loads(out.with_suffix(".json").read_text())["programs"]
    assert (tmp_path / "s.svg").read_text().count("<path") <= 3 * 2


def test_search_at_paint_time_paints_closer_to_the_targets_than_the_policy_alone(trained_run):
    """``search=K`` keeps, stroke by stroke, the candidate nearest the target, and the greedy
    action is one of the candidates: its final L2 is never worse on average (an untrained policy
    leaves plenty of room)."""
    agent = spiral.load_agent(trained_run / "runs" / "default" / "checkpoints")
    targets = agent.dataset().held_out[:16]
    alone = agent.paint(targets).canvases
    searched = agent.paint(targets, search=8).canvases
    l2 = lambda canvases: float(((canvases - targets) ** 2).mean())  # noqa: E731
    assert l2(searched) < l2(alone)
    with pytest.raises(ValueError, match="search must be 0"):
        agent.paint(targets, search=-1)


def test_sample_search_writes_the_searched_programs(trained_run, tmp_path):
    out = tmp_path / "s.png"
    checkpoint = str(trained_run / "runs" / "default" / "checkpoints")
    result = CliRunner().invoke(app, ["sample", "--checkpoint", checkpoint, "-o", str(out), "-n", "4", "--search", "4"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.with_suffix(".json").read_text())["programs"]) == 4
