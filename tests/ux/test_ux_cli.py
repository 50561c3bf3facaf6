"""The command line's surface (points 6 and 9 of issue 13): --version, -h, flags without
placeholders, -o everywhere an output is written, one spelling, one error style, `spiral config
show/keys`, "did you mean" and errors that name their source."""

from __future__ import annotations

import re

import pytest
import yaml
from typer.testing import CliRunner

from spiral import __version__
from spiral.cli import app
from spiral.config import ConfigError, TrainConfig, load_config_dict, load_preset
from spiral.config_help import config_keys, did_you_mean

runner = CliRunner()

#: Every command a person runs, for the help-text checks.
COMMANDS = [[], ["train"], ["sample"], ["paint"], ["serve"], ["config"], ["config", "show"], ["config", "keys"], ["data"], ["data", "download"], ["data", "mujoco-scenes"]]


def test_version_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"spiral {__version__}"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "spiral")
def test_dash_h_is_help_with_no_bool_placeholders_and_one_spelling(command):
    short, long = runner.invoke(app, [*command, "-h"]), runner.invoke(app, [*command, "--help"])
    assert short.exit_code == 0 and short.output == long.output
    assert "Usage:" in short.output
    assert "<bool>" not in short.output, short.output
    assert "programme" not in short.output
    assert "╭" not in short.output  # plain text: reads the same in a terminal and a log


@pytest.mark.parametrize("command", [["train"], ["sample"], ["paint"], ["data", "download"], ["data", "mujoco-scenes"], ["config", "show"]])
def test_every_command_that_writes_files_takes_dash_o(command):
    assert re.search(r"^\s+-o, --", runner.invoke(app, [*command, "-h"]).output, flags=re.M)


def test_errors_come_in_one_style_usage_then_error_line():
    bad_set = runner.invoke(app, ["train", "--set", "env.gridsize=8"])
    bad_option = runner.invoke(app, ["train", "--progress-every", "x"])
    for result in (bad_set, bad_option):
        assert result.exit_code == 2
        assert "Try 'spiral train -h' for help." in result.output and "Error: " in result.output
        assert "╭" not in result.output and "error:" not in result.output


def test_unknown_key_on_the_command_line_gets_did_you_mean_and_blames_the_set_argument():
    result = runner.invoke(app, ["train", "--set", "env.gridsize=8"])
    assert "env.gridsize: unknown key (from --set env.gridsize=8); did you mean env.grid_size?" in result.output
    assert "invalid configuration in" not in result.output  # the preset file is not to blame
    assert "--help-config" not in result.output and "spiral config keys" in result.output


def test_a_bad_value_in_a_file_blames_the_file(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("total_updates: 5\nenv:\n  renderer: oil\n")
    with pytest.raises(ConfigError) as info:
        from spiral.config import load_config

        load_config(path, {"num_envs": 4})
    message = str(info.value)
    assert message.startswith(f"invalid configuration in {path}:")
    assert "env.renderer: Input should be 'fast', 'libmypaint' or 'mujoco' (got 'oil')" in message and "--set" not in message


def test_a_cross_section_rule_names_every_override_that_took_part():
    with pytest.raises(ConfigError, match=r"env.grid_size \(40\) must be ≤ env.canvas_size \(32\) \(from --set env.grid_size=40, --set env.canvas_size=32\)"):
        load_preset("default", {"env.grid_size": 40, "env.canvas_size": 32})


@pytest.mark.parametrize(
    ("loc", "want"),
    [(("env", "gridsize"), "env.grid_size"), (("total_update",), "total_updates"), (("learner", "learning_rat"), "learner.learning_rate"), (("env", "zzz"), None), (("nosuch", "x"), None)],
    ids=["section", "top", "nested", "nothing-close", "no-section"],
)
def test_did_you_mean_finds_the_closest_key_in_the_same_section(loc, want):
    assert did_you_mean(loc) == want


def test_config_show_prints_the_effective_config_as_yaml_that_reads_back(tmp_path):
    result = runner.invoke(app, ["config", "show", "--preset", "mnist", "--set", "env.grid_size=32", "-o", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["env"]["grid_size"] == 32 and shown["data"]["name"] == "mnist" and shown["output_dir"] == str(tmp_path / "x")
    assert load_config_dict(shown) == load_preset("mnist", {"env.grid_size": 32, "output_dir": str(tmp_path / "x")})


def test_config_show_rejects_a_bad_key_like_train():
    result = runner.invoke(app, ["config", "show", "--set", "learner.lr=1"])
    assert result.exit_code == 2 and "learner.lr: unknown key" in result.output


def test_config_keys_lists_every_leaf_with_type_default_and_description():
    result = runner.invoke(app, ["config", "keys"])
    assert result.exit_code == 0
    keys = list(config_keys())
    listed = re.findall(r"^(\S+)  \(", result.output, flags=re.M)
    assert listed == [k.key for k in keys] and len(keys) > 60
    assert "env.grid_size  (int)  default: 32\n    `end`/`control` positions form a grid×grid lattice" in result.output
    assert "env.renderer  (fast | libmypaint | mujoco)  default: fast" in result.output
    assert "total_updates  (int or null)  default: null" in result.output
    # Every leaf of the model tree, walked from the models (a new field appears by itself).
    fields = TrainConfig.model_fields
    assert {k.key.split(".")[0] for k in keys} == set(fields)


def test_config_keys_filters_and_says_when_nothing_matches():
    only = runner.invoke(app, ["config", "keys", "learner."])
    assert only.exit_code == 0 and all(line.startswith(("learner.", "    ")) for line in only.output.splitlines())
    none = runner.invoke(app, ["config", "keys", "nosuchkey"])
    assert none.exit_code == 2 and "no config key contains 'nosuchkey'" in none.output


def test_the_resume_command_repeats_the_run_without_no_resume():
    from pathlib import Path

    from spiral.launch.train_cli import train_command_line

    assert train_command_line(None, "mnist", ["data.path=/d m"], Path("runs/x"), False) == "spiral train --preset mnist --set 'data.path=/d m' -o runs/x"
    assert train_command_line(Path("c.yaml"), "default", [], Path("o"), True) == "spiral train --config c.yaml -o o --single-process"
