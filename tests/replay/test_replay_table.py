"""Table semantics in-process: sizes, eviction, max_times_sampled, selectors, blocking, metrics."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import torch
from prometheus_client import CollectorRegistry

from spiral.config import ReplayConfig, SamplerKind
from spiral.metrics import create_metrics
from spiral.replay import Fifo, MinSize, SampleToInsertRatio, Table, Uniform
from spiral.errors import CancelledError, DeadlineExceededError, FailedPreconditionError, InvalidArgumentError


def item(value: float) -> dict[str, torch.Tensor]:
    return {"canvas": torch.full((1, 2, 2), value)}


def values(items) -> list[float]:  # noqa: ANN001
    return [float(i.data["canvas"][0, 0, 0]) for i in items]


def test_insert_then_sample_returns_inserted_data_and_counts() -> None:
    table = Table("t", max_size=10, sampler=Fifo(), rate_limiter=MinSize(1))
    keys = [table.insert(item(v)) for v in (1.0, 2.0, 3.0)]
    assert keys == [0, 1, 2]
    sampled = table.sample(2)
    assert values(sampled) == [1.0, 1.0]  # FIFO sampler keeps returning the oldest
    assert [s.times_sampled for s in sampled] == [1, 2]
    info = table.info()
    assert (info.size, info.num_inserts, info.num_samples, info.num_deletes) == (3, 3, 2, 0)
    assert (info.sampler, info.remover) == ("fifo", "fifo")


def test_full_table_evicts_the_oldest_item() -> None:
    table = Table("t", max_size=3, sampler=Fifo(), rate_limiter=MinSize(1))
    for v in range(5):
        table.insert(item(float(v)))
    assert table.size == 3
    assert values(table.sample(1)) == [2.0]
    assert table.info().num_deletes == 2


def test_items_are_removed_after_max_times_sampled() -> None:
    table = Table("t", max_size=10, sampler=Fifo(), rate_limiter=MinSize(1), max_times_sampled=2)
    table.insert(item(1.0))
    table.insert(item(2.0))
    assert values(table.sample(4)) == [1.0, 1.0, 2.0, 2.0]
    assert table.size == 0 and table.info().num_deletes == 2


def test_queue_returns_each_item_once_in_order() -> None:
    queue = Table.queue("q", max_size=4)
    for v in range(4):
        queue.insert(item(float(v)), timeout=0)
    with pytest.raises(DeadlineExceededError, match="rate limited"):
        queue.insert(item(9.0), timeout=0)  # 4 unread items: the queue is full
    assert values(queue.sample(4, timeout=0)) == [0.0, 1.0, 2.0, 3.0]
    assert queue.size == 0


def test_uniform_sampler_covers_items_evenly() -> None:
    table = Table("t", max_size=10, sampler=Uniform(seed=1), rate_limiter=MinSize(1))
    for v in range(4):
        table.insert(item(float(v)))
    counts = Counter(values(table.sample(4000)))
    assert set(counts) == {0.0, 1.0, 2.0, 3.0}
    assert all(850 < c < 1150 for c in counts.values()), counts


def test_uniform_selector_delete_keeps_remaining_keys_selectable() -> None:
    sel = Uniform(seed=0)
    for k in range(5):
        sel.insert(k)
    sel.delete(0)
    sel.delete(4)
    assert {sel.select() for _ in range(200)} == {1, 2, 3}
    with pytest.raises(KeyError, match="already"):
        sel.insert(1)


def test_sample_blocks_until_min_size_and_records_blocked_time() -> None:
    table = Table("t", max_size=10, sampler=Fifo(), rate_limiter=MinSize(2))
    table.insert(item(1.0))
    threading.Timer(0.3, lambda: table.insert(item(2.0))).start()
    start = time.monotonic()
    assert values(table.sample(1, timeout=5)) == [1.0]
    assert time.monotonic() - start >= 0.25
    rl = table.info().rate_limiter
    assert rl.num_blocked_samples == 1 and rl.sample_blocked_seconds >= 0.25
    assert rl.num_blocked_inserts == 0


def test_rate_limited_insert_times_out_with_the_limiter_state_and_unblocks_on_sample() -> None:
    table = Table("t", max_size=100, sampler=Fifo(), rate_limiter=SampleToInsertRatio(1.0, 1, 2.0))
    for v in range(3):
        table.insert(item(float(v)), timeout=0)
    with pytest.raises(DeadlineExceededError, match=r"insert on table 't' was rate limited for 0\.2 s.*inserts 3, samples 0.*\[-1, 3\]"):
        table.insert(item(9.0), timeout=0.2)
    done = threading.Event()
    threading.Thread(target=lambda: (table.insert(item(3.0), timeout=5), done.set())).start()
    time.sleep(0.1)
    assert not done.is_set(), "insert must wait for a sample"
    table.sample(1)
    assert done.wait(2.0), "a sample must wake the blocked insert"
    assert table.info().rate_limiter.num_blocked_inserts == 2


def test_waiting_call_gives_up_when_its_caller_goes_away() -> None:
    table = Table("t", max_size=10, sampler=Fifo(), rate_limiter=MinSize(1))
    active = threading.Event()
    active.set()
    threading.Timer(0.2, active.clear).start()
    with pytest.raises(CancelledError, match="cancelled by the caller"):
        table.sample(1, timeout=10, is_active=active.is_set)


def test_close_wakes_waiters_with_failed_precondition() -> None:
    table = Table("t", max_size=10, sampler=Fifo(), rate_limiter=MinSize(1))
    threading.Timer(0.2, table.close).start()
    with pytest.raises(FailedPreconditionError, match="closed"):
        table.sample(1, timeout=10)
    with pytest.raises(FailedPreconditionError):
        table.insert(item(1.0))


@pytest.mark.parametrize(
    "kwargs, want",
    [
        (dict(max_size=0, rate_limiter=MinSize(1)), r"max_size \(0\) must be a positive integer"),
        (dict(max_size=5, rate_limiter=MinSize(6)), r"min_size_to_sample \(6\) exceeds max_size \(5\)"),
        (dict(max_size=5, rate_limiter=SampleToInsertRatio(3.0, 1, 10.0), max_times_sampled=2), r"samples_per_insert \(3\) exceeds max_times_sampled \(2\)"),
        (dict(max_size=5, rate_limiter=MinSize(1), max_times_sampled=-1), r"max_times_sampled \(-1\) must be ≥ 0"),
    ],
    ids=["max_size_lt_1", "min_size_gt_max_size", "ratio_above_max_times_sampled", "negative_max_times_sampled"],
)
def test_table_refuses_configs_that_would_deadlock(kwargs, want) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=want):
        Table("t", sampler=Fifo(), **kwargs)


def test_insert_rejects_non_tensor_items() -> None:
    table = Table("t", max_size=5, sampler=Fifo(), rate_limiter=MinSize(1))
    with pytest.raises(InvalidArgumentError, match="name → tensor"):
        table.insert({"canvas": [1, 2]})  # type: ignore[dict-item]


def test_from_config_and_metrics() -> None:
    registry = CollectorRegistry()
    metrics = create_metrics(registry)
    cfg = ReplayConfig(max_size=3, sampler=SamplerKind.FIFO, min_size_to_sample=2)
    table = Table.from_config("fakes", cfg, metrics=metrics, job="j")
    for v in range(4):
        table.insert(item(float(v)))
    table.sample(2)
    labels = {"spiral_job": "j", "table": "fakes"}
    assert registry.get_sample_value("spiral_replay_size_items", labels) == 3
    assert registry.get_sample_value("spiral_replay_inserts_total", labels) == 4
    assert registry.get_sample_value("spiral_replay_samples_total", labels) == 2
    empty = Table.from_config("empty", cfg, metrics=metrics, job="j")
    with pytest.raises(DeadlineExceededError):
        empty.sample(1, timeout=0.1)
    blocked = registry.get_sample_value("spiral_replay_rate_limited_seconds_total", {"spiral_job": "j", "table": "empty", "side": "sample"})
    assert blocked is not None and blocked >= 0.09
