"""The unknown buffer: the items discovery clusters, oldest evicted first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class UnknownBuffer:
    """A bounded FIFO of unknown items (oldest evicted first), keyed by item id.

    An item that settled into an existing class (see :class:`Discoverer`) stays
    buffered with that label until a new class takes it or it is evicted, so
    later runs still cluster it with the items of a class not yet found.

    Example:
        >>> buf = UnknownBuffer(capacity=2, dim=2)
        >>> buf.add(["a", "b", "c"], np.eye(3, 2, dtype=np.float32), ["x", "y", "z"])
        >>> buf.ids
        ['b', 'c']
    """

    def __init__(self, capacity: int, dim: int) -> None:
        self.capacity = capacity
        self.dim = dim
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._revisions: list[int] = []
        self._labels: list[str] = []
        self._vectors = np.zeros((0, dim), np.float32)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        """Buffered item ids, oldest first."""
        return list(self._ids)

    @property
    def vectors(self) -> np.ndarray:
        """Raw embeddings ``(n, dim)``, aligned with :attr:`ids` (read-only view)."""
        v = self._vectors.view()
        v.flags.writeable = False
        return v

    @property
    def texts(self) -> list[str]:
        """Texts aligned with :attr:`ids` ("" when an item had none)."""
        return list(self._texts)

    def get(self, item_id: str) -> tuple[np.ndarray, str, int] | None:
        """The vector, text and revision of a buffered item (None when absent)."""
        try:
            i = self._ids.index(item_id)
        except ValueError:
            return None
        return self._vectors[i].copy(), self._texts[i], self._revisions[i]

    def revision(self, i: int) -> int:
        """Label revision of the item at position ``i``."""
        return self._revisions[i]

    @property
    def labels(self) -> list[str]:
        """The class each item settled into, aligned with :attr:`ids` ("" while unknown)."""
        return list(self._labels)

    def settle(self, labels: dict[str, tuple[str, int]]) -> None:
        """Records that items settled into a class: ``item id -> (class id, revision)``."""
        for i, item_id in enumerate(self._ids):
            if item_id in labels:
                self._labels[i], self._revisions[i] = labels[item_id]

    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        texts: Sequence[str | None],
        revisions: Sequence[int] | None = None,
    ) -> None:
        """Appends items (a buffered id is replaced), evicting the oldest beyond capacity."""
        if not len(ids):
            return
        revs = list(revisions) if revisions is not None else [0] * len(ids)
        last = {item_id: i for i, item_id in enumerate(ids)}  # a repeated id: keep the last
        rows = sorted(last.values())
        if set(last) & set(self._ids):
            self.remove(set(last))
        self._ids.extend(ids[i] for i in rows)
        self._texts.extend(texts[i] or "" for i in rows)
        self._revisions.extend(revs[i] for i in rows)
        self._labels.extend("" for _ in rows)
        self._vectors = np.concatenate([self._vectors, np.asarray(vectors, np.float32)[rows]])
        self._evict()

    def _evict(self) -> None:
        extra = len(self._ids) - self.capacity
        if extra > 0:
            del self._ids[:extra], self._texts[:extra], self._revisions[:extra]
            del self._labels[:extra]
            self._vectors = self._vectors[extra:]

    def copy(self) -> UnknownBuffer:
        """An independent copy (a background discovery run works on one)."""
        twin = UnknownBuffer(self.capacity, self.dim)
        twin._ids, twin._texts = list(self._ids), list(self._texts)
        twin._revisions = list(self._revisions)
        twin._labels = list(self._labels)
        twin._vectors = self._vectors.copy()
        return twin

    def state(self) -> dict[str, Any]:
        """Plain data for a snapshot (vectors as float32 bytes)."""
        return {
            "ids": list(self._ids),
            "texts": list(self._texts),
            "revisions": list(self._revisions),
            "labels": list(self._labels),
            "vectors": np.ascontiguousarray(self._vectors, np.float32).tobytes(),
        }

    def load(self, state: dict[str, Any]) -> None:
        """Replaces the content with a :meth:`state` (capacity and dim unchanged)."""
        vectors = np.frombuffer(state["vectors"], np.float32).reshape(-1, self.dim).copy()
        ids = list(state["ids"])
        if not len(ids) == len(state["texts"]) == len(state["revisions"]) == len(vectors):
            raise ValueError("buffer state has misaligned fields")
        self._ids, self._texts = ids, list(state["texts"])
        self._revisions = [int(r) for r in state["revisions"]]
        labels = [str(x) for x in state.get("labels", [""] * len(ids))]  # older snapshots
        if len(labels) != len(ids):
            raise ValueError("buffer state has misaligned fields")
        self._labels = labels
        self._vectors = vectors
        self._evict()

    def remove(self, ids: set[str] | Sequence[str]) -> None:
        """Drops the given ids (absent ones are ignored)."""
        gone = set(ids)
        keep = [i for i, x in enumerate(self._ids) if x not in gone]
        self._ids = [self._ids[i] for i in keep]
        self._texts = [self._texts[i] for i in keep]
        self._revisions = [self._revisions[i] for i in keep]
        self._labels = [self._labels[i] for i in keep]
        self._vectors = self._vectors[keep]
