"""Item selectors: which key a table samples next (``Uniform``, ``Fifo``) or removes next (``Fifo``).

They hold keys only, never data, and are not thread-safe: a :class:`~spiral.replay.table.Table`
calls them under its lock. Reverb's ``item_selectors`` split, minus the kinds we do not need yet
(LIFO, prioritized, heaps).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Protocol

from spiral.config import SamplerKind


class ItemSelector(Protocol):
    """Keeps a set of keys and picks one. ``select`` on an empty selector raises ``IndexError``."""

    name: str

    def insert(self, key: int) -> None: ...

    def delete(self, key: int) -> None: ...

    def select(self) -> int: ...

    def __len__(self) -> int: ...


class Uniform:
    """Every key equally likely (with replacement across calls); O(1) insert, delete and select."""

    name = "uniform"

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._keys: list[int] = []
        self._index: dict[int, int] = {}

    def insert(self, key: int) -> None:
        if key in self._index:
            raise KeyError(f"key {key} is already in the uniform selector")
        self._index[key] = len(self._keys)
        self._keys.append(key)

    def delete(self, key: int) -> None:
        # Swap-remove keeps the list dense so that select stays O(1).
        pos = self._index.pop(key)
        last = self._keys.pop()
        if last != key:
            self._keys[pos] = last
            self._index[last] = pos

    def select(self) -> int:
        if not self._keys:
            raise IndexError("select from an empty uniform selector")
        return self._keys[self._rng.randrange(len(self._keys))]

    def __len__(self) -> int:
        return len(self._keys)


class Fifo:
    """The oldest inserted key; as a sampler it returns the same key until it is removed."""

    name = "fifo"

    def __init__(self) -> None:
        # OrderedDict, not dict: popping the head of a plain dict repeatedly degrades iteration.
        self._keys: OrderedDict[int, None] = OrderedDict()

    def insert(self, key: int) -> None:
        if key in self._keys:
            raise KeyError(f"key {key} is already in the fifo selector")
        self._keys[key] = None

    def delete(self, key: int) -> None:
        del self._keys[key]

    def select(self) -> int:
        if not self._keys:
            raise IndexError("select from an empty fifo selector")
        return next(iter(self._keys))

    def __len__(self) -> int:
        return len(self._keys)


def make_selector(kind: SamplerKind, seed: int | None = None) -> ItemSelector:
    """The selector for a configured ``replay.sampler``."""
    if kind == SamplerKind.UNIFORM:
        return Uniform(seed)
    if kind == SamplerKind.FIFO:
        return Fifo()
    raise ValueError(f"replay.sampler {kind!r} is not supported; valid: {[k.value for k in SamplerKind]}")
