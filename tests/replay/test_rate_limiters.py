"""Rate limiter validation (named table cases, as in Reverb's rate_limiters_test) and semantics."""

from __future__ import annotations

import logging
import math

import pytest

from spiral.config import ReplayConfig
from spiral.replay import MinSize, RateLimiter, SampleToInsertRatio, rate_limiter_from_config

CASES = [
    # (id, constructor, want error regex or None)
    ("min_size_ok", lambda: MinSize(1), None),
    ("min_size_lt_1", lambda: MinSize(0), r"min_size_to_sample \(0\) must be ≥ 1"),
    ("ratio_ok_number", lambda: SampleToInsertRatio(1.0, 10, 5.0), None),
    ("ratio_ok_range", lambda: SampleToInsertRatio(2.0, 10, (0.0, 40.0)), None),
    ("spi_zero", lambda: SampleToInsertRatio(0.0, 10, 5.0), r"samples_per_insert \(0\.0\) must be > 0"),
    ("spi_negative", lambda: SampleToInsertRatio(-1.0, 10, 5.0), r"samples_per_insert \(-1\.0\) must be > 0"),
    ("buffer_zero", lambda: SampleToInsertRatio(1.0, 10, 0.0), r"error_buffer \(0\.0\) must be > 0"),
    ("buffer_too_narrow_for_spi", lambda: SampleToInsertRatio(4.0, 10, 3.0), r"range of 6 .* must be ≥ 2 × max\(1, samples_per_insert\) = 8"),
    ("buffer_too_narrow_range", lambda: SampleToInsertRatio(1.0, 10, (9.0, 10.0)), r"range of 1 .*= 2 for samples_per_insert 1"),
    ("min_diff_above_offset_deadlocks", lambda: SampleToInsertRatio(1.0, 10, (11.0, 20.0)), r"min_diff \(11\) is above .*1 × 10 = 10\).*deadlock"),
    ("general_min_gt_max", lambda: RateLimiter(1.0, 1, 5.0, 4.0), r"min_diff \(5\.0\) must be ≤ max_diff \(4\.0\)"),
]


@pytest.mark.parametrize("make, want", [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_rate_limiter_validation(make, want) -> None:  # noqa: ANN001
    if want is None:
        make()
    else:
        with pytest.raises(ValueError, match=want):
            make()


def test_warns_when_inserts_need_a_concurrent_sampler(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="spiral.replay.rate_limiters"):
        SampleToInsertRatio(1.0, 10, (-10.0, 5.0))
    assert "max_diff (5) is below" in caplog.text


def test_min_size_only_gates_sampling() -> None:
    limiter = MinSize(3)
    assert not limiter.can_sample(2)
    assert limiter.can_sample(3)
    assert limiter.can_insert(10_000)
    assert limiter.min_diff == -math.inf and limiter.max_diff == math.inf


def test_ratio_blocks_inserts_beyond_max_diff_and_samples_below_min_diff() -> None:
    # spi 1, min size 1, buffer 2 → offset 1, diff must stay within [-1, 3].
    limiter = SampleToInsertRatio(1.0, 1, 2.0)
    assert (limiter.min_diff, limiter.max_diff) == (-1.0, 3.0)
    size = 0
    for _ in range(3):
        assert limiter.can_insert(size)
        limiter.on_insert()
        size += 1
    assert not limiter.can_insert(size), "4 inserts without a sample exceed max_diff 3"
    for _ in range(4):
        assert limiter.can_sample(size)
        limiter.on_sample()
    assert limiter.diff == -1
    assert not limiter.can_sample(size), "one more sample would take diff below min_diff -1"
    assert limiter.can_insert(size)


def test_inserts_are_free_until_min_size() -> None:
    limiter = SampleToInsertRatio(1.0, 5, 1.0)  # offset 5, range [4, 6]
    for size in range(5):
        assert limiter.can_insert(size)
        limiter.on_insert()
    assert limiter.can_insert(5)  # diff 6 ≤ 6
    limiter.on_insert()
    assert not limiter.can_insert(6)


def test_from_config_picks_the_limiter_and_names_the_config_keys() -> None:
    assert type(rate_limiter_from_config(ReplayConfig(min_size_to_sample=4))) is MinSize
    limiter = rate_limiter_from_config(ReplayConfig(min_size_to_sample=4, samples_per_insert=2.0, error_buffer=10.0))
    assert isinstance(limiter, SampleToInsertRatio) and (limiter.min_diff, limiter.max_diff) == (-2.0, 18.0)
    with pytest.raises(ValueError, match=r"replay\.samples_per_insert / replay\.error_buffer.*must be ≥ 2 × max"):
        rate_limiter_from_config(ReplayConfig(min_size_to_sample=4, samples_per_insert=8.0, error_buffer=2.0))


def test_counters_survive_a_state_round_trip() -> None:
    a = SampleToInsertRatio(1.0, 1, 5.0)
    a.on_insert(4)
    a.on_sample(2)
    a.record_blocked(insert=True, seconds=0.5)
    b = SampleToInsertRatio(1.0, 1, 5.0)
    b.load_state_dict(a.state_dict())
    assert b.info() == a.info() and b.diff == a.diff
