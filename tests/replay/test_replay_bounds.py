"""Table-level bounds (issue #14, finding 5): a sample honours its deadline on every item, not only
while waiting, and a restore keeps only the items a filter accepts."""

from __future__ import annotations

import time

import pytest
import torch

from spiral.errors import DeadlineExceededError
from spiral.replay import MinSize, Table, Uniform


def _table(size: int = 4) -> Table:
    table = Table("t", max_size=100, sampler=Uniform(0), rate_limiter=MinSize(1))
    for i in range(size):
        table.insert({"canvas": torch.full((1, 2, 2), float(i))})
    return table


def test_a_sample_with_items_at_hand_still_stops_at_its_deadline() -> None:
    table = _table()
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError, match=r"sample on table 't': only \d+ of 100000000 items within 0\.05 s"):
        table.sample(100_000_000, timeout=0.05)
    assert time.monotonic() - start < 2.0


def test_a_restore_keeps_only_the_accepted_items_and_counts_the_rest_as_deleted() -> None:
    snapshot = _table(5).state_dict()
    restored = Table("t", max_size=100, sampler=Uniform(0), rate_limiter=MinSize(1))
    assert restored.load_state_dict(snapshot, keep=lambda item: float(item["canvas"][0, 0, 0]) % 2 == 0) == 3
    info = restored.info()
    assert (info.size, info.num_inserts, info.num_deletes) == (3, 5, 2)
    assert sorted(float(s.data["canvas"][0, 0, 0]) for s in restored.sample(30)) [0] == 0.0
