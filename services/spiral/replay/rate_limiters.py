"""Rate limiters: whether a table may take an insert or serve a sample right now.

Reverb's semantics. A limiter tracks ``inserts`` and ``samples`` since the table was created and
keeps ``diff = inserts × samples_per_insert − samples`` inside ``[min_diff, max_diff]``:

* a sample needs ``size ≥ min_size_to_sample`` and ``diff − 1 ≥ min_diff``;
* an insert is free while the table holds at most ``min_size_to_sample`` items, then needs
  ``diff + samples_per_insert ≤ max_diff``.

:class:`MinSize` only waits for ``min_size_to_sample`` items; :class:`SampleToInsertRatio` also
holds the ratio within an error buffer and refuses, at construction, buffers that would deadlock.
Not thread-safe: the table calls it under its lock and does the waiting.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

from spiral.config import ReplayConfig

logger = logging.getLogger(__name__)


class RateLimiterInfo(NamedTuple):
    samples_per_insert: float
    min_size_to_sample: int
    min_diff: float
    max_diff: float
    insert_blocked_seconds: float
    sample_blocked_seconds: float
    num_blocked_inserts: int
    num_blocked_samples: int


class RateLimiter:
    """The general limiter; use the named constructors :class:`MinSize` / :class:`SampleToInsertRatio`."""

    def __init__(self, samples_per_insert: float, min_size_to_sample: int, min_diff: float, max_diff: float) -> None:
        """
        Raises:
            ValueError: samples_per_insert ≤ 0, min_size_to_sample < 1, or min_diff > max_diff
                (each message names the value).
        """
        if not samples_per_insert > 0:
            raise ValueError(f"samples_per_insert ({samples_per_insert}) must be > 0")
        if min_size_to_sample < 1:
            raise ValueError(f"min_size_to_sample ({min_size_to_sample}) must be ≥ 1")
        if min_diff > max_diff:
            raise ValueError(f"min_diff ({min_diff}) must be ≤ max_diff ({max_diff})")
        self.samples_per_insert = float(samples_per_insert)
        self.min_size_to_sample = int(min_size_to_sample)
        self.min_diff = float(min_diff)
        self.max_diff = float(max_diff)
        self.num_inserts = 0
        self.num_samples = 0
        self.insert_blocked_seconds = 0.0
        self.sample_blocked_seconds = 0.0
        self.num_blocked_inserts = 0
        self.num_blocked_samples = 0

    @property
    def diff(self) -> float:
        return self.num_inserts * self.samples_per_insert - self.num_samples

    def can_insert(self, size: int, num_inserts: int = 1) -> bool:
        """May ``num_inserts`` items go into a table of ``size`` items now?"""
        if size + num_inserts <= self.min_size_to_sample:
            return True  # filling up to the minimum is always allowed
        return (self.num_inserts + num_inserts) * self.samples_per_insert - self.num_samples <= self.max_diff

    def can_sample(self, size: int, num_samples: int = 1) -> bool:
        """May ``num_samples`` samples be taken from a table of ``size`` items now?"""
        if size < self.min_size_to_sample:
            return False
        return self.diff - num_samples >= self.min_diff

    def on_insert(self, num_inserts: int = 1) -> None:
        self.num_inserts += num_inserts

    def on_sample(self, num_samples: int = 1) -> None:
        self.num_samples += num_samples

    def record_blocked(self, *, insert: bool, seconds: float) -> None:
        """Account a wait that the table did on this limiter's behalf."""
        if insert:
            self.insert_blocked_seconds += seconds
            self.num_blocked_inserts += 1
        else:
            self.sample_blocked_seconds += seconds
            self.num_blocked_samples += 1

    def describe(self, size: int) -> str:
        """The state, for error messages: why a call is blocked."""
        return (
            f"size {size}, min_size_to_sample {self.min_size_to_sample}, inserts {self.num_inserts}, "
            f"samples {self.num_samples}, samples_per_insert {self.samples_per_insert:g}, "
            f"diff {self.diff:g} must stay within [{self.min_diff:g}, {self.max_diff:g}]"
        )

    def info(self) -> RateLimiterInfo:
        return RateLimiterInfo(
            self.samples_per_insert,
            self.min_size_to_sample,
            self.min_diff,
            self.max_diff,
            self.insert_blocked_seconds,
            self.sample_blocked_seconds,
            self.num_blocked_inserts,
            self.num_blocked_samples,
        )

    def state_dict(self) -> dict[str, float | int]:
        """Counters to checkpoint; the ratio must survive a restart or it would start over."""
        return {
            "num_inserts": self.num_inserts,
            "num_samples": self.num_samples,
            "insert_blocked_seconds": self.insert_blocked_seconds,
            "sample_blocked_seconds": self.sample_blocked_seconds,
            "num_blocked_inserts": self.num_blocked_inserts,
            "num_blocked_samples": self.num_blocked_samples,
        }

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.num_inserts = int(state["num_inserts"])
        self.num_samples = int(state["num_samples"])
        self.insert_blocked_seconds = float(state["insert_blocked_seconds"])
        self.sample_blocked_seconds = float(state["sample_blocked_seconds"])
        self.num_blocked_inserts = int(state["num_blocked_inserts"])
        self.num_blocked_samples = int(state["num_blocked_samples"])


class MinSize(RateLimiter):
    """Sampling waits for ``min_size_to_sample`` items; nothing else is limited."""

    def __init__(self, min_size_to_sample: int) -> None:
        """
        Raises:
            ValueError: ``min_size_to_sample`` < 1.
        """
        super().__init__(1.0, min_size_to_sample, -math.inf, math.inf)


class SampleToInsertRatio(RateLimiter):
    """Keeps samples ≈ ``samples_per_insert`` × inserts, within an error buffer.

    ``error_buffer`` is either a number (the buffer is ``offset ± error_buffer`` around
    ``offset = samples_per_insert × min_size_to_sample``) or an explicit ``(min_diff, max_diff)``.
    """

    def __init__(self, samples_per_insert: float, min_size_to_sample: int, error_buffer: float | tuple[float, float]) -> None:
        """
        Raises:
            ValueError: samples_per_insert ≤ 0; a buffer narrower than
                ``2 × max(1, samples_per_insert)`` (it could block samples and inserts at once);
                or ``min_diff`` above ``samples_per_insert × min_size_to_sample`` (sampling would
                deadlock once ``min_size_to_sample`` items are in). Messages name the values.
        """
        if not samples_per_insert > 0:
            raise ValueError(f"samples_per_insert ({samples_per_insert}) must be > 0")
        offset = samples_per_insert * min_size_to_sample
        if isinstance(error_buffer, tuple):
            min_diff, max_diff = (float(v) for v in error_buffer)
            shown = f"({min_diff:g}, {max_diff:g})"
        else:
            if not error_buffer > 0:
                raise ValueError(f"error_buffer ({error_buffer}) must be > 0")
            min_diff, max_diff = offset - error_buffer, offset + error_buffer
            shown = f"{error_buffer:g}"
        width = max_diff - min_diff
        if width < 2 * max(1.0, samples_per_insert):
            raise ValueError(
                f"error_buffer {shown} gives a range of {width:g} (min_diff {min_diff:g}, max_diff {max_diff:g}) but it must be ≥ "
                f"2 × max(1, samples_per_insert) = {2 * max(1.0, samples_per_insert):g} for samples_per_insert {samples_per_insert:g}: "
                "a narrower buffer can block inserts and samples at the same time"
            )
        if min_diff > offset:
            raise ValueError(
                f"error_buffer {shown}: min_diff ({min_diff:g}) is above samples_per_insert × min_size_to_sample "
                f"({samples_per_insert:g} × {min_size_to_sample} = {offset:g}): sampling would deadlock as soon as "
                f"min_size_to_sample items have been inserted"
            )
        if max_diff < offset:
            logger.warning(
                "error_buffer %s: max_diff (%g) is below samples_per_insert × min_size_to_sample (%g): inserts will block "
                "until someone samples, which deadlocks a single-threaded insert-then-sample loop",
                shown,
                max_diff,
                offset,
            )
        super().__init__(samples_per_insert, min_size_to_sample, min_diff, max_diff)


def rate_limiter_from_config(cfg: ReplayConfig) -> RateLimiter:
    """``MinSize`` when ``replay.samples_per_insert`` is unset, otherwise ``SampleToInsertRatio``.

    Raises:
        ValueError: see :class:`SampleToInsertRatio` (messages name the replay.* values).
    """
    if cfg.samples_per_insert is None:
        return MinSize(cfg.min_size_to_sample)
    try:
        return SampleToInsertRatio(cfg.samples_per_insert, cfg.min_size_to_sample, cfg.error_buffer)
    except ValueError as err:
        raise ValueError(f"replay.samples_per_insert / replay.error_buffer / replay.min_size_to_sample: {err}") from None
