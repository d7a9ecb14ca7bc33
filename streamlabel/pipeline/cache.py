"""The item cache: recent items with their vector, text, label and label revision.

Feedback names an item by id and gets its vector from here; a redelivered item
continues its revision count from here; relabelling after a discovery revises
the labels of the items kept here. Bounded (least recently seen first out).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["CachedItem", "ItemCache"]


@dataclass
class CachedItem:
    """One remembered item (``label`` and ``revision`` change as it is revised)."""

    vector: np.ndarray
    text: str | None
    label: str
    revision: int


class ItemCache:
    """Least-recently-seen cache of items by id.

    Args:
        capacity: items kept; 0 keeps none.

    Example:
        >>> cache = ItemCache(2)
        >>> for i in range(3):
        ...     cache.remember(str(i), np.zeros(2, np.float32), None, "a", 0)
        >>> list(cache.ids())
        ['1', '2']
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, CachedItem] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def get(self, item_id: str) -> CachedItem | None:
        """The cached item, or None."""
        return self._items.get(item_id)

    def ids(self) -> Iterator[str]:
        """Ids from the least to the most recently seen."""
        return iter(self._items)

    def items(self) -> Iterator[tuple[str, CachedItem]]:
        """``(id, item)`` pairs from the least to the most recently seen."""
        return iter(self._items.items())

    def revised_past(self, item_id: str, revision: int) -> bool:
        """True when the cache holds the item at a later revision than ``revision``."""
        cached = self._items.get(item_id)
        return cached is not None and cached.revision > revision

    def remember(
        self, item_id: str, vector: np.ndarray, text: str | None, label: str, revision: int
    ) -> None:
        """Stores (or refreshes) an item as the most recently seen."""
        if self.capacity == 0:
            return
        self._items[item_id] = CachedItem(vector, text, label, revision)
        self._items.move_to_end(item_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
