"""The single-process trainer: it learns, it resumes exactly, and its outputs are usable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from spiral.cli import app
from spiral.config import ConfigError, load_config_dict
from spiral.data import ImageDataset
from spiral.envs.factory import make_env
from spiral.learning.checkpoint import load_checkpoint
from spiral.learning.trainer import SingleProcessTrainer


def tiny_config(tmp_path: Path, **extra) -> dict:
    cfg = {
        "mode": "conditional",
        "env": {"renderer": "fast", "canvas_size": 32, "grid_size": 8, "episode_length": 3, "brush_sizes": [2.0], "use_pressure": False},
        "agent": {"preset": "small"},
        "reward": {"kind": "l2", "temporal_credit": True, "scale": 20.0},
        "learner": {"learning_rate": 0.002, "entropy_coef": 0.003},
        "num_envs": 32,
        "total_updates": 60,
        "output_dir": str(tmp_path / "run"),
        "log_every_updates": 1,
        "eval_every_updates": 1000,
        "checkpoint_every_updates": 1000,
        "seed": 3,
    }
    for key, value in extra.items():
        cfg[key] = value if not isinstance(value, dict) else {**cfg.get(key, {}), **value}
    return cfg


def one_stroke_dataset(cfg) -> ImageDataset:
    """A single target: one stroke the environment itself can paint, so a perfect answer exists."""
    env = make_env(cfg.env)
    env.reset(1)
    spec = env.action_spec
    grid = cfg.env.grid_size
    move = spec.from_dicts([{"flag": 0, "end": 2 * grid + 1, "control": 0}])
    paint = spec.from_dicts([{"flag": 1, "end": 5 * grid + 6, "control": 2 * grid + 6}])
    env.step(move)
    target = env.step(paint).canvas
    return ImageDataset("one-stroke", target.repeat(4, 1, 1, 1), target.repeat(2, 1, 1, 1))


def test_reward_rises_on_a_one_stroke_target(tmp_path):
    """Stated margin: within 60 updates the mean episode reward (20 × L2 improvement, blank → final)
    of the last 5 updates beats the first 5 by at least 1.0 — over a third of the blank canvas's
    error (2.85) removed. Measured: 0.29 → 2.35. A policy that does not learn stays near its start."""
    cfg = load_config_dict(tiny_config(tmp_path))
    trainer = SingleProcessTrainer(cfg, resume=False, dataset=one_stroke_dataset(cfg))
    blank_error = float((trainer.dataset.train[0] ** 2).mean()) * cfg.reward.scale
    rewards = [trainer.train_step()["charts/episode_reward"] for _ in range(cfg.total_updates)]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last - first > 1.0, f"reward went {first:.3f} → {last:.3f} (blank error {blank_error:.3f})"


def _params(trainer: SingleProcessTrainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trainer.policy.parameters()])


def test_resume_continues_exactly(tmp_path):
    """4 updates in one go == 2 updates, a checkpoint, a fresh process state, 2 more updates."""
    straight_cfg = load_config_dict(tiny_config(tmp_path / "a", total_updates=4))
    straight = SingleProcessTrainer(straight_cfg, resume=False)
    straight.run(show_progress=False)

    split_cfg = load_config_dict(tiny_config(tmp_path / "b", total_updates=2))
    SingleProcessTrainer(split_cfg, resume=False).run(show_progress=False)
    torch.manual_seed(12345)  # a new process would not share the old RNG state: prove the checkpoint restores it
    resumed = SingleProcessTrainer(split_cfg.model_copy(update={"total_updates": 4}), resume=True)
    assert resumed.counters.updates == 2
    resumed.run(show_progress=False)

    assert resumed.counters == straight.counters
    torch.testing.assert_close(_params(resumed), _params(straight), rtol=0, atol=0)


def test_run_writes_checkpoint_curves_and_grids(tmp_path):
    cfg = load_config_dict(tiny_config(tmp_path, total_updates=2, eval_every_updates=2, checkpoint_every_updates=2))
    result = SingleProcessTrainer(cfg, resume=False).run(show_progress=False)
    out = result.output_dir
    assert (out / "checkpoints" / "latest.pt").is_file()
    assert Image.open(out / "curves.png").size[0] > 100
    grid = Image.open(out / "images" / "reconstructions-0000002.png")
    assert grid.size[0] > 32 * 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/held_out_l2" in r for r in records)
    assert result.baselines.random_l2 > 0 and result.baselines.blank_l2 > 0


def test_unconditional_discriminator_run_logs_critic_outputs(tmp_path):
    cfg = load_config_dict(
        tiny_config(tmp_path, mode="unconditional", reward={"kind": "discriminator", "temporal_credit": False, "scale": 1.0}, total_updates=2)
    )
    trainer = SingleProcessTrainer(cfg, resume=False)
    record = trainer.train_step()
    assert {"charts/d_real", "charts/d_fake", "losses/discriminator"} <= record.keys()
    assert trainer.counters.discriminator_updates == 1
    assert "eval/sample_ink" in trainer.evaluate(write_images=False)


def _logged_updates(metrics: Path) -> int:
    if not metrics.exists():
        return 0
    return max((r["updates"] for r in map(json.loads, metrics.read_text().splitlines()) if "losses/total" in r), default=0)


@pytest.mark.timeout(120)
def test_ctrl_c_in_single_process_checkpoints_then_exits_130(tmp_path):
    """SIGINT finishes the current update, logs, evaluates and checkpoints, then exits 130 (128 +
    SIGINT: "stopped, not done", the code the multi-process launcher uses for Ctrl-C too)."""
    raw = tiny_config(tmp_path, total_updates=1_000_000, checkpoint_every_updates=1_000_000, eval_every_updates=1_000_000, data={"num_shapes": 200}, num_envs=8)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = Path(raw["output_dir"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "spiral", "train", "--single-process", "--quiet", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # like a terminal: the SIGINT reaches only this process
    )
    try:
        deadline = time.monotonic() + 90
        while _logged_updates(out / "metrics.jsonl") < 2:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "no updates within 90 s"
            time.sleep(0.1)
        assert not (out / "checkpoints" / "latest.pt").exists()  # only the stop will write one
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output
    assert "received SIGINT" in output
    assert f"checkpoint: {out / 'checkpoints'}" in output  # where it is, and how to go on (issue 13)
    assert f"resume with: spiral train --config {config} -o {out} --single-process" in output
    payload = load_checkpoint(out / "checkpoints")
    assert payload["counters"]["updates"] >= 2 and payload["role"] == "single-process"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["updates"] == payload["counters"]["updates"] and "eval/held_out_l2" in records[-1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"env": {"renderer": "oil"}}, "env.renderer: Input should be 'fast', 'libmypaint' or 'mujoco'"),
        ({"env": {"gridsize": 8}}, "env.gridsize: unknown key"),
        ({"learner": {"learning_rate": -1}}, "learner.learning_rate: Input should be greater than 0"),
        ({"total_frames": None, "total_updates": None}, "set a budget"),
        ({"mode": "unconditional"}, "reward.kind 'l2' needs a target"),
    ],
    ids=["bad-enum", "unknown-key", "bad-bound", "no-budget", "l2-unconditional"],
)
def test_config_errors_name_the_key_and_valid_values(tmp_path, data, message):
    raw = tiny_config(tmp_path)
    for key, value in data.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_config_dict(raw)


def test_train_cli_rejects_a_bad_override_with_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["train", "--single-process", "--set", "env.renderer=oil", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "env.renderer" in result.output and "'fast', 'libmypaint' or 'mujoco'" in result.output


def test_sample_programs_reproduce_the_images_through_spiral_paint(tmp_path):
    cfg = load_config_dict(tiny_config(tmp_path, total_updates=1))
    SingleProcessTrainer(cfg, resume=False).run(show_progress=False)
    runner = CliRunner()
    grid = tmp_path / "samples.png"
    result = runner.invoke(app, ["sample", "--checkpoint", str(tmp_path / "run" / "checkpoints"), "--out", str(grid), "--num", "6"])
    assert result.exit_code == 0, result.output
    document = json.loads(grid.with_suffix(".json").read_text())
    assert len(document["programs"]) == 6 and len(document["programs"][0]) == cfg.env.episode_length - 1

    from spiral.learning.sampling import sample_from_checkpoint

    sampled = sample_from_checkpoint(tmp_path / "run" / "checkpoints", tmp_path / "again.png", 6)
    painted = tmp_path / "painted.png"
    result = runner.invoke(app, ["paint", "--program", str(grid.with_suffix(".json")), "--out", str(painted)])
    assert result.exit_code == 0, result.output
    from spiral.images import save_grid

    expected = save_grid(sampled.canvases, tmp_path / "expected.png")
    assert Image.open(painted).tobytes() == Image.open(expected).tobytes()
