"""Contract suite for the clustering strategies used by novel-class discovery.

Like river's ``river/checks``: every strategy in :data:`STRATEGIES` must recover
well-separated blobs without being told how many there are, be deterministic,
number its clusters canonically, call too-small and structureless data noise,
find a lone cluster among scattered noise (the usual state of the unknown
buffer when one new class emerges) and survive pickling (it travels to the
learner's Ray actor).

Blobs: k orthonormal centres in d dims, points ``normalize(centre + noise)`` with
cosine ≈ 0.93 to their centre, shuffled.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from streamlabel.core.clustering import (
    AgglomerativeClustering,
    ClusteringStrategy,
    HDBSCANClustering,
)
from streamlabel.core.embedder import l2_normalize

STRATEGIES: list[ClusteringStrategy] = [HDBSCANClustering(), AgglomerativeClustering()]


def _ids(strategy: ClusteringStrategy) -> str:
    return type(strategy).__name__


@pytest.fixture(params=STRATEGIES, ids=_ids)
def strategy(request: pytest.FixtureRequest) -> ClusteringStrategy:
    return request.param  # type: ignore[no-any-return]


def blobs(
    k: int, dim: int, n_per: int = 50, spread: float = 0.4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, k)))
    truth = np.repeat(np.arange(k), n_per)
    points = l2_normalize(
        q.T[truth] + spread / np.sqrt(dim) * rng.standard_normal((len(truth), dim))
    )
    order = rng.permutation(len(truth))
    return points[order], truth[order]


def sphere(n: int, dim: int, seed: int = 1) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).standard_normal((n, dim)))


@pytest.mark.parametrize("dim", [32, 384])
@pytest.mark.parametrize("k", [3, 7])
def test_recovers_separated_blobs_without_being_told_k(
    strategy: ClusteringStrategy, k: int, dim: int
) -> None:
    """k blobs give k clusters that match the truth (ARI ≥ 0.9), with little noise."""
    points, truth = blobs(k, dim)
    labels = strategy.fit_predict(points)
    clustered = labels >= 0
    assert labels.shape == (len(points),)
    assert int(labels.max()) + 1 == k
    assert clustered.mean() >= 0.8
    assert adjusted_rand_score(truth[clustered], labels[clustered]) >= 0.9


@pytest.mark.parametrize("dim", [32, 384])
def test_finds_a_lone_cluster_among_scattered_noise(strategy: ClusteringStrategy, dim: int) -> None:
    """One dense blob of 60 among 40 scattered points is one cluster, the scatter is noise."""
    blob, _ = blobs(1, dim, n_per=60)
    points = np.concatenate([blob, sphere(40, dim)])
    labels = strategy.fit_predict(points)
    assert int(labels.max()) + 1 == 1
    assert (labels[:60] == 0).mean() >= 0.9
    assert (labels[60:] == -1).mean() >= 0.9


def test_is_deterministic(strategy: ClusteringStrategy) -> None:
    """The same input gives the same labels, from the same or a fresh instance."""
    points, _ = blobs(4, 64, seed=3)
    first = strategy.fit_predict(points)
    np.testing.assert_array_equal(first, strategy.fit_predict(points))
    np.testing.assert_array_equal(first, pickle.loads(pickle.dumps(strategy)).fit_predict(points))


def test_labels_are_canonical(strategy: ClusteringStrategy) -> None:
    """Clusters are numbered by first appearance: the first clustered point is 0, then 1..."""
    points, _ = blobs(5, 32, seed=4)
    labels = strategy.fit_predict(points)
    firsts = list(dict.fromkeys(int(x) for x in labels if x >= 0))
    assert firsts == list(range(5))
    assert labels.dtype.kind == "i"


def test_same_partition_in_another_order_gets_the_same_numbers(
    strategy: ClusteringStrategy,
) -> None:
    """Reordering whole blobs renumbers clusters by first appearance, not by blob identity."""
    points, truth = blobs(3, 32, seed=5)
    order = np.argsort(-truth, kind="stable")  # blob 2 first, then 1, then 0
    labels = strategy.fit_predict(points[order])
    assert labels[0] == 0
    assert adjusted_rand_score(truth[order], labels) >= 0.9


@pytest.mark.parametrize("size", ["none", "one", "min_cluster_size - 1"])
def test_fewer_points_than_min_cluster_size_are_all_noise(
    strategy: ClusteringStrategy, size: str
) -> None:
    """A group too small to be a cluster (below the strategy's own minimum), however tight,
    is noise."""
    minimum = int(strategy.min_cluster_size)  # type: ignore[attr-defined]
    n = {"none": 0, "one": 1, "min_cluster_size - 1": minimum - 1}[size]
    points, _ = blobs(1, 32, n_per=max(n, 1), spread=0.05)
    labels = strategy.fit_predict(points[:n])
    assert labels.shape == (n,)
    assert (labels == -1).all()


@pytest.mark.parametrize("dim", [32, 384])
def test_uniform_points_on_the_sphere_give_no_large_cluster(
    strategy: ClusteringStrategy, dim: int
) -> None:
    """Structureless data yields no cluster holding a large share of the points."""
    points = sphere(300, dim)
    labels = strategy.fit_predict(points)
    sizes = np.bincount(labels[labels >= 0], minlength=1)
    assert sizes.max() <= 0.1 * len(points)


def test_survives_pickle(strategy: ClusteringStrategy) -> None:
    """A strategy pickles to an equal strategy (it is shipped to the learner actor)."""
    clone = pickle.loads(pickle.dumps(strategy))
    assert clone == strategy
    assert type(clone) is type(strategy)


def test_does_not_modify_its_input(strategy: ClusteringStrategy) -> None:
    """The buffer's points are read, not written."""
    points, _ = blobs(3, 32, seed=6)
    before = points.copy()
    strategy.fit_predict(points)
    np.testing.assert_array_equal(points, before)
