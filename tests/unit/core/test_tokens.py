"""Token batches: length-bucketed, padded or packed chunks (what a worker sends an embedder)."""

from __future__ import annotations

import numpy as np
import pytest

from streamlabel.core.tokens import Packed, Padded, bucket


def test_rows_are_sorted_longest_first_and_each_chunk_is_padded_to_its_own_longest() -> None:
    ids = [[1] * n for n in (3, 9, 1, 5, 7, 2)]
    b = bucket(ids, batch_size=2, pad_id=0)
    assert all(isinstance(c, Padded) for c in b.chunks)  # packing is off by default
    assert [c.ids.shape for c in b.chunks] == [(2, 9), (2, 5), (2, 2)]
    assert b.order.tolist() == [1, 4, 3, 0, 5, 2]
    for c in b.chunks:
        assert c.ids.dtype == c.mask.dtype == np.int64
        assert (c.ids[c.mask == 0] == 0).all()  # padding carries the pad id
    assert b.tokens == sum(len(x) for x in ids)
    # 32 positions for 27 tokens; one chunk of all six padded to 9 would be 54
    assert b.padding_ratio == pytest.approx(32 / 27)


def test_restore_puts_rows_back_in_the_order_of_the_texts() -> None:
    ids = [[7] * n for n in (4, 1, 6, 6, 2)]
    b = bucket(ids, batch_size=3, pad_id=0)
    rows = np.concatenate([c.mask.sum(axis=1, keepdims=True) for c in b.chunks]).astype(float)
    assert b.restore(rows).ravel().tolist() == [4, 1, 6, 6, 2]
    with pytest.raises(ValueError, match="expected 5 rows"):
        b.restore(rows[:4])


def test_ties_keep_the_texts_order_and_the_token_ids_survive() -> None:
    ids = [[5, 6], [8, 9], [3]]
    b = bucket(ids, batch_size=8, pad_id=-1)
    (c,) = b.chunks
    assert isinstance(c, Padded)
    assert b.order.tolist() == [0, 1, 2]
    assert c.ids.tolist() == [[5, 6], [8, 9], [3, -1]]
    assert c.mask.tolist() == [[1, 1], [1, 1], [1, 0]]


def test_an_empty_batch_has_no_chunks_and_a_bad_batch_size_is_refused() -> None:
    b = bucket([], batch_size=4, pad_id=0)
    assert (len(b), b.chunks) == (0, [])
    with pytest.raises(ValueError, match="batch_size"):
        bucket([[1]], batch_size=0, pad_id=0)
    with pytest.raises(ValueError, match="pack_tokens"):
        bucket([[1]], batch_size=4, pad_id=0, pack_tokens=0)


# ------------------------------------------------------------------------- packing
def test_an_uneven_chunk_is_packed_end_to_end_without_padding() -> None:
    ids = [[1, 2], [3, 4, 5, 6, 7, 8], [9, 10, 11]]  # padded to 6: 18 positions for 11 tokens
    b = bucket(ids, batch_size=4, pad_id=0, pack_above=1.25)
    (c,) = b.chunks
    assert isinstance(c, Packed)
    assert b.order.tolist() == [1, 2, 0]  # longest first, as for padded chunks
    assert c.ids.tolist() == [3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2]
    assert c.lengths.tolist() == [6, 3, 2]
    assert c.positions().tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 0, 1]
    assert c.segments().tolist() == [0] * 6 + [1] * 3 + [2] * 2
    assert (b.tokens, b.padding_ratio) == (11, 1.0)
    # the model's rows come back in chunk order and are restored to the texts' order
    rows = c.lengths[:, None].astype(float)
    assert b.restore(rows).ravel().tolist() == [2, 6, 3]


def test_an_even_chunk_stays_padded_and_one_row_is_never_packed() -> None:
    even = bucket([[1, 2, 3], [4, 5, 6], [7, 8]], batch_size=4, pad_id=0, pack_above=1.25)
    assert [type(c) for c in even.chunks] == [Padded]  # 9 positions for 8 tokens: 1.125
    single = bucket([[1, 2, 3]], batch_size=4, pad_id=0, pack_above=0.0)
    assert [type(c) for c in single.chunks] == [Padded]


def test_packed_pieces_hold_at_most_pack_tokens_and_a_long_row_gets_its_own() -> None:
    ids = [[1] * 10, [2] * 3, [3] * 3, [4] * 2, [5] * 1]
    b = bucket(ids, batch_size=8, pad_id=0, pack_above=1.0, pack_tokens=6)
    assert all(isinstance(c, Packed) for c in b.chunks)
    assert [c.lengths.tolist() for c in b.chunks] == [[10], [3, 3], [2, 1]]
    assert sum(c.rows for c in b.chunks) == len(ids)
    rows = np.concatenate([c.lengths for c in b.chunks])[:, None]
    assert b.restore(rows).ravel().tolist() == [10, 3, 3, 2, 1]


def test_chunks_are_decided_one_by_one() -> None:
    """A long poll: the even chunks of sorted rows stay padded, an uneven one is packed."""
    ids = [[1] * n for n in (8, 8, 8, 8, 7, 2)]
    b = bucket(ids, batch_size=4, pad_id=0, pack_above=1.25)
    assert [type(c) for c in b.chunks] == [Padded, Packed]
    assert b.chunks[1].lengths.tolist() == [7, 2]
