"""The README stays true: CI runs its test command verbatim, and its main command trains."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_commands_train_then_test():
    commands = readme_commands()
    assert len(commands) == 2, commands
    train, test = commands
    assert train.rstrip().endswith("spiral train")
    assert "pytest" in test and "'.[test]'" in test


def test_ci_runs_the_readme_test_command_verbatim():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines


def test_top_level_keeps_the_agreed_shape():
    allowed = {"operator", "services", "protos", "charts", "tests", "pyproject.toml", "README.md", ".ci",
               "Dockerfile", "examples", ".gitignore", ".dockerignore", "LICENSE", ".git"}
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    tops = {path.split("/", 1)[0] for path in tracked}
    assert tops <= allowed, tops - allowed
    assert not (ROOT / "operator" / "__init__.py").exists(), "operator/ must not be a package (shadows stdlib)"


def readme_spiral_lines() -> list[str]:
    """Every ``spiral …`` command line in README's bash blocks, its trailing comment removed."""
    text = (ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.+?)\n```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith("spiral "):
                lines.append(line)
    return lines


def test_every_spiral_command_in_the_readme_exists_with_its_options():
    """A reader copies these lines: each names a real (sub)command, and each option it uses is one
    that command's --help lists (typer parses no options here, so nothing runs)."""
    from typer.main import get_command

    from spiral.cli import app

    root = get_command(app)
    lines = readme_spiral_lines()
    assert len(lines) >= 10, lines
    for line in lines:
        words = line.split()[1:]
        command = root
        while words and hasattr(command, "commands") and words[0] in command.commands:  # click groups
            command = command.commands[words.pop(0)]
        assert not hasattr(command, "commands"), f"README: {line!r} names no subcommand of {command.name!r}"
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        used = {word.split("=", 1)[0] for word in words if word.startswith("-")}
        assert used <= known, f"README: {line!r} uses {sorted(used - known)}, not options of `{command.name}`"
