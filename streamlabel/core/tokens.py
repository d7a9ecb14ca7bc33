"""Token batches: texts tokenized on a CPU, for a model that runs elsewhere (a GPU actor).

A stream worker tokenizes its batch (the tokenizer is cheap and runs on the
worker's cores) and sends the embedder actor only integer arrays. The batch is
*length-bucketed*: rows are sorted by token count and cut into chunks of the
model's batch size, each padded only to its own longest row, so a chunk of
short texts costs short sequences on the device. :meth:`TokenBatch.restore`
puts the model's output rows back in the order of the texts.

Example:
    >>> b = bucket([[101, 7, 102], [101, 102], [101, 5, 6, 7, 102]], batch_size=2, pad_id=0)
    >>> [ids.shape for ids, _ in b.chunks]
    [(2, 5), (1, 2)]
    >>> b.order.tolist()
    [2, 0, 1]
    >>> b.restore(np.array([[2.0], [0.0], [1.0]])).ravel().tolist()
    [0.0, 1.0, 2.0]
    >>> round(b.padding_ratio, 2)
    1.2
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["TokenBatch", "bucket"]


@dataclass(frozen=True)
class TokenBatch:
    """Length-bucketed token ids of a batch of texts.

    Attributes:
        chunks: ``(input_ids, attention_mask)`` per chunk, int64 ``(rows, length)``,
            longest rows first.
        order: ``order[j]`` is the text that row ``j`` of the concatenated chunks holds.
    """

    chunks: list[tuple[np.ndarray, np.ndarray]]
    order: np.ndarray

    def __len__(self) -> int:
        return len(self.order)

    @property
    def tokens(self) -> int:
        """Real tokens (what the texts need)."""
        return int(sum(int(mask.sum()) for _, mask in self.chunks))

    @property
    def padding_ratio(self) -> float:
        """Padded positions the model computes per real token (1.0 = no padding)."""
        padded = sum(ids.size for ids, _ in self.chunks)
        return padded / max(1, self.tokens)

    def restore(self, rows: np.ndarray) -> np.ndarray:
        """The model's output rows (in chunk order) back in the order of the texts."""
        if len(rows) != len(self.order):
            raise ValueError(f"expected {len(self.order)} rows, got {len(rows)}")
        out = np.empty_like(rows)
        out[self.order] = rows
        return out


def bucket(ids: Sequence[Sequence[int]], *, batch_size: int, pad_id: int) -> TokenBatch:
    """Sorts token id lists by length (longest first) and pads each chunk of
    ``batch_size`` rows to its own longest row."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    lengths = np.fromiter((len(x) for x in ids), np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    chunks: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(1, int(lengths[rows].max()))
        input_ids = np.full((len(rows), width), pad_id, np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for r, i in enumerate(rows):
            n = int(lengths[i])
            input_ids[r, :n] = ids[i]
            mask[r, :n] = 1
        chunks.append((input_ids, mask))
    return TokenBatch(chunks, order)
