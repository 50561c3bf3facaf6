"""``spiral pretrain``, ``spiral eval`` and ``--init-from``: the learning commands end to end (tiny sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from spiral.cli import app
from spiral.config import load_preset
from spiral.learning.checkpoint import load_checkpoint
from spiral.learning.trainer import SingleProcessTrainer

TINY = [
    "--set", "env.canvas_size=32", "--set", "env.grid_size=8", "--set", "env.episode_length=4",
    "--set", "data.num_shapes=200", "--set", "pretrain.batch_size=8", "--set", "num_envs=8",
]  # fmt: skip


def _pretrain(tmp_path: Path, updates: int = 6) -> Path:
    result = CliRunner().invoke(app, ["pretrain", "-o", str(tmp_path / "pre"), "--updates", str(updates), *TINY])
    assert result.exit_code == 0, result.output
    assert "continue with RL" in result.output
    return tmp_path / "pre" / "checkpoints" / "latest.pt"


def test_pretrain_writes_a_checkpoint_that_counts_its_updates(tmp_path: Path) -> None:
    checkpoint = _pretrain(tmp_path)
    payload = load_checkpoint(checkpoint)
    assert payload["counters"]["pretrain_updates"] == 6
    assert payload["counters"]["updates"] == 0  # no RL yet
    records = [json.loads(line) for line in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()]
    assert any("pretrain/loss" in r for r in records) and any("eval/held_out_l2" in r for r in records)


def test_pretrain_refuses_zero_updates(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["pretrain", "-o", str(tmp_path / "x"), *TINY, "--set", "pretrain.updates=0"])
    assert result.exit_code == 2
    assert "pretrain.updates is 0" in result.output


def test_eval_reports_greedy_sampled_search_and_baselines_as_json(tmp_path: Path) -> None:
    checkpoint = _pretrain(tmp_path)
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(
        app,
        ["eval", "--checkpoint", str(checkpoint), "--search", "4", "--lookahead", "2", "--limit", "8", "--json", str(report_path), "-o", str(tmp_path / "eval.png")],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["num_images"] == 8 and report["search_candidates"] == 4 and report["search_lookahead"] == 2
    for key in ("greedy_first_action_moves", "greedy_paint_fraction", "search_first_action_moves", "search_paint_fraction"):
        assert 0.0 <= report[key] <= 1.0, key
    for key in ("l2", "l2_sampled", "l2_search", "blank_l2", "random_l2", "ratio", "ratio_search"):
        assert key in report and report[key] >= 0, key
    assert abs(report["ratio"] - report["l2"] / report["blank_l2"]) < 1e-9
    assert (tmp_path / "eval.png").stat().st_size > 0


def test_eval_repaints_the_programs_with_libmypaint(tmp_path: Path) -> None:
    checkpoint = _pretrain(tmp_path)
    result = CliRunner().invoke(app, ["eval", "--checkpoint", str(checkpoint), "--limit", "4", "--renderer", "libmypaint", "-o", str(tmp_path / "e.png")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["repainted_libmypaint_l2"] > 0 and report["repainted_libmypaint_relative"] > 0
    # dry_brush scatters its dabs at random: two re-paints differ, and removing that speckle leaves
    # an expected canvas at least as close to the targets as one re-paint (up to estimation noise).
    assert report["repainted_libmypaint_speckle_l2"] > 0
    assert report["repainted_libmypaint_expected_l2"] <= report["repainted_libmypaint_l2"] + report["repainted_libmypaint_speckle_l2"] / 2


def test_speckle_decomposition_recovers_the_expected_canvas_l2() -> None:
    """Two noisy renders of a known expectation: the estimate finds the noise and the expectation's L2."""
    from spiral.learning.evaluate import mean_l2, speckle_and_expected_l2

    generator = torch.Generator().manual_seed(0)
    targets = torch.rand(64, 1, 32, 32, generator=generator)
    expected = (targets + 0.2 * torch.rand(64, 1, 32, 32, generator=generator)).clamp(0, 1)
    first, second = (expected + 0.3 * torch.randn(64, 1, 32, 32, generator=generator) for _ in range(2))
    speckle, estimate = speckle_and_expected_l2(first, second, targets)
    truth = mean_l2(expected, targets)
    assert mean_l2(first, targets) > 2 * truth  # the noise dominates one render's L2 ...
    assert abs(estimate - truth) < 0.1 * truth  # ... and the estimate removes it
    assert speckle > 0
    same, estimate_noiseless = speckle_and_expected_l2(expected, expected, targets)
    assert same == 0 and abs(estimate_noiseless - truth) < 1e-9


def test_eval_names_a_missing_checkpoint(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--checkpoint", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "no checkpoint" in result.output


def test_init_from_starts_from_the_weights_and_skips_pretraining(tmp_path: Path) -> None:
    checkpoint = _pretrain(tmp_path)
    cfg = load_preset(
        "default",
        {"env.canvas_size": 32, "env.grid_size": 8, "env.episode_length": 4, "data.num_shapes": 200, "num_envs": 8,
         "pretrain.updates": 50, "init_from": str(checkpoint), "output_dir": str(tmp_path / "rl"), "total_updates": 1},
    )  # fmt: skip
    trainer = SingleProcessTrainer(cfg, resume=True)
    stored = load_checkpoint(checkpoint)["policy"]
    for name, value in trainer.policy.state_dict().items():
        assert torch.equal(value, stored[name]), name
    assert not trainer.core.pretraining_due
    assert trainer.counters.updates == 0


def test_unconditional_mnist_runs_report_the_digit_score(tmp_path: Path, datasets_dir: Path, monkeypatch) -> None:
    """Both the training loop's evaluation and ``spiral eval`` score unconditional MNIST samples
    with the digit classifier (a 30-step one here; the real one trains for 2 minutes, cached)."""
    import spiral.learning.digits as digits

    tiny = digits.train_digit_classifier(
        load_preset("mnist", {"data.path": str(datasets_dir / "mnist")}).data, 32, max_steps=30, seconds_budget=30
    )
    monkeypatch.setattr(digits, "load_or_train_digit_classifier", lambda *args, **kwargs: tiny)
    run = tmp_path / "gen"
    sets = [
        "--set", "mode=unconditional", "--set", "reward.kind=discriminator", "--set", f"data.path={datasets_dir / 'mnist'}",
        "--set", "env.canvas_size=32", "--set", "env.grid_size=8", "--set", "env.episode_length=4", "--set", "pretrain.batch_size=8",
    ]  # fmt: skip
    result = CliRunner().invoke(app, ["pretrain", "--preset", "mnist", "-o", str(run), "--updates", "2", *sets])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluation = next(r for r in records if "eval/sample_ink" in r)
    assert 0.0 <= evaluation["eval/digit_confident"] <= 1.0 and "eval/digit_min_class" in evaluation
    result = CliRunner().invoke(app, ["eval", "--checkpoint", str(run / "checkpoints"), "--num", "40", "-o", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["num_samples"] == 40 and len(report["digit_histogram"]) == 10
    assert abs(sum(report["digit_histogram"]) - report["digit_confident"]) < 1e-3


def test_the_policy_learner_exports_the_digit_score_it_evaluates(tmp_path: Path, datasets_dir: Path, monkeypatch) -> None:
    """A population on Kubernetes ranks unconditional MNIST members by ``spiral_learner_digit_confident``:
    the policy learner service sets it from its own evaluation (a 30-step classifier here)."""
    import spiral.learning.digits as digits
    from spiral.config import load_config_dict
    from spiral.services.policy_learner import PolicyLearner

    cfg = load_preset("mnist", {"data.path": str(datasets_dir / "mnist")})
    tiny = digits.train_digit_classifier(cfg.data, 32, max_steps=30, seconds_budget=30)
    monkeypatch.setattr(digits, "load_or_train_digit_classifier", lambda *args, **kwargs: tiny)
    raw = cfg.model_dump(mode="json")
    raw.update(mode="unconditional", output_dir=str(tmp_path / "gen"), num_envs=4)
    raw["reward"]["kind"] = "discriminator"
    raw["env"].update(canvas_size=32, grid_size=8, episode_length=4)
    learner = PolicyLearner(load_config_dict(raw), job="digits", resume=False)
    evaluation = learner.evaluate()
    exported = learner.registry.get_sample_value("spiral_learner_digit_confident", {"spiral_job": "digits"})
    assert exported is not None and exported == evaluation["eval/digit_confident"]
