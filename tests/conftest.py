"""Shared fixtures. Real datasets come from ``$SPIRAL_DATASETS`` (``.ci/run`` points it at ../shared/datasets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


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


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run each test on one intra-op thread, then restore the setting.

    On the shared 2-core CI machine a second OpenMP thread mostly waits for a busy core: the fast
    renderer's many small ops ran 10-100x slower with 2 threads than with 1 (measured).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
