"""Bounded views over time: counts per second over a sliding window, and a keyed
store that forgets its oldest entries.

Both hold a fixed amount of memory however long the stream runs: a
:class:`SecondBuckets` keeps at most ``window_s`` seconds (a second older than
the newest minus the window is dropped as soon as a newer one arrives), a
:class:`Recent` at most ``limit`` keys (the least recently put goes first).

Example:
    >>> b = SecondBuckets(window_s=5)
    >>> for t in (10.2, 10.7, 11.1, 14.0):
    ...     b.add(t, "items")
    >>> b.seconds(), b.series(["items"])["items"]
    ([10, 11, 12, 13, 14], [2, 1, 0, 0, 1])
    >>> b.add(16.5, "items")
    >>> b.seconds(), b.series(["items"])["items"], b.totals["items"]
    ([12, 13, 14, 15, 16], [0, 0, 1, 0, 1], 5)
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["Recent", "SecondBuckets"]

K = TypeVar("K")
V = TypeVar("V")


class SecondBuckets:
    """Counts by key per epoch second, over the last ``window_s`` seconds of the data.

    Args:
        window_s: how many seconds are kept, ending at the newest second seen.
    """

    def __init__(self, window_s: int = 300) -> None:
        if window_s < 1:
            raise ValueError(f"window_s must be at least 1, got {window_s}")
        self.window_s = window_s
        self._buckets: dict[int, Counter[str]] = {}
        self.newest: int | None = None
        self.oldest: int | None = None
        self.totals: Counter[str] = Counter()
        """Every count ever added, by key (not only the window's)."""

    def add(self, t: float, key: str, n: int = 1) -> None:
        """Counts ``n`` of ``key`` at epoch second ``t`` (dropped when older than the window)."""
        second = int(t)
        self.totals[key] += n
        self.oldest = second if self.oldest is None else min(self.oldest, second)
        if self.newest is not None and second <= self.newest - self.window_s:
            return
        self._buckets.setdefault(second, Counter())[key] += n
        if self.newest is None or second > self.newest:
            self.newest = second
            cutoff = second - self.window_s
            for old in [s for s in self._buckets if s <= cutoff]:
                del self._buckets[old]

    def seconds(self, end: int | None = None) -> list[int]:
        """The window's seconds, oldest first, up to ``end`` (default: the newest seen);
        a window not yet full starts at the oldest second seen."""
        end = self.newest if end is None else end
        if end is None or self.oldest is None:
            return []
        start = max(self.oldest, end - self.window_s + 1)
        return list(range(start, end + 1))

    def series(self, keys: Iterable[str], end: int | None = None) -> dict[str, list[int]]:
        """Per key, its count in each of :meth:`seconds` (0 where none)."""
        seconds = self.seconds(end)
        return {k: [self._buckets.get(s, Counter()).get(k, 0) for s in seconds] for k in keys}

    def keys(self) -> Counter[str]:
        """Every key in the window with its count there."""
        out: Counter[str] = Counter()
        for counts in self._buckets.values():
            out.update(counts)
        return out

    def count(self, key: str, last_s: int, end: int | None = None) -> int:
        """How many of ``key`` in the last ``last_s`` seconds up to ``end`` (default: newest)."""
        end = self.newest if end is None else end
        if end is None:
            return 0
        return sum(c.get(key, 0) for s, c in self._buckets.items() if end - last_s < s <= end)

    def __len__(self) -> int:
        """How many seconds are held."""
        return len(self._buckets)


class Recent(Generic[K, V]):
    """A mapping that keeps the ``limit`` most recently put keys (the oldest goes first).

    Example:
        >>> r: Recent[str, int] = Recent(2)
        >>> r.put("a", 1); r.put("b", 2); r.put("a", 3); r.put("c", 4)
        >>> list(r.items())
        [('a', 3), ('c', 4)]
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self._data: OrderedDict[K, V] = OrderedDict()

    def put(self, key: K, value: V) -> None:
        """Sets ``key`` (now the most recent), forgetting the oldest key past the limit."""
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.limit:
            self._data.popitem(last=False)

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> Iterator[tuple[K, V]]:
        """Oldest first."""
        return iter(list(self._data.items()))

    def newest(self, n: int | None = None) -> list[V]:
        """The values, newest first (the ``n`` newest)."""
        values = list(reversed(self._data.values()))
        return values if n is None else values[:n]
