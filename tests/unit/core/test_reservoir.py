"""Reservoir sampling of class exemplars: bounded, aligned, uniform, reproducible."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from streamlabel.core.reservoir import reservoir_add


def _offer_all(
    n: int, capacity: int, rng: np.random.Generator, batches: list[int] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Offers rows ``[0], [1], ... [n-1]`` (texts "0".."n-1") in the given batch sizes."""
    sample = np.zeros((0, 1), np.float32)
    texts: list[str] = []
    seen = 0
    sizes = batches or [n]
    assert sum(sizes) == n
    for size in sizes:
        rows = np.arange(seen, seen + size, dtype=np.float32)[:, None]
        sample, texts = reservoir_add(
            sample, texts, seen, rows, [str(i) for i in range(seen, seen + size)], capacity, rng
        )
        seen += size
    return sample, texts


@pytest.mark.parametrize(("n", "capacity"), [(0, 5), (3, 5), (5, 5), (6, 5), (500, 7)])
def test_reservoir_never_exceeds_capacity(n: int, capacity: int) -> None:
    """The sample holds ``min(offered, capacity)`` distinct offered rows."""
    sample, texts = _offer_all(n, capacity, np.random.default_rng(0), [n] if n else [0])
    assert sample.shape == (min(n, capacity), 1)
    assert len(texts) == len(sample)
    kept = sample[:, 0].astype(int).tolist()
    assert len(set(kept)) == len(kept)
    assert all(0 <= k < n for k in kept)


def test_reservoir_keeps_everything_below_capacity_in_order() -> None:
    """Until it is full, the reservoir is just the offered rows in order."""
    sample, texts = _offer_all(4, 10, np.random.default_rng(0), [1, 2, 1])
    assert sample[:, 0].tolist() == [0, 1, 2, 3]
    assert texts == ["0", "1", "2", "3"]


def test_texts_stay_aligned_with_their_rows() -> None:
    """After replacements, each text still belongs to the row beside it."""
    sample, texts = _offer_all(300, 10, np.random.default_rng(1), [7, 93, 1, 199])
    assert [int(t) for t in texts] == sample[:, 0].astype(int).tolist()


def test_inputs_are_not_modified() -> None:
    """The current sample and its texts are copied, not mutated."""
    sample = np.arange(3, dtype=np.float32)[:, None]
    texts = ["a", "b", "c"]
    new = np.full((50, 1), 9.0, np.float32)
    out, _ = reservoir_add(sample, texts, 3, new, ["z"] * 50, 3, np.random.default_rng(0))
    assert sample[:, 0].tolist() == [0, 1, 2]
    assert texts == ["a", "b", "c"]
    assert out is not sample
    assert 9.0 in out[:, 0]


def test_same_seed_gives_the_same_sample() -> None:
    """The sample is a function of the rng's seed (no hidden global randomness)."""
    a, _ = _offer_all(200, 10, np.random.default_rng(5), [50, 150])
    b, _ = _offer_all(200, 10, np.random.default_rng(5), [50, 150])
    c, _ = _offer_all(200, 10, np.random.default_rng(6), [50, 150])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_empty_offer_to_an_empty_reservoir_keeps_the_dimension() -> None:
    """Nothing offered to nothing gives a ``(0, d)`` array."""
    out, texts = reservoir_add(
        np.zeros((0, 3)), [], 0, np.zeros((0, 3)), [], 4, np.random.default_rng(0)
    )
    assert out.shape == (0, 3)
    assert texts == []


def test_every_offered_item_is_kept_with_equal_probability() -> None:
    """Each of 1000 items ends in a 50-row reservoir with probability 50/1000.

    300 seeded trials, offered in uneven batches; per-item keep counts are tested
    against the uniform expectation (chi-square), and early and late items are
    kept equally often (the classic bug is favouring one end of the stream).
    """
    n, capacity, trials = 1000, 50, 300
    rng = np.random.default_rng(12345)
    counts = np.zeros(n)
    for _ in range(trials):
        sample, _ = _offer_all(n, capacity, rng, [1, 49, 10, 440, 500])
        counts[sample[:, 0].astype(int)] += 1
    assert counts.sum() == trials * capacity
    expected = trials * capacity / n  # 15 per item
    assert stats.chisquare(counts).pvalue > 0.001
    first, last = counts[: n // 2].mean(), counts[n // 2 :].mean()
    assert first == pytest.approx(expected, rel=0.05)
    assert last == pytest.approx(expected, rel=0.05)
    first_batch = counts[:capacity].mean()
    assert first_batch == pytest.approx(expected, rel=0.2)
