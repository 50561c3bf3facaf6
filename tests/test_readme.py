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
