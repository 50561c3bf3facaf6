"""`spiral serve`: role validation, config overrides, explicit options and dispatch to the roles."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from spiral.cli import app
from spiral.config import ConfigError, Role, parse_overrides
from spiral.services import serve_cli
from spiral.services.runtime import ServeOptions


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
    cfg = serve_cli.build_config(config_file, grpc_port=0, metrics_port=7, bind="::1", overrides=parse_overrides(["replay.max_size=500", "replay.sampler=fifo"]))
    assert (cfg.services.grpc_port, cfg.services.metrics_port, cfg.services.bind_address) == (0, 7, "::1")
    assert cfg.replay.max_size == 500 and cfg.replay.sampler.value == "fifo"
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE with a dotted key .* got 'replay.max_size'"):
        parse_overrides(["replay.max_size"])


def test_a_set_without_a_value_is_a_usage_error_naming_the_item(config_file: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "replay", "--config", str(config_file), "--set", "replay.max_size"])
    assert result.exit_code == 2 and "--set expects KEY=VALUE" in plain(result.output) and "'replay.max_size'" in plain(result.output)


def test_bad_config_values_are_a_usage_error(config_file: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "replay", "--config", str(config_file), "--set", "replay.max_size=0"])
    assert result.exit_code == 2 and "replay.max_size" in plain(result.output)


def test_every_role_has_a_runner() -> None:
    assert set(serve_cli.ROLE_RUNNERS) == set(Role)


def test_each_role_gets_its_config_and_the_options_explicitly(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ServeOptions]] = []
    monkeypatch.setitem(serve_cli.ROLE_RUNNERS, Role.ACTOR, lambda cfg, options: calls.append((cfg.services.grpc_port, options)))
    args = ["serve", "actor", "--config", str(config_file), "--grpc-port", "4321", "--job", "j1", "--threads", "3", "--no-resume", "--actor-id", "actor-7"]
    result = CliRunner().invoke(app, args, env={"SPIRAL_RESUME": "1", "SPIRAL_ACTOR_ID": "from-env"})
    assert result.exit_code == 0, result.output
    assert calls == [(4321, ServeOptions(job="j1", ready_file=None, resume=False, threads=3, actor_id="actor-7"))]  # flags win


def test_env_vars_override_like_flags(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables a pod (or an older launcher) sets still work: SPIRAL_TORCH_THREADS,
    SPIRAL_RESUME, SPIRAL_ACTOR_ID, SPIRAL_JOB_NAME, SPIRAL_METRICS_PORT."""
    seen = []
    monkeypatch.setattr(serve_cli, "dispatch", lambda role, cfg, options: seen.append((role, cfg.services.metrics_port, options)))
    env = {
        "SPIRAL_CONFIG": str(config_file),
        "SPIRAL_METRICS_PORT": "9999",
        "SPIRAL_JOB_NAME": "j2",
        "SPIRAL_TORCH_THREADS": "2",
        "SPIRAL_RESUME": "0",
        "SPIRAL_ACTOR_ID": "pod-a",
    }
    result = CliRunner().invoke(app, ["serve", "replay"], env=env)
    assert result.exit_code == 0, result.output
    assert seen == [(Role.REPLAY, 9999, ServeOptions(job="j2", ready_file=None, resume=False, threads=2, actor_id="pod-a"))]


def test_threads_default_to_the_configs_torch_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"total_frames": 100, "output_dir": str(tmp_path / "run"), "torch_threads": 4}))
    seen = []
    monkeypatch.setattr(serve_cli, "dispatch", lambda role, cfg, options: seen.append(options.threads))
    result = CliRunner().invoke(app, ["serve", "policy-learner", "--config", str(path)], env={"SPIRAL_TORCH_THREADS": ""})
    assert result.exit_code == 0, result.output
    assert seen == [4]


def test_zero_threads_are_refused(config_file: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "actor", "--config", str(config_file), "--threads", "0"])
    assert result.exit_code == 2 and "--threads" in plain(result.output)


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_serve_role_help_lists_every_option(role: str) -> None:
    result = CliRunner().invoke(app, ["serve", role, "--help"], env={"COLUMNS": "250"})  # wide: no "…" cut-offs
    assert result.exit_code == 0, result.output
    text = plain(result.output)
    for option in ("--threads", "--resume", "--no-resume", "--actor-id", "--job", "--ready-file", "--grpc-port", "--metrics-port"):
        assert option in text, f"{option} missing from `spiral serve {role} --help`"
    for variable in ("SPIRAL_TORCH_THREADS", "SPIRAL_RESUME", "SPIRAL_ACTOR_ID"):
        assert variable in text
