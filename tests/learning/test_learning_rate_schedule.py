"""learner.learning_rate_final_fraction: the policy's learning rate decays linearly over RL's share of the budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import spiral.learning.core as core_module
from spiral.config import load_config_dict
from spiral.learning.budget import budget_fraction
from spiral.learning.run_log import read_log
from spiral.learning.trainer import SingleProcessTrainer

BASE_LR = 0.002


def _tiny(tmp_path: Path, **learner: Any) -> Any:
    return load_config_dict({
        "env": {"renderer": "fast", "canvas_size": 32, "grid_size": 8, "episode_length": 3, "brush_sizes": [2.0], "use_pressure": False},
        "data": {"num_shapes": 64},
        "learner": {"learning_rate": BASE_LR, **learner},
        "num_envs": 4,
        "total_updates": 4,
        "output_dir": str(tmp_path / "run"),
        "log_every_updates": 1,
        "eval_every_updates": 1000,
        "checkpoint_every_updates": 1000,
    })  # fmt: skip


def _stepped_learning_rates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **learner: Any) -> tuple[list[float], SingleProcessTrainer]:
    """The lr of the policy's Adam at each of the run's policy updates."""
    seen: list[float] = []
    real_update = core_module.policy_update
    monkeypatch.setattr(core_module, "policy_update", lambda *a, **k: seen.append(a[1].param_groups[0]["lr"]) or real_update(*a, **k))
    trainer = SingleProcessTrainer(_tiny(tmp_path, **learner), resume=False)
    trainer.run(show_progress=False)  # the whole budget: 4 updates, each logged
    return seen, trainer


def test_the_learning_rate_falls_linearly_to_its_final_fraction_and_is_logged(tmp_path, monkeypatch) -> None:
    seen, _ = _stepped_learning_rates(tmp_path, monkeypatch, learning_rate_final_fraction=0.25)
    # Update k of 4 (k updates already spent) steps with lr × (1 − 0.75 · k/4).
    assert seen == pytest.approx([BASE_LR * (1 - 0.75 * k / 4) for k in range(4)])
    logged = [r["charts/learning_rate"] for r in read_log(tmp_path / "run" / "metrics.jsonl") if "charts/learning_rate" in r]
    assert logged == seen  # each update's record names the rate it stepped with


def test_the_default_keeps_the_learning_rate_constant(tmp_path, monkeypatch) -> None:
    seen, _ = _stepped_learning_rates(tmp_path, monkeypatch)
    assert seen == [BASE_LR] * 4
    assert not any("charts/learning_rate" in r for r in read_log(tmp_path / "run" / "metrics.jsonl"))


def test_budget_fraction_is_the_most_advanced_budget_and_stops_at_one(tmp_path) -> None:
    cfg = _tiny(tmp_path).model_copy(update={"total_frames": 1000, "total_updates": 10, "max_wall_minutes": None})
    assert budget_fraction(cfg, frames=100, updates=5, started_monotonic=0.0) == 0.5
    assert budget_fraction(cfg, frames=900, updates=5, started_monotonic=0.0) == 0.9
    assert budget_fraction(cfg, frames=5000, updates=50, started_monotonic=0.0) == 1.0
