"""The FAISS index under the store: exact by default, IVF over large prototype sets."""

from __future__ import annotations

import numpy as np
import pytest

from streamlabel.core.index import VectorIndex

DIM = 32


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def prototypes() -> np.ndarray:
    return unit(np.random.default_rng(0), 6000)


def near(rng: np.random.Generator, rows: np.ndarray, noise: float = 0.1) -> np.ndarray:
    q = rows + noise * rng.standard_normal(rows.shape).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_up_to_the_threshold_the_index_is_exact(prototypes: np.ndarray) -> None:
    index = VectorIndex.build(prototypes, approximate_above=len(prototypes))
    assert not index.approximate
    queries = unit(np.random.default_rng(1), 50)
    sims, ids = index.search(queries, 3)
    brute = queries @ prototypes.T
    np.testing.assert_array_equal(ids, np.argsort(-brute, axis=1)[:, :3])
    np.testing.assert_allclose(sims, np.sort(brute, axis=1)[:, ::-1][:, :3], atol=1e-5)


def test_above_it_an_ivf_index_finds_the_nearest_prototype(prototypes: np.ndarray) -> None:
    index = VectorIndex.build(prototypes, approximate_above=1000, nprobe=16)
    assert index.approximate
    assert index.size == len(prototypes)
    rng = np.random.default_rng(2)
    targets = rng.integers(0, len(prototypes), 500)
    _, ids = index.search(near(rng, prototypes[targets]), 1)
    assert (ids[:, 0] == targets).mean() >= 0.98


def test_every_replica_builds_the_same_approximate_index(prototypes: np.ndarray) -> None:
    a = VectorIndex.build(prototypes, approximate_above=1000, nprobe=4)
    b = VectorIndex.build(prototypes.copy(), approximate_above=1000, nprobe=4)
    queries = unit(np.random.default_rng(3), 200)
    sa, ia = a.search(queries, 5)
    sb, ib = b.search(queries, 5)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(sa, sb)


def test_none_means_always_exact_and_an_empty_index_finds_nothing() -> None:
    rng = np.random.default_rng(4)
    assert not VectorIndex.build(unit(rng, 3000), approximate_above=None).approximate
    empty = VectorIndex.build(np.zeros((0, DIM), np.float32), approximate_above=0)
    assert (empty.size, empty.approximate) == (0, False)
    _, ids = empty.search(unit(rng, 2), 2)
    assert (ids == -1).all()


def test_a_large_store_classifies_through_the_approximate_index_like_the_exact_one() -> None:
    from dataclasses import replace

    from streamlabel.core.store import PrototypeStore, StoreConfig

    rng = np.random.default_rng(5)
    centres = unit(rng, 400)
    stores = {}
    for name, above in (("exact", None), ("ivf", 100)):
        store = PrototypeStore(
            DIM, replace(StoreConfig(), approximate_above=above), clock=lambda: 0.0
        )
        for k, c in enumerate(centres):
            members = near(np.random.default_rng(k), np.tile(c, (4, 1)), 0.05)
            store.add_class(f"c{k}", f"class {k}", members, status="known", origin="feedback")
        stores[name] = store
    queries = near(rng, centres[rng.integers(0, len(centres), 300)], 0.1)
    exact, ivf = (stores[n].classify(queries) for n in ("exact", "ivf"))
    assert stores["ivf"]._compile().index.approximate
    assert not stores["exact"]._compile().index.approximate
    assert (exact.best == ivf.best).mean() >= 0.98
    assert (exact.accepted == ivf.accepted).mean() >= 0.98


@pytest.mark.parametrize("approximate_above", [None, 0], ids=["exact", "ivf"])
def test_rows_rewritten_in_place_are_found_as_a_fresh_index_finds_them(
    prototypes: np.ndarray, approximate_above: int | None
) -> None:
    """``set_rows``, ``truncate`` and ``add`` leave the index holding exactly the new rows:
    it finds what an index built on them finds (IVF: scanning every list)."""
    rng = np.random.default_rng(3)
    rows = prototypes[:3000].copy()
    index = VectorIndex.build(rows, approximate_above=approximate_above, nprobe=10_000)
    new = unit(rng, 7)
    index.set_rows(100, new)
    rows[100:107] = new
    index.truncate(2990)
    index.add(new[:2])
    rows = np.concatenate([rows[:2990], new[:2]])
    assert index.size == len(rows) == 2992
    queries = near(rng, rows[[0, 101, 105, 2989, 2990, 2991]], noise=0.01)
    fresh = VectorIndex.build(rows)
    _, ids = index.search(queries, 1)
    _, expected = fresh.search(queries, 1)
    np.testing.assert_array_equal(
        np.einsum("nd,nd->n", queries, rows[ids[:, 0]]),
        np.einsum("nd,nd->n", queries, rows[expected[:, 0]]),
    )  # the same rows, or rows equal to them
    with pytest.raises(ValueError, match="cannot rewrite"):
        index.set_rows(2990, new[:5])
