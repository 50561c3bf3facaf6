"""A replay table: items, a sampler, a FIFO remover, ``max_size``, ``max_times_sampled`` and a
rate limiter that makes inserts and samples wait (Reverb's ``Table``, in-process and gRPC-free).

Terms, as in Reverb: a *data element* is what a producer hands in (here one final canvas, with
its target in conditional mode: named tensors); an *item* is a data element stored in a table
under an integer key, with a count of how often it was sampled. A *sample* returns an item's data
and bumps that count; a trajectory is never an item (trajectories go to the policy learner).

Thread-safe: every method takes the table's lock; waiting callers sleep on its condition and are
woken by the operation that may unblock them. The gRPC servicer in
:mod:`spiral.services.replay_service` is a thin wrapper around this class.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from spiral.config import ReplayConfig
from spiral.errors import CancelledError, DeadlineExceededError, FailedPreconditionError, InvalidArgumentError
from spiral.metrics import SpiralMetrics
from spiral.replay.rate_limiters import RateLimiter, RateLimiterInfo, SampleToInsertRatio, rate_limiter_from_config
from spiral.replay.selectors import Fifo, ItemSelector, make_selector

logger = logging.getLogger(__name__)

#: One data element: named tensors (e.g. ``{"canvas": [C, H, W], "target": [C, H, W]}``).
ItemData = dict[str, torch.Tensor]

#: How often a waiting call re-checks its ``is_active`` callback (a cancelled RPC).
_POLL_SECONDS = 0.25
#: A sample re-checks its deadline and caller every this many items even when none waits.
_CHECK_EVERY_ITEMS = 256


class SampledItem(NamedTuple):
    """One sampled item. ``data`` is the table's own tensors: read them, do not modify them."""

    key: int
    data: ItemData
    times_sampled: int  # including this sample


class TableInfo(NamedTuple):
    name: str
    size: int
    max_size: int
    sampler: str
    remover: str
    max_times_sampled: int
    num_inserts: int
    num_samples: int
    num_deletes: int
    rate_limiter: RateLimiterInfo


class _Item:
    __slots__ = ("data", "times_sampled")

    def __init__(self, data: ItemData, times_sampled: int = 0) -> None:
        self.data = data
        self.times_sampled = times_sampled


class Table:
    """A named, bounded, rate-limited collection of items."""

    def __init__(
        self,
        name: str,
        *,
        max_size: int,
        sampler: ItemSelector,
        rate_limiter: RateLimiter,
        max_times_sampled: int = 0,
        remover: ItemSelector | None = None,
        metrics: SpiralMetrics | None = None,
        job: str = "local",
    ) -> None:
        """
        Args:
            max_size: items kept; inserting into a full table first removes ``remover``'s pick
                (the oldest item for the default FIFO remover).
            max_times_sampled: an item is removed after this many samples (0 = never).
            metrics: updates ``spiral_replay_*`` with labels ``(job, name)``.

        Raises:
            ValueError: empty name, max_size < 1, max_times_sampled < 0, min_size_to_sample above
                max_size (samples would wait forever), or a samples-per-insert ratio above
                max_times_sampled (the table would drain and both sides deadlock). Messages
                name the values.
        """
        if not name:
            raise ValueError("table name must not be empty")
        if max_size < 1:
            raise ValueError(f"table {name!r}: max_size ({max_size}) must be a positive integer")
        if max_times_sampled < 0:
            raise ValueError(f"table {name!r}: max_times_sampled ({max_times_sampled}) must be ≥ 0 (0 = unlimited)")
        if rate_limiter.min_size_to_sample > max_size:
            raise ValueError(
                f"table {name!r}: min_size_to_sample ({rate_limiter.min_size_to_sample}) exceeds max_size ({max_size}): "
                "sampling would wait forever"
            )
        if max_times_sampled and isinstance(rate_limiter, SampleToInsertRatio) and rate_limiter.samples_per_insert > max_times_sampled:
            raise ValueError(
                f"table {name!r}: samples_per_insert ({rate_limiter.samples_per_insert:g}) exceeds max_times_sampled "
                f"({max_times_sampled}): items would be removed faster than the ratio allows and inserts and samples deadlock"
            )
        self.name = name
        self.max_size = max_size
        self.max_times_sampled = max_times_sampled
        self._sampler = sampler
        self._remover = remover if remover is not None else Fifo()
        self._limiter = rate_limiter
        self._metrics = metrics
        self._job = job
        self._items: dict[int, _Item] = {}
        self._next_key = 0
        self._num_deletes = 0
        self._closed = False
        self._cond = threading.Condition()
        self._update_size_metric()

    # ----------------------------------------------------------------------- constructors ---

    @classmethod
    def from_config(cls, name: str, cfg: ReplayConfig, *, seed: int | None = None, metrics: SpiralMetrics | None = None, job: str = "local") -> Table:
        """The table ``replay.*`` describes (sampler, limiter, sizes).

        Raises:
            ValueError: see :meth:`__init__` and :func:`rate_limiter_from_config`.
        """
        return cls(
            name,
            max_size=cfg.max_size,
            sampler=make_selector(cfg.sampler, seed),
            rate_limiter=rate_limiter_from_config(cfg),
            max_times_sampled=cfg.max_times_sampled,
            metrics=metrics,
            job=job,
        )

    @classmethod
    def queue(cls, name: str, max_size: int, **kwargs: Any) -> Table:
        """A FIFO queue: each item is sampled once, in order; inserts wait when ``max_size`` are unread.

        Raises:
            ValueError: ``max_size`` < 2 (the limiter needs room for one insert and one sample).
        """
        if max_size < 2:
            raise ValueError(f"queue {name!r}: max_size ({max_size}) must be ≥ 2")
        limiter = SampleToInsertRatio(1.0, 1, (0.0, float(max_size)))
        return cls(name, max_size=max_size, sampler=Fifo(), remover=Fifo(), rate_limiter=limiter, max_times_sampled=1, **kwargs)

    # ---------------------------------------------------------------------------- queries ---

    @property
    def size(self) -> int:
        with self._cond:
            return len(self._items)

    def __len__(self) -> int:
        return self.size

    @property
    def closed(self) -> bool:
        return self._closed

    def info(self) -> TableInfo:
        with self._cond:
            return TableInfo(
                self.name,
                len(self._items),
                self.max_size,
                self._sampler.name,
                self._remover.name,
                self.max_times_sampled,
                self._limiter.num_inserts,
                self._limiter.num_samples,
                self._num_deletes,
                self._limiter.info(),
            )

    # ---------------------------------------------------------------------------- waiting ---

    def _wait(self, ready: Callable[[], bool], *, insert: bool, timeout: float | None, is_active: Callable[[], bool] | None, what: str) -> None:
        """Wait (lock held) until ``ready()``; accounts blocked time on the limiter and metric."""
        if ready():
            self._check_open()
            return
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        try:
            while not ready():
                self._check_open()
                if is_active is not None and not is_active():
                    raise CancelledError(f"{what} on table {self.name!r} cancelled by the caller while rate limited")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise DeadlineExceededError(
                        f"{what} on table {self.name!r} was rate limited for {timeout:g} s and gave up: {self._limiter.describe(len(self._items))}"
                    )
                self._cond.wait(_POLL_SECONDS if remaining is None else min(_POLL_SECONDS, remaining))
            self._check_open()
        finally:
            blocked = time.monotonic() - start
            self._limiter.record_blocked(insert=insert, seconds=blocked)
            if self._metrics is not None:
                self._metrics.replay_rate_limited_seconds.labels(self._job, self.name, "insert" if insert else "sample").inc(blocked)

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPreconditionError(f"table {self.name!r} is closed (the replay server is shutting down)")

    # ---------------------------------------------------------------------------- updates ---

    def insert(self, data: ItemData, *, timeout: float | None = None, is_active: Callable[[], bool] | None = None) -> int:
        """Add one item, waiting while the rate limiter forbids inserts; returns its key.

        Args:
            timeout: seconds to wait for the limiter (None = forever, 0 = do not wait).
            is_active: polled while waiting; returning False abandons the insert (a cancelled RPC).

        Raises:
            InvalidArgumentError: ``data`` is not a non-empty mapping of names to tensors.
            DeadlineExceededError: still rate limited after ``timeout`` (names the limiter state).
            CancelledError: ``is_active()`` turned False while waiting.
            FailedPreconditionError: the table is closed.
        """
        if not data or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
            raise InvalidArgumentError(f"table {self.name!r}: an item must be a non-empty dict of name → tensor, got {type(data).__name__}")
        with self._cond:
            self._wait(lambda: self._limiter.can_insert(len(self._items)), insert=True, timeout=timeout, is_active=is_active, what="insert")
            if len(self._items) >= self.max_size:
                self._delete(self._remover.select())
            key = self._next_key
            self._next_key += 1
            self._items[key] = _Item(dict(data))
            self._sampler.insert(key)
            self._remover.insert(key)
            self._limiter.on_insert()
            self._cond.notify_all()
            size = len(self._items)
        if self._metrics is not None:
            self._metrics.replay_inserts.labels(self._job, self.name).inc()
            self._metrics.replay_size.labels(self._job, self.name).set(size)
        return key

    def sample(self, num_samples: int = 1, *, timeout: float | None = None, is_active: Callable[[], bool] | None = None) -> list[SampledItem]:
        """Sample ``num_samples`` items one at a time, each waiting for the rate limiter.

        Items that reach ``max_times_sampled`` are removed as they are sampled. If the timeout
        hits part-way, the samples already taken stay counted (as in Reverb).

        Args:
            timeout: seconds for the whole call (None = forever, 0 = do not wait).
            is_active: polled while waiting; returning False abandons the call.

        Raises:
            ValueError: ``num_samples`` < 1.
            DeadlineExceededError: fewer than ``num_samples`` obtained within ``timeout``.
            CancelledError: ``is_active()`` turned False while waiting.
            FailedPreconditionError: the table is closed.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples ({num_samples}) must be ≥ 1")
        deadline = None if timeout is None else time.monotonic() + timeout
        out: list[SampledItem] = []
        with self._cond:
            while len(out) < num_samples:
                if len(out) % _CHECK_EVERY_ITEMS == _CHECK_EVERY_ITEMS - 1:
                    # Not only while waiting: a huge request with items at hand must not hold the
                    # lock past its deadline, nor for a caller that has gone.
                    if deadline is not None and time.monotonic() > deadline:
                        raise DeadlineExceededError(f"sample on table {self.name!r}: only {len(out)} of {num_samples} items within {timeout:g} s")
                    if is_active is not None and not is_active():
                        raise CancelledError(f"sample on table {self.name!r} cancelled by the caller after {len(out)} of {num_samples} items")
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._wait(
                    lambda: bool(self._items) and self._limiter.can_sample(len(self._items)),
                    insert=False,
                    timeout=remaining,
                    is_active=is_active,
                    what=f"sample {len(out) + 1} of {num_samples}",
                )
                key = self._sampler.select()
                item = self._items[key]
                item.times_sampled += 1
                out.append(SampledItem(key, item.data, item.times_sampled))
                self._limiter.on_sample()
                if self.max_times_sampled and item.times_sampled >= self.max_times_sampled:
                    self._delete(key)
                self._cond.notify_all()
            size = len(self._items)
        if self._metrics is not None:
            self._metrics.replay_samples.labels(self._job, self.name).inc(len(out))
            self._metrics.replay_size.labels(self._job, self.name).set(size)
        return out

    def _delete(self, key: int) -> None:
        del self._items[key]
        self._sampler.delete(key)
        self._remover.delete(key)
        self._num_deletes += 1

    def close(self) -> None:
        """Refuse further inserts and samples and wake every waiting caller (FailedPrecondition)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _update_size_metric(self) -> None:
        if self._metrics is not None:
            self._metrics.replay_size.labels(self._job, self.name).set(len(self._items))

    # ------------------------------------------------------------------------- checkpoint ---

    def state_dict(self) -> dict[str, Any]:
        """A consistent snapshot (plain dicts, lists and tensors: ``torch.load(weights_only=True)``
        can read it). Items are listed oldest first; tensors are shared, not copied."""
        with self._cond:
            keys = list(self._items)  # dict order = insertion order = key order
            items = [self._items[k] for k in keys]
            return {
                "name": self.name,
                "next_key": self._next_key,
                "num_deletes": self._num_deletes,
                "limiter": self._limiter.state_dict(),
                "keys": torch.tensor(keys, dtype=torch.int64),
                "times_sampled": torch.tensor([i.times_sampled for i in items], dtype=torch.int64),
                "data": _pack([i.data for i in items]),
            }

    def load_state_dict(self, state: dict[str, Any], *, keep: Callable[[ItemData], bool] | None = None) -> int:
        """Replace the contents with a :meth:`state_dict` snapshot; returns the items restored.

        A snapshot from a larger table keeps only its newest ``max_size`` items (logged).

        Args:
            keep: restore only the items it accepts; the others are dropped (logged, and counted
                as deletes so that the counters stay consistent).

        Raises:
            InvalidArgumentError: the snapshot is malformed (names what is missing).
        """
        try:
            keys = [int(k) for k in state["keys"].tolist()]
            times = [int(t) for t in state["times_sampled"].tolist()]
            data = _unpack(state["data"], len(keys))
            limiter_state = state["limiter"]
            next_key, num_deletes = int(state["next_key"]), int(state["num_deletes"])
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise InvalidArgumentError(f"table {self.name!r}: checkpoint snapshot is malformed: {type(err).__name__}: {err}") from None
        if len(times) != len(keys):
            raise InvalidArgumentError(f"table {self.name!r}: checkpoint has {len(keys)} keys but {len(times)} times_sampled")
        refused = 0
        if keep is not None:
            kept = [(k, t, d) for k, t, d in zip(keys, times, data, strict=True) if keep(d)]
            refused = len(keys) - len(kept)
            if refused:
                logger.warning("table %r: dropped %d checkpointed items that this job would refuse (another shape, or bad values)", self.name, refused)
            keys, times, data = [k for k, _, _ in kept], [t for _, t, _ in kept], [d for _, _, d in kept]
        dropped = max(0, len(keys) - self.max_size)
        if dropped:
            logger.warning("table %r: checkpoint holds %d items, max_size is %d: dropping the %d oldest", self.name, len(keys), self.max_size, dropped)
        with self._cond:
            for key in list(self._items):
                self._delete(key)
            for key, t, d in list(zip(keys, times, data, strict=True))[dropped:]:
                self._items[key] = _Item(d, t)
                self._sampler.insert(key)
                self._remover.insert(key)
            self._limiter.load_state_dict(limiter_state)
            self._next_key = max(next_key, (keys[-1] + 1) if keys else 0)
            self._num_deletes = num_deletes + dropped + refused
            self._cond.notify_all()
            self._update_size_metric()
            return len(self._items)


def _pack(items: list[ItemData]) -> dict[str, Any]:
    """Stack items field by field when they all share names, shapes and dtypes (one tensor per
    field saves and loads far faster than thousands of small ones); otherwise keep a list."""
    if items:
        names = list(items[0])
        first = items[0]
        uniform = all(
            list(d) == names and all(d[n].shape == first[n].shape and d[n].dtype == first[n].dtype for n in names) for d in items
        )
        if uniform:
            return {"stacked": {n: torch.stack([d[n] for d in items]) for n in names}}
    return {"list": [dict(d) for d in items]}


def _unpack(packed: dict[str, Any], count: int) -> list[ItemData]:
    if "stacked" in packed:
        fields = packed["stacked"]
        for n, t in fields.items():
            if t.shape[0] != count:
                raise ValueError(f"field {n!r} holds {t.shape[0]} items, expected {count}")
        # clone: a view would keep the whole stacked checkpoint tensor alive after eviction.
        return [{n: t[i].clone() for n, t in fields.items()} for i in range(count)]
    items = packed["list"]
    if len(items) != count:
        raise ValueError(f"data holds {len(items)} items, expected {count}")
    return [dict(d) for d in items]
