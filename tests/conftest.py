"""Shared fixtures. Real datasets come from ``$SPIRAL_DATASETS`` (``.ci/run`` points it at ../shared/datasets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """Folder with the real MNIST/Omniglot distribution files; tests needing it skip when unset."""
    value = os.environ.get("SPIRAL_DATASETS")
    if not value:
        pytest.skip("SPIRAL_DATASETS is not set (CI sets it to ../shared/datasets)")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"SPIRAL_DATASETS={value} is not a directory")
    return path
