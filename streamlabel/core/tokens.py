"""Token batches: a poll's texts tokenized and cut into the chunks a model runs.

Rows are sorted by token count (longest first) and cut into chunks of the
model's batch size. A chunk whose rows are about as long as each other runs
*padded* (:class:`Padded`: each row padded to the chunk's longest, with an
attention mask). A chunk of uneven rows, what a short poll of a quiet stream
usually is, can run *packed* instead (:class:`Packed`): its rows laid end to
end in one sequence, each attending to itself only, so no position is spent on
padding. On a CPU that is most of a short batch's cost: 8 StackOverflow titles
padded to their longest carry 37% padding. :meth:`TokenBatch.restore` puts the
model's output rows back in the order of the texts.

The same batches travel from the stream workers (which tokenize on their own
cores) to a shared embedder actor: only integer arrays cross.

Example:
    >>> b = bucket([[101, 7, 102], [101, 102], [101, 5, 6, 7, 102]], batch_size=2, pad_id=0)
    >>> [c.ids.shape for c in b.chunks]
    [(2, 5), (1, 2)]
    >>> b.order.tolist()
    [2, 0, 1]
    >>> b.restore(np.array([[2.0], [0.0], [1.0]])).ravel().tolist()
    [0.0, 1.0, 2.0]
    >>> round(b.padding_ratio, 2)
    1.2
    >>> p = bucket([[1, 2, 3, 4, 5, 6], [1, 2], [1, 2, 3]], batch_size=4, pad_id=0, pack_above=1.2)
    >>> (type(p.chunks[0]).__name__, p.chunks[0].lengths.tolist(), p.padding_ratio)
    ('Packed', [6, 3, 2], 1.0)
    >>> p.chunks[0].positions().tolist()
    [0, 1, 2, 3, 4, 5, 0, 1, 2, 0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Packed", "Padded", "TokenBatch", "bucket"]


@dataclass(frozen=True)
class Padded:
    """Rows padded to the chunk's longest: int64 ``(rows, width)`` ids and attention mask."""

    ids: np.ndarray
    mask: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def tokens(self) -> int:
        return int(self.mask.sum())

    @property
    def positions_computed(self) -> int:
        return int(self.ids.size)


@dataclass(frozen=True)
class Packed:
    """Rows laid end to end in one sequence: int64 ``ids`` of all rows' tokens and
    each row's ``lengths`` (rows in the chunk's order)."""

    ids: np.ndarray
    lengths: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def tokens(self) -> int:
        return int(self.ids.size)

    @property
    def positions_computed(self) -> int:
        return int(self.ids.size)

    def positions(self) -> np.ndarray:
        """Each token's position within its own row (a row's first token is 0)."""
        starts = np.repeat(np.cumsum(self.lengths) - self.lengths, self.lengths)
        return np.arange(self.ids.size, dtype=np.int64) - starts

    def segments(self) -> np.ndarray:
        """Each token's row within the chunk."""
        return np.repeat(np.arange(len(self.lengths), dtype=np.int64), self.lengths)


@dataclass(frozen=True)
class TokenBatch:
    """Token ids of a batch of texts, in model-sized chunks.

    Attributes:
        chunks: padded or packed chunks, longest rows first.
        order: ``order[j]`` is the text that row ``j`` of the concatenated chunks holds.
    """

    chunks: list[Padded | Packed]
    order: np.ndarray

    def __len__(self) -> int:
        return len(self.order)

    @property
    def tokens(self) -> int:
        """Real tokens (what the texts need)."""
        return sum(c.tokens for c in self.chunks)

    @property
    def padding_ratio(self) -> float:
        """Positions the model computes per real token (1.0 = no padding)."""
        return sum(c.positions_computed for c in self.chunks) / max(1, self.tokens)

    def restore(self, rows: np.ndarray) -> np.ndarray:
        """The model's output rows (in chunk order) back in the order of the texts."""
        if len(rows) != len(self.order):
            raise ValueError(f"expected {len(self.order)} rows, got {len(rows)}")
        out = np.empty_like(rows)
        out[self.order] = rows
        return out


def bucket(
    ids: Sequence[Sequence[int]],
    *,
    batch_size: int,
    pad_id: int,
    pack_above: float | None = None,
    pack_tokens: int = 256,
) -> TokenBatch:
    """Sorts token id lists by length (longest first) and cuts them into chunks of
    ``batch_size`` rows, each padded to its own longest row.

    Args:
        ids: token ids per text.
        batch_size: rows per chunk.
        pad_id: the padding token.
        pack_above: a chunk whose padding would exceed this many computed positions
            per real token is packed instead, in pieces of at most ``pack_tokens``
            tokens (attention within a packed piece grows with its square). ``None``
            never packs.
        pack_tokens: the most tokens in one packed piece (a longer row gets its own).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if pack_tokens < 1:
        raise ValueError("pack_tokens must be at least 1")
    lengths = np.fromiter((len(x) for x in ids), np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    chunks: list[Padded | Packed] = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(1, int(lengths[rows].max()))
        real = max(1, int(lengths[rows].sum()))
        if pack_above is not None and len(rows) > 1 and width * len(rows) / real > pack_above:
            chunks.extend(_packed(ids, rows, lengths, pack_tokens))
        else:
            chunks.append(_padded(ids, rows, lengths, width, pad_id))
    return TokenBatch(chunks, order)


def _padded(
    ids: Sequence[Sequence[int]], rows: np.ndarray, lengths: np.ndarray, width: int, pad_id: int
) -> Padded:
    input_ids = np.full((len(rows), width), pad_id, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for r, i in enumerate(rows):
        n = int(lengths[i])
        input_ids[r, :n] = ids[i]
        mask[r, :n] = 1
    return Padded(input_ids, mask)


def _packed(
    ids: Sequence[Sequence[int]], rows: np.ndarray, lengths: np.ndarray, pack_tokens: int
) -> list[Packed]:
    pieces: list[list[int]] = [[]]
    used = 0
    for i in rows:
        n = int(lengths[i])
        if pieces[-1] and used + n > pack_tokens:
            pieces.append([])
            used = 0
        pieces[-1].append(int(i))
        used += n
    out = []
    for piece in pieces:
        n = int(lengths[piece].sum())
        flat = np.fromiter((t for i in piece for t in ids[i]), np.int64, count=n)
        out.append(Packed(flat, lengths[piece].copy()))
    return out
