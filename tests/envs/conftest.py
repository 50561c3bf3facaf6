"""Fixtures for the painting-environment tests."""

from __future__ import annotations

import pytest
import torch


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
