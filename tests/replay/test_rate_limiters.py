"""Rate limiter validation (named table cases, as in Reverb's rate_limiters_test) and semantics."""

from __future__ import annotations

import logging
import math

import pytest

from spiral.config import ReplayConfig
from spiral.replay import MinSize, RateLimiter, RateLimiterInfo, SampleToInsertRatio, rate_limiter_from_config

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


# ------------------------------------------------------------------ boundaries and ratios ≠ 1 ---

BOUNDARY_CASES = [
    # (id, constructor, want error regex or None): each sits exactly on a rule's edge.
    ("general_min_eq_max_ok", lambda: RateLimiter(1.0, 1, 2.0, 2.0), None),
    ("general_spi_zero", lambda: RateLimiter(0.0, 1, 0.0, 1.0), r"samples_per_insert \(0\.0\) must be > 0"),
    ("min_size_1_ok", lambda: RateLimiter(1.0, 1, 0.0, 1.0), None),
    ("buffer_exactly_2_x_spi_ok", lambda: SampleToInsertRatio(3.0, 10, 3.0), None),  # range 6 = 2 × 3
    ("buffer_exactly_2_ok", lambda: SampleToInsertRatio(0.5, 10, (4.0, 6.0)), None),  # range 2 = 2 × max(1, 0.5)
    ("buffer_just_below_2_x_spi", lambda: SampleToInsertRatio(3.0, 10, 2.9), r"range of 5\.8 .*= 6 for samples_per_insert 3"),
    ("min_diff_equal_offset_ok", lambda: SampleToInsertRatio(2.0, 5, (10.0, 20.0)), None),  # offset 2 × 5 = 10
    # samples_per_insert is checked first, so the message names it and not the (also narrow) buffer.
    ("spi_zero_before_buffer", lambda: SampleToInsertRatio(0.0, 10, (0.0, 1.0)), r"samples_per_insert \(0\.0\) must be > 0"),
]


@pytest.mark.parametrize("make, want", [(c[1], c[2]) for c in BOUNDARY_CASES], ids=[c[0] for c in BOUNDARY_CASES])
def test_rate_limiter_validation_boundaries(make, want) -> None:  # noqa: ANN001
    if want is None:
        make()
    else:
        with pytest.raises(ValueError, match=want):
            make()


def test_no_warning_when_max_diff_equals_the_offset(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="spiral.replay.rate_limiters"):
        SampleToInsertRatio(2.0, 5, (0.0, 10.0))  # max_diff 10 = 2 × 5: a single loop can still insert
    assert caplog.text == ""


def test_ratio_two_samples_per_insert() -> None:
    # spi 2, min size 2, buffer 3 → offset 4, diff = 2·inserts − samples must stay within [1, 7].
    limiter = SampleToInsertRatio(2.0, 2, 3.0)
    assert (limiter.min_diff, limiter.max_diff) == (1.0, 7.0)
    limiter.on_insert(3)
    assert limiter.diff == 6.0
    assert not limiter.can_insert(3), "a 4th insert would make diff 8 > 7"
    assert limiter.can_sample(3, num_samples=5)  # 6 − 5 = 1 ≥ 1
    assert not limiter.can_sample(3, num_samples=6)
    limiter.on_sample(4)
    assert limiter.diff == 2.0
    assert limiter.can_insert(3)  # 2 + 2 = 4 ≤ 7
    assert limiter.can_insert(3, num_inserts=2)  # 2 + 4 = 6 ≤ 7
    assert not limiter.can_insert(3, num_inserts=3)  # 2 + 6 = 8 > 7
    assert limiter.can_sample(3) and not limiter.can_sample(3, num_samples=2)


def test_ratio_half_a_sample_per_insert() -> None:
    # spi 0.5: two inserts pay for one sample; min size 4, range [0, 4] around offset 2.
    limiter = SampleToInsertRatio(0.5, 4, 2.0)
    assert (limiter.min_diff, limiter.max_diff) == (0.0, 4.0)
    limiter.on_insert(4)
    assert limiter.diff == 2.0
    assert limiter.can_sample(4, num_samples=2) and not limiter.can_sample(4, num_samples=3)
    limiter.on_insert(4)
    assert limiter.diff == 4.0 and not limiter.can_insert(8)  # 4.5 > 4


def test_min_size_boundary_is_exact() -> None:
    # max_diff 2 lies below the offset 5 (warned), so every insert past the minimum is refused:
    # only the "free until min_size_to_sample items" rule lets the first five in.
    limiter = SampleToInsertRatio(1.0, 5, (-10.0, 2.0))
    for size in range(5):
        assert limiter.can_insert(size), f"insert {size + 1} of the first 5 is free"
        limiter.on_insert()
    assert not limiter.can_insert(5), "the 6th insert: 6 items > min_size 5 and diff 6 > max_diff 2"
    assert limiter.can_sample(4) is False and limiter.can_sample(5) is True  # plain bools, as annotated
    fresh = SampleToInsertRatio(1.0, 5, (-10.0, 2.0))
    assert fresh.can_insert(2, num_inserts=3), "3 more make exactly 5 items: free although diff 3 > max_diff 2"
    assert not fresh.can_insert(3, num_inserts=3), "6 items: the ratio applies, and diff 3 > 2"


def test_fresh_limiter_info_and_blocked_accounting() -> None:
    limiter = MinSize(3)
    assert limiter.info() == RateLimiterInfo(1.0, 3, -math.inf, math.inf, 0.0, 0.0, 0, 0)
    limiter.record_blocked(insert=True, seconds=0.5)
    limiter.record_blocked(insert=True, seconds=0.25)
    limiter.record_blocked(insert=False, seconds=2.0)
    assert limiter.info() == RateLimiterInfo(1.0, 3, -math.inf, math.inf, 0.75, 2.0, 2, 1)
    assert limiter.state_dict() == {
        "num_inserts": 0, "num_samples": 0, "insert_blocked_seconds": 0.75,
        "sample_blocked_seconds": 2.0, "num_blocked_inserts": 2, "num_blocked_samples": 1,
    }


def test_describe_names_the_state_that_blocks() -> None:
    limiter = SampleToInsertRatio(2.0, 2, 3.0)
    limiter.on_insert(3)
    limiter.on_sample()
    assert limiter.describe(3) == (
        "size 3, min_size_to_sample 2, inserts 3, samples 1, samples_per_insert 2, diff 5 must stay within [1, 7]"
    )


def test_default_counts_are_one() -> None:
    limiter = SampleToInsertRatio(1.0, 1, (0.0, 2.0))
    limiter.on_insert()
    limiter.on_insert()
    assert limiter.diff == 2.0 and not limiter.can_insert(2)  # 3 > 2
    assert limiter.can_sample(2)
    limiter.on_sample()
    assert limiter.diff == 1.0
