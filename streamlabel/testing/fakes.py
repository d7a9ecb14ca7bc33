"""A settable clock, a fast deterministic embedder, an in-memory source and sink."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from streamlabel.core.embedder import l2_normalize
from streamlabel.errors import EmbeddingError
from streamlabel.pipeline.inputs import RawRecord
from streamlabel.schemas import Item, Record, SourceRef, encode

__all__ = ["HashEmbedder", "ManualClock", "MemorySink", "MemorySource"]

_WORD = re.compile(r"[a-z0-9#+]+")


class ManualClock:
    """A clock that only moves when told to.

    Example:
        >>> clock = ManualClock(100.0)
        >>> clock.advance(5)
        >>> clock()
        105.0
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Moves time forward."""
        self.now += seconds


class HashEmbedder:
    """A deterministic bag-of-words embedder: each word hashes to a fixed random direction.

    Texts sharing words get similar vectors, so it behaves like a (weak) text
    model, thousands of times faster than a transformer. Texts containing
    ``poison_token`` raise :class:`EmbeddingError`, to test the dead-letter path.

    Args:
        dim: output dimension.
        poison_token: a word that makes the embedder fail (``None`` = never fails).
    """

    def __init__(self, dim: int = 64, *, poison_token: str | None = "__poison__") -> None:
        self._dim = dim
        self._poison = poison_token
        self._cache: dict[str, np.ndarray] = {}
        self.calls = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_id(self) -> str:
        return f"hash-bow-{self._dim}"

    def _word(self, word: str) -> np.ndarray:
        vec = self._cache.get(word)
        if vec is None:
            seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            vec = np.random.default_rng(seed).standard_normal(self._dim).astype(np.float32)
            self._cache[word] = vec
        return vec

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self._dim), np.float32)
        for i, text in enumerate(texts):
            if self._poison is not None and self._poison in text:
                raise EmbeddingError(f"poison token in text {i}")
            for word in _WORD.findall(text.lower()):
                out[i] += self._word(word)
        return l2_normalize(out)


@dataclass
class MemorySource:
    """An in-memory topic partition that hands out batches of raw records, never blocking.

    Example:
        >>> src = MemorySource.of_items([Item(id="a", text="x"), Item(id="b", text="y")])
        >>> [r.source.offset for r in src.next_batch(10)]
        [0, 1]
        >>> src.next_batch(10)
        []
    """

    records: list[RawRecord] = field(default_factory=list)
    position: int = 0

    @classmethod
    def of_items(
        cls, items: Iterable[Item], topic: str = "items", partition: int = 0
    ) -> MemorySource:
        """A source holding encoded items at offsets 0, 1, 2..."""
        src = cls()
        for item in items:
            src.append(encode(item), topic, partition, key=item.id.encode())
        return src

    def append(
        self,
        value: bytes | None,
        topic: str = "items",
        partition: int = 0,
        key: bytes | None = None,
    ) -> None:
        """Adds a raw message at the next offset."""
        offset = len(self.records)
        self.records.append(
            RawRecord(value, SourceRef(topic=topic, partition=partition, offset=offset), key)
        )

    def next_batch(self, max_records: int) -> list[RawRecord]:
        """Up to ``max_records`` records; an empty list when drained."""
        batch = self.records[self.position : self.position + max_records]
        self.position += len(batch)
        return batch


@dataclass
class MemorySink:
    """Collects what a pipeline emits, per topic."""

    topics: dict[str, list[Record]] = field(default_factory=dict)

    def write(self, topic: str, records: Iterable[Record]) -> None:
        """Appends records to a topic."""
        self.topics.setdefault(topic, []).extend(records)

    def get(self, topic: str) -> list[Record]:
        """Everything written to a topic so far."""
        return list(self.topics.get(topic, []))
