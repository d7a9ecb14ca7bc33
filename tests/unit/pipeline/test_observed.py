"""``Observed.sample``: the share of labelled items a stream worker sends to the learner."""

from __future__ import annotations

import numpy as np
import pytest

from streamlabel.pipeline.output import Observed
from streamlabel.schemas import UNKNOWN

DIM = 8


def observed(n: int) -> Observed:
    """``n`` rows whose every field encodes the row number, so alignment is checkable."""
    vectors = np.zeros((n, DIM), np.float32)
    vectors[:, 0] = np.arange(n)
    return Observed(
        item_ids=[f"i{k}" for k in range(n)],
        vectors=vectors,
        texts=[None if k % 5 == 0 else f"text {k}" for k in range(n)],
        labels=[UNKNOWN if k % 3 == 0 else f"class-{k % 4}" for k in range(n)],
        revisions=[k % 7 for k in range(n)],
        scores=np.arange(n, dtype=np.float32) / max(n, 1),
        is_unknown=np.array([k % 3 == 0 for k in range(n)]),
    )


def rows(o: Observed) -> list[int]:
    return [int(i[1:]) for i in o.item_ids]


@pytest.mark.parametrize("fraction", [1.0, 1.5])
def test_a_fraction_of_one_or_more_keeps_every_row(fraction: float) -> None:
    full = observed(20)
    assert full.sample(fraction, np.random.default_rng(0)) is full


def test_a_fraction_of_zero_keeps_no_row_but_keeps_the_shapes() -> None:
    none = observed(20).sample(0.0, np.random.default_rng(0))
    assert len(none) == 0
    assert none.vectors.shape == (0, DIM)
    assert none.scores.shape == (0,)
    assert none.is_unknown.shape == (0,)
    assert (none.texts, none.labels, none.revisions) == ([], [], [])


def test_sampling_an_empty_observed_gives_an_empty_observed() -> None:
    empty = observed(0)
    assert len(empty.sample(0.5, np.random.default_rng(0))) == 0


def test_a_sample_keeps_about_the_fraction_of_rows_in_order() -> None:
    kept = rows(observed(2000).sample(0.25, np.random.default_rng(1)))
    assert 400 <= len(kept) <= 600
    assert kept == sorted(set(kept))


def test_every_field_of_a_sampled_row_comes_from_the_same_original_row() -> None:
    full = observed(300)
    part = full.sample(0.3, np.random.default_rng(2))
    kept = rows(part)
    assert kept
    assert part.vectors[:, 0].tolist() == [float(k) for k in kept]
    assert part.texts == [full.texts[k] for k in kept]
    assert part.labels == [full.labels[k] for k in kept]
    assert part.revisions == [full.revisions[k] for k in kept]
    np.testing.assert_array_equal(part.scores, full.scores[kept])
    np.testing.assert_array_equal(part.is_unknown, full.is_unknown[kept])
    assert part.is_unknown.tolist() == [label == UNKNOWN for label in part.labels]


def test_the_same_seed_samples_the_same_rows_and_another_seed_others() -> None:
    full = observed(200)
    a = rows(full.sample(0.5, np.random.default_rng(7)))
    b = rows(full.sample(0.5, np.random.default_rng(7)))
    c = rows(full.sample(0.5, np.random.default_rng(8)))
    assert a == b
    assert a != c


def test_sampling_leaves_the_original_unchanged() -> None:
    full = observed(50)
    ids, vectors = list(full.item_ids), full.vectors.copy()
    part = full.sample(0.5, np.random.default_rng(3))
    part.vectors[:] = -1.0
    assert full.item_ids == ids
    np.testing.assert_array_equal(full.vectors, vectors)
