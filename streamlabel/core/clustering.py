"""Clustering strategies for novel-class discovery; none needs the number of clusters.

A strategy maps points (unit vectors in the store's metric space) to cluster
labels, ``-1`` meaning noise. Every strategy passes the same contract suite
(tests/unit/core/test_clustering_contract.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np


class ClusteringStrategy(Protocol):
    """Finds clusters without being told how many there are."""

    def fit_predict(self, points: np.ndarray) -> np.ndarray:
        """Cluster labels ``(n,)``: ``0..k-1`` for clusters, ``-1`` for noise."""
        ...


@dataclass(frozen=True)
class HDBSCANClustering:
    """Density-based clustering (HDBSCAN): clusters of any number and shape, noise left out.

    Points are first projected on their top principal components (``n_components``),
    which keeps HDBSCAN fast on hundreds of dimensions and removes noise directions.

    Args:
        min_cluster_size: smallest group HDBSCAN reports as a cluster.
        min_samples: density smoothing (``None`` = ``min_cluster_size``).
        n_components: PCA dimensions before clustering (0 = none).
        selection: ``leaf`` (the many small dense clusters at the tips of the tree: one
            per class on fine-grained data; fragments are merged by discovery) or
            ``eom`` (excess of mass, favours stable large clusters).
        max_spread: a cluster whose spread (1 − mean cosine to its centre) exceeds
            this is noise (scattered points, not a class). When HDBSCAN finds no
            split, its whole-tree cluster (only the densest core, with
            ``allow_single_cluster``) is kept only if the core's
            spread (1 − mean cosine to its centre) is at most this — random
            directions have a spread near 1, so scatter has no such core — and is then
            grown to the points within twice the core's radius (in cosine distance, never
            past orthogonal) as long as it stays that tight.
        seed: seed of the randomised PCA solver.
    """

    min_cluster_size: int = 10
    min_samples: int | None = 5
    n_components: int = 32
    selection: Literal["eom", "leaf"] = "leaf"
    max_spread: float = 0.5
    seed: int = 0

    def fit_predict(self, points: np.ndarray) -> np.ndarray:
        x = np.asarray(points, dtype=np.float64)
        if len(x) < max(self.min_cluster_size, 2):
            return np.full(len(x), -1, np.int64)
        projected = _project(x, self.n_components, self.seed)
        labels = _drop_spread(x, self._hdbscan(projected, self.selection), self.max_spread)
        if labels.max() < 0:
            # HDBSCAN never returns its root as a cluster unless allowed: a buffer
            # holding one new class (plus noise) would otherwise yield nothing.
            # (Leaf selection ignores allow_single_cluster: the root is asked of eom.
            # Its core holds about min_cluster_size points; twice that, when there
            # are enough, estimates the cluster's radius better.)
            core = 2 * self.min_cluster_size if len(x) >= 4 * self.min_cluster_size else None
            single = self._hdbscan(projected, "eom", single=True, min_cluster_size=core)
            labels = _single_cluster(x, single, self.max_spread)
        return _canonical(labels)

    def _hdbscan(
        self,
        x: np.ndarray,
        selection: str,
        *,
        single: bool = False,
        min_cluster_size: int | None = None,
    ) -> np.ndarray:
        from sklearn.cluster import HDBSCAN

        model = HDBSCAN(
            min_cluster_size=min_cluster_size or self.min_cluster_size,
            min_samples=self.min_samples,
            cluster_selection_method=selection,
            allow_single_cluster=single,
            copy=True,
        )
        return np.asarray(model.fit_predict(x))


@dataclass(frozen=True)
class AgglomerativeClustering:
    """Average-linkage agglomerative clustering cut at a cosine-distance threshold.

    Clusters smaller than ``min_cluster_size`` become noise.

    Args:
        distance_threshold: cosine distance at which merging stops.
        min_cluster_size: smaller groups are reported as noise.
    """

    distance_threshold: float = 0.6
    min_cluster_size: int = 20

    def fit_predict(self, points: np.ndarray) -> np.ndarray:
        from sklearn.cluster import AgglomerativeClustering as Agglo

        x = np.asarray(points, dtype=np.float64)
        if len(x) < 2:
            return np.full(len(x), -1, np.int64)
        labels = Agglo(
            n_clusters=None,
            metric="cosine",
            linkage="average",
            distance_threshold=self.distance_threshold,
        ).fit_predict(x)
        sizes = np.bincount(labels)
        labels = np.where(sizes[labels] >= self.min_cluster_size, labels, -1)
        return _canonical(labels)


def _drop_spread(x: np.ndarray, labels: np.ndarray, max_spread: float) -> np.ndarray:
    """Turns clusters whose spread (1 − mean cosine to their centre) exceeds ``max_spread``
    into noise: a small leaf of scattered points is density noise, not a class."""
    out = labels.copy()
    for c in range(int(labels.max()) + 1 if len(labels) else 0):
        members = labels == c
        if members.any() and 1.0 - _cohesion(x[members]) > max_spread:
            out[members] = -1
    return out


def _single_cluster(x: np.ndarray, labels: np.ndarray, max_spread: float) -> np.ndarray:
    """Validates and grows the dense core HDBSCAN returns with ``allow_single_cluster``."""
    core = labels >= 0
    none = np.full(len(x), -1, np.int64)
    if not core.any() or core.all():
        return labels if core.all() else none
    if 1.0 - _cohesion(x[core]) > max_spread:
        return none
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    centre = xn[core].mean(axis=0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    sims = xn @ centre
    # The core is the densest part only; the cluster reaches twice as far from the
    # centre as the core does (never past orthogonal), and must stay as tight.
    radius = max(1.0 - 2.0 * (1.0 - float(sims[core].min())), 0.0)
    grown = core | (sims >= radius)
    if 1.0 - _cohesion(x[grown]) > max_spread:
        grown = core
    return np.where(grown, 0, -1).astype(np.int64)


def _cohesion(x: np.ndarray) -> float:
    """Mean cosine similarity of points to their mean direction."""
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    centre = xn.mean(axis=0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    return float((xn @ centre).mean())


def _project(x: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    if not n_components or x.shape[1] <= n_components or len(x) <= n_components:
        return x
    from sklearn.decomposition import PCA

    return PCA(n_components=n_components, random_state=seed).fit_transform(x)


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Renumbers clusters by first appearance so equal partitions give equal labels."""
    out = np.full(len(labels), -1, np.int64)
    mapping: dict[int, int] = {}
    for i, lab in enumerate(labels.tolist()):
        if lab < 0:
            continue
        out[i] = mapping.setdefault(lab, len(mapping))
    return out
