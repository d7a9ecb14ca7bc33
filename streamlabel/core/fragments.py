"""How many new classes: fragments of one class joined, by how far labelled classes lie apart.

The clustering over-proposes (many small dense clusters); these two functions
are the explicit, tested step that turns its proposals into an estimate of the
new classes, as DeepAligned/USNID drop and merge clusters of an over-clustering.
"""

from __future__ import annotations

import numpy as np

from streamlabel.core.embedder import l2_normalize
from streamlabel.core.store import PrototypeStore


def separation_bar(store: PrototypeStore, quantile: float | None) -> float | None:
    """How close two distinct labelled classes' centres come, in the metric space.

    For every labelled class, the similarity of its centre to the nearest other
    labelled class's centre; the ``quantile`` of those. Two clusters closer than
    this are closer than labelled classes almost ever are: one class, split. The
    bar is never below the median similarity of the labelled classes' members to
    their own centre (where classes are far apart, e.g. orthogonal, the first
    figure says nothing about how close two halves of one class are).
    ``None`` when fewer than three classes are labelled or ``quantile`` is None.
    """
    if quantile is None:
        return None
    labelled = [
        s
        for s in store.states().values()
        if s.origin == "feedback" and s.status != "retired" and s.mean is not None
    ]
    if len(labelled) < 3:
        return None
    c = store.transform(np.stack([np.asarray(s.mean, np.float32) for s in labelled]))
    sims = c @ c.T
    np.fill_diagonal(sims, -np.inf)
    cohesion = [
        float((store.transform(np.asarray(s.exemplars, np.float32)) @ c[i]).mean())
        for i, s in enumerate(labelled)
        if len(s.exemplars)
    ]
    return max(float(np.quantile(sims.max(axis=1), quantile)), float(np.median(cohesion)))


def merge_fragments(labels: np.ndarray, z: np.ndarray, bar: float | None) -> np.ndarray:
    """Joins clusters whose centres are closer than ``bar`` (single linkage over centres).

    Density clustering on fine-grained data is asked to propose many small
    clusters; one class can come out as several. Clusters are merged while two
    centres are more similar than ``bar`` (see :func:`separation_bar`).

    Example:
        >>> z = np.array([[1, 0], [1, 0.1], [0.9, 0.2], [0, 1]], np.float32)
        >>> merge_fragments(np.array([0, 1, 1, 2]), z, 0.9).tolist()
        [0, 0, 0, 1]
    """
    k = int(labels.max()) + 1 if len(labels) else 0
    if bar is None or k < 2:
        return labels
    centres = l2_normalize(np.stack([z[labels == c].mean(axis=0) for c in range(k)]))
    sims = centres @ centres.T
    parent = list(range(k))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in zip(*np.nonzero(np.triu(sims >= bar, k=1)), strict=True):
        parent[root(int(a))] = root(int(b))
    roots = np.array([root(c) for c in range(k)])
    merged = np.where(labels >= 0, roots[np.maximum(labels, 0)], -1)
    _, canonical = np.unique(merged, return_inverse=True)
    out = canonical.astype(np.int64) - (1 if (merged < 0).any() else 0)
    return np.where(merged < 0, -1, out)
