"""Hyperparameters applied while a learner runs (learner.hyperparameters_file): what a population's explore needs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

import spiral.learning.core as core_module
from spiral.config import DiscriminatorConfig, Hyperparameter, LearnerConfig, TrainConfig, load_config_dict
from spiral.fsio import atomic_write_bytes
from spiral.learning.hyperparameters import RuntimeHyperparameters, write_hyperparameters
from spiral.learning.run_log import read_log
from spiral.learning.trainer import SingleProcessTrainer

LR, ENTROPY, CRITIC_LR = Hyperparameter.LEARNING_RATE, Hyperparameter.ENTROPY_COEF, Hyperparameter.DISCRIMINATOR_LEARNING_RATE
LOGGER = "spiral.learning.hyperparameters"


def _adam(lr: float) -> torch.optim.Adam:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [group["lr"] for group in optimizer.param_groups]


def _watcher(path: Path, **kwargs: Any) -> tuple[RuntimeHyperparameters, torch.optim.Adam, torch.optim.Adam]:
    policy, critic = _adam(6e-4), _adam(1e-4)
    watcher = RuntimeHyperparameters(
        path, LearnerConfig(learning_rate=6e-4, entropy_coef=0.15), DiscriminatorConfig(learning_rate=1e-4),
        policy_optimizer=policy, discriminator_optimizer=critic, **kwargs,
    )  # fmt: skip
    return watcher, policy, critic


def test_a_written_file_changes_the_learning_rates_and_the_entropy_at_the_next_poll(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    path = tmp_path / "hyperparameters.json"
    exported: list[tuple[Hyperparameter, float]] = []
    watcher, policy, critic = _watcher(path, poll_every_updates=10, export=lambda name, value: exported.append((name, value)))
    assert exported == [(LR, 6e-4), (ENTROPY, 0.15), (CRITIC_LR, 1e-4)]  # the starting values, exported at once
    assert watcher.poll(0) == ()  # no file yet: the config's values stand
    assert "does not exist (yet); keeping learning_rate=0.0006, entropy_coef=0.15, discriminator_learning_rate=0.0001" in caplog.text

    write_hyperparameters(path, {LR: 1e-3, ENTROPY: 0.05, CRITIC_LR: 2e-4})
    assert watcher.poll(5) == () and _lrs(policy) == [6e-4]  # not due: 5 updates since the last poll
    changes = watcher.poll(10)
    assert [str(c) for c in changes] == ["learning_rate 0.0006 → 0.001", "entropy_coef 0.15 → 0.05", "discriminator_learning_rate 0.0001 → 0.0002"]
    assert _lrs(policy) == [1e-3] and _lrs(critic) == [2e-4]
    assert watcher.learner.entropy_coef == 0.05 and watcher.learner.learning_rate == 1e-3 and watcher.discriminator.learning_rate == 2e-4
    assert exported[3:] == [(LR, 1e-3), (ENTROPY, 0.05), (CRITIC_LR, 2e-4)]
    assert "at update 10: learning_rate 0.0006 → 0.001; entropy_coef 0.15 → 0.05; discriminator_learning_rate 0.0001 → 0.0002" in caplog.text

    write_hyperparameters(path, {ENTROPY: 0.05, LR: 5e-4})  # an unchanged value is no change; a missing key keeps its value
    assert [str(c) for c in watcher.poll(20)] == ["learning_rate 0.001 → 0.0005"]
    assert watcher.current() == {LR: 5e-4, ENTROPY: 0.05, CRITIC_LR: 2e-4}


BAD_FILES = [
    ("not JSON", '{"learning_rate": 0.001', "is not valid JSON"),
    ("not an object", "[0.001]", "must hold a JSON object of hyperparameters, got list"),
    ("unknown key", '{"lr": 0.001}', "unknown key 'lr'; valid keys: learning_rate, entropy_coef, discriminator_learning_rate"),
    ("learning rate above its bound", '{"learning_rate": 5.0}',
     "learning_rate must be a finite number in (0, 1] (the bounds of learner.learning_rate), got 5.0"),
    ("zero learning rate", '{"discriminator_learning_rate": 0}',
     "discriminator_learning_rate must be a finite number in (0, 1] (the bounds of discriminator.learning_rate), got 0"),
    ("negative entropy", '{"entropy_coef": -0.1}', "entropy_coef must be a finite number in [0, inf) (the bounds of learner.entropy_coef), got -0.1"),
    ("NaN", '{"learning_rate": NaN}', "learning_rate must be a finite number in (0, 1]"),
    ("infinity", '{"entropy_coef": Infinity}', "entropy_coef must be a finite number in [0, inf)"),
    ("a string", '{"learning_rate": "0.001"}', "got '0.001'"),
    ("a boolean", '{"entropy_coef": true}', "got True"),
    ("one bad value beside a good one", '{"entropy_coef": 0.01, "learning_rate": 2}', "learning_rate must be a finite number in (0, 1]"),
]


@pytest.mark.parametrize(("text", "want"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_a_bad_file_is_logged_and_changes_nothing(tmp_path, caplog, text: str, want: str) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    path = tmp_path / "hyperparameters.json"
    atomic_write_bytes(path, text.encode())
    watcher, policy, critic = _watcher(path)
    assert watcher.poll(0) == ()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and want in errors[0].getMessage() and str(path) in errors[0].getMessage()
    assert "keeping learning_rate=0.0006, entropy_coef=0.15, discriminator_learning_rate=0.0001" in errors[0].getMessage()
    assert _lrs(policy) == [6e-4] and _lrs(critic) == [1e-4] and watcher.learner.entropy_coef == 0.15  # the whole file is ignored
    # Reported once, not at every poll; a corrected file is then applied.
    assert watcher.poll(10) == () and len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    write_hyperparameters(path, {LR: 1e-3})
    assert [str(c) for c in watcher.poll(20)] == ["learning_rate 0.0006 → 0.001"]


def test_an_unchanged_file_is_not_read_again(tmp_path, monkeypatch) -> None:
    path = tmp_path / "hyperparameters.json"
    write_hyperparameters(path, {LR: 1e-3})
    reads: list[Path] = []
    read_text = Path.read_text

    def counting(self: Path, *args: Any, **kwargs: Any) -> str:
        reads.append(self)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    watcher, policy, _ = _watcher(path, poll_every_updates=1)
    for updates in range(50):
        watcher.poll(updates)
    assert reads == [path] and _lrs(policy) == [1e-3]  # 50 polls, one read: the rest were a stat each
    write_hyperparameters(path, {LR: 2e-3})
    watcher.poll(50)
    assert reads == [path, path] and _lrs(policy) == [2e-3]


def test_each_learner_applies_only_the_keys_it_owns(tmp_path) -> None:
    path = tmp_path / "hyperparameters.json"
    write_hyperparameters(path, {LR: 1e-3, ENTROPY: 0.05, CRITIC_LR: 2e-4})
    learner, discriminator = LearnerConfig(), DiscriminatorConfig()
    policy, critic = _adam(learner.learning_rate), _adam(discriminator.learning_rate)
    policy_side = RuntimeHyperparameters(path, learner, discriminator, policy_optimizer=policy)
    critic_side = RuntimeHyperparameters(path, learner, discriminator, discriminator_optimizer=critic)
    assert {c.name for c in policy_side.poll(0)} == {LR, ENTROPY} and _lrs(policy) == [1e-3]
    assert {c.name for c in critic_side.poll(0)} == {CRITIC_LR} and _lrs(critic) == [2e-4]
    assert critic_side.learner == learner  # the policy's values are the policy learner's to apply


def test_without_a_file_nothing_is_polled(tmp_path) -> None:
    watcher = RuntimeHyperparameters(None, LearnerConfig(), DiscriminatorConfig(), policy_optimizer=_adam(6e-4))
    assert watcher.poll(0) == () and watcher.poll(100) == ()
    assert watcher.current() == {LR: 6e-4, ENTROPY: 0.15}


# --------------------------------------------------------------------------- the learners ---


def _tiny(tmp_path: Path, **extra: Any) -> TrainConfig:
    raw: dict[str, Any] = {
        "env": {"renderer": "fast", "canvas_size": 32, "grid_size": 8, "episode_length": 3, "brush_sizes": [2.0], "use_pressure": False},
        "data": {"num_shapes": 64},
        "learner": {"learning_rate": 0.002, "entropy_coef": 0.003, "hyperparameters_file": str(tmp_path / "hyperparameters.json")},
        "discriminator": {"batch_size": 4},
        "num_envs": 4,
        "total_updates": 10,
        "output_dir": str(tmp_path / "run"),
        "log_every_updates": 1,
        "eval_every_updates": 1000,
        "checkpoint_every_updates": 1000,
    }
    raw.update(extra)
    return load_config_dict(raw)


def test_the_single_process_trainer_applies_the_file_without_a_restart(tmp_path, monkeypatch) -> None:
    """The policy's Adam, the entropy weight the loss reads and the critic's Adam all take the file's
    values at the next update; the change is in the run log; a resumed run applies the file again."""
    cfg = _tiny(tmp_path, reward={"kind": "discriminator"})
    used: list[LearnerConfig] = []
    real_update = core_module.policy_update
    monkeypatch.setattr(core_module, "policy_update", lambda *args, **kwargs: used.append(args[3]) or real_update(*args, **kwargs))
    trainer = SingleProcessTrainer(cfg, resume=False)
    trainer.train_step()
    assert used[-1].entropy_coef == 0.003 and _lrs(trainer.state.policy_optimizer) == [0.002]

    write_hyperparameters(cfg.learner.hyperparameters_file, {LR: 0.001, ENTROPY: 0.02, CRITIC_LR: 5e-5})
    trainer.core.hyperparameters.poll_every_updates = 1  # the next update polls (the default waits POLL_EVERY_UPDATES)
    trainer.train_step()
    assert used[-1].entropy_coef == 0.02 and used[-1].learning_rate == 0.001
    assert _lrs(trainer.state.policy_optimizer) == [0.001] and _lrs(trainer.state.discriminator_optimizer) == [5e-5]
    (event,) = [r for r in read_log(tmp_path / "run" / "metrics.jsonl") if r.get("event") == "hyperparameters"]
    assert event["updates"] == 1 and event["hyperparameters/learning_rate"] == 0.001 and event["hyperparameters/entropy_coef"] == 0.02
    trainer.checkpoint()

    # Restarted from its checkpoint (as after an exploit): the optimiser state brings the config's
    # learning rate back, and the first update applies the file again.
    resumed = SingleProcessTrainer(cfg, resume=True)
    assert _lrs(resumed.state.policy_optimizer) == [0.002]
    resumed.train_step()
    assert _lrs(resumed.state.policy_optimizer) == [0.001] and used[-1].entropy_coef == 0.02


def test_the_discriminator_learner_applies_its_learning_rate_and_exports_it(tmp_path) -> None:
    from spiral.services.discriminator_learner import DiscriminatorLearner

    cfg = _tiny(tmp_path, reward={"kind": "discriminator"})
    learner = DiscriminatorLearner(cfg, resume=False)
    try:
        def gauge(name: Hyperparameter) -> float | None:
            return learner.registry.get_sample_value("spiral_learner_hyperparameter", {"spiral_job": "local", "hyperparameter": name.value})

        assert gauge(CRITIC_LR) == cfg.discriminator.learning_rate and gauge(LR) is None  # the policy's are the policy learner's
        write_hyperparameters(cfg.learner.hyperparameters_file, {CRITIC_LR: 3e-5, LR: 0.5})
        fakes = torch.rand(4, 1, 32, 32)
        learner.train_step(fakes, fakes)
        assert _lrs(learner.state.discriminator_optimizer) == [3e-5] and gauge(CRITIC_LR) == 3e-5
    finally:
        learner.publisher.close()


def test_the_policy_learner_exports_the_values_it_trains_with(tmp_path) -> None:
    from spiral.services.policy_learner import PolicyLearner

    cfg = _tiny(tmp_path)
    learner = PolicyLearner(cfg, resume=False)
    try:
        values = {
            name: learner.registry.get_sample_value("spiral_learner_hyperparameter", {"spiral_job": "local", "hyperparameter": name.value})
            for name in Hyperparameter
        }
        assert values == {LR: 0.002, ENTROPY: 0.003, CRITIC_LR: None}
    finally:
        learner.publisher.close()


def test_a_run_becomes_a_population_member_on_resume(tmp_path) -> None:
    """Adding the hyperparameters file and a population section are changes a resume applies."""
    from spiral.learning.resume import compare_configs

    member = _tiny(tmp_path, population={"size": 4})
    alone = member.model_copy(update={"learner": member.learner.model_copy(update={"hyperparameters_file": None}), "population": type(member.population)()})
    changes = compare_configs(alone.model_dump(mode="json"), member)
    assert changes.refused == ()
    assert [c.key for c in changes.applied] == ["learner.hyperparameters_file", "population.size"]
