"""Lint gate (issue #10): both packages stay clean under ruff and mypy with pyproject.toml's config.

Runs ``ruff check services/spiral operator/spiral_operator`` and ``mypy`` (its ``files`` and options
come from ``[tool.mypy]``) from the repository root, with this interpreter's installs of both (the
``test`` extra pins them), and fails with their findings. mypy reuses ``.mypy_cache``, so after the
first run it rechecks only what changed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["services/spiral", "operator/spiral_operator"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=240)


def test_ruff_finds_nothing():
    """Every rule pyproject.toml selects holds in both packages (no autofix is applied here)."""
    result = _run("ruff", "check", "--no-fix", "--output-format", "concise", *PACKAGES)
    assert result.returncode == 0, f"ruff check failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"


def test_mypy_finds_nothing():
    """Both packages type-check with [tool.mypy]'s settings (pydantic plugin, check_untyped_defs, unused ignores)."""
    result = _run("mypy")
    assert result.returncode == 0, f"mypy failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
