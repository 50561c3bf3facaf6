"""`spiral serve`: role validation, config overrides and dispatch to the role modules."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from spiral.cli import app
from spiral.config import Role
from spiral.services import serve_cli


def plain(output: str) -> str:
    """CLI output without rich's box drawing and line wrapping."""
    return " ".join(output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


@pytest.fixture()
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"total_frames": 100, "output_dir": str(tmp_path / "run")}))
    return path


def test_unknown_role_lists_the_valid_roles(config_file: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "painter", "--config", str(config_file)])
    assert result.exit_code == 2
    assert "unknown role 'painter'; valid roles: actor, policy-learner, discriminator-learner, replay" in plain(result.output)


def test_flags_override_the_config_file(config_file: Path) -> None:
    cfg = serve_cli.build_config(config_file, grpc_port=0, metrics_port=7, bind="::1", overrides=serve_cli.parse_set(["replay.max_size=5", "replay.sampler=fifo"]))
    assert (cfg.services.grpc_port, cfg.services.metrics_port, cfg.services.bind_address) == (0, 7, "::1")
    assert cfg.replay.max_size == 5 and cfg.replay.sampler.value == "fifo"
    with pytest.raises(typer.BadParameter, match="--set expects KEY=VALUE"):
        serve_cli.parse_set(["replay.max_size"])


def test_bad_config_values_are_a_usage_error(config_file: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "replay", "--config", str(config_file), "--set", "replay.max_size=0"])
    assert result.exit_code == 2 and "replay.max_size" in plain(result.output)


def test_other_roles_call_their_module_run_with_the_arguments_it_declares(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    module = types.ModuleType("spiral_test_fake_actor")
    module.run = lambda cfg, *, job: calls.append((cfg.services.grpc_port, job))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "spiral_test_fake_actor", module)
    monkeypatch.setitem(serve_cli.ROLE_MODULES, Role.ACTOR, "spiral_test_fake_actor")
    result = CliRunner().invoke(app, ["serve", "actor", "--config", str(config_file), "--grpc-port", "4321", "--job", "j1"])
    assert result.exit_code == 0, result.output
    assert calls == [(4321, "j1")]


def test_a_role_whose_module_is_missing_says_so(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(serve_cli.ROLE_MODULES, Role.POLICY_LEARNER, "spiral.services.no_such_module")
    result = CliRunner().invoke(app, ["serve", "policy-learner", "--config", str(config_file)])
    assert result.exit_code == 2
    assert "module spiral.services.no_such_module is missing" in plain(result.output)


def test_env_vars_override_like_flags(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(serve_cli, "dispatch", lambda role, cfg, *, job, ready_file: seen.append((role, cfg.services.metrics_port, job)))
    result = CliRunner().invoke(app, ["serve", "replay"], env={"SPIRAL_CONFIG": str(config_file), "SPIRAL_METRICS_PORT": "9999", "SPIRAL_JOB_NAME": "j2"})
    assert result.exit_code == 0, result.output
    assert seen == [(Role.REPLAY, 9999, "j2")]
