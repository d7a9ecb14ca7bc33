"""Length-bucketed token batches: what a worker sends a shared (GPU) embedder actor."""

from __future__ import annotations

import numpy as np
import pytest

from streamlabel.core.tokens import bucket


def test_rows_are_sorted_longest_first_and_each_chunk_is_padded_to_its_own_longest() -> None:
    ids = [[1] * n for n in (3, 9, 1, 5, 7, 2)]
    b = bucket(ids, batch_size=2, pad_id=0)
    assert [ids_.shape for ids_, _ in b.chunks] == [(2, 9), (2, 5), (2, 2)]
    assert b.order.tolist() == [1, 4, 3, 0, 5, 2]
    for chunk_ids, mask in b.chunks:
        assert chunk_ids.dtype == mask.dtype == np.int64
        assert (chunk_ids[mask == 0] == 0).all()  # padding carries the pad id
    assert b.tokens == sum(len(x) for x in ids)
    # 32 positions for 27 tokens; one chunk of all six padded to 9 would be 54
    assert b.padding_ratio == pytest.approx(32 / 27)


def test_restore_puts_rows_back_in_the_order_of_the_texts() -> None:
    ids = [[7] * n for n in (4, 1, 6, 6, 2)]
    b = bucket(ids, batch_size=3, pad_id=0)
    rows = np.concatenate([mask.sum(axis=1, keepdims=True) for _, mask in b.chunks]).astype(float)
    assert b.restore(rows).ravel().tolist() == [4, 1, 6, 6, 2]
    with pytest.raises(ValueError, match="expected 5 rows"):
        b.restore(rows[:4])


def test_ties_keep_the_texts_order_and_the_token_ids_survive() -> None:
    ids = [[5, 6], [8, 9], [3]]
    b = bucket(ids, batch_size=8, pad_id=-1)
    ((chunk_ids, mask),) = b.chunks
    assert b.order.tolist() == [0, 1, 2]
    assert chunk_ids.tolist() == [[5, 6], [8, 9], [3, -1]]
    assert mask.tolist() == [[1, 1], [1, 1], [1, 0]]


def test_an_empty_batch_has_no_chunks_and_a_bad_batch_size_is_refused() -> None:
    b = bucket([], batch_size=4, pad_id=0)
    assert (len(b), b.chunks) == (0, [])
    with pytest.raises(ValueError, match="batch_size"):
        bucket([[1]], batch_size=0, pad_id=0)
