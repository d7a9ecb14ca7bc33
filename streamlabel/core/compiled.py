"""The store's compiled read view: metric, prototype rows, open-set thresholds, FAISS index.

Everything the store derives from its class states is a pure function of the
states, the config and the :class:`~streamlabel.core.metric_fit.MetricFit` in
force: :func:`compile_store` computes it from scratch (fitting the metric on
the states unless given a fit); the store keeps the same
:class:`~streamlabel.core.class_table.ClassTable` up to date one class at a
time and gets the same view. The :class:`CompiledStore` classifies embeddings:
it maps them into the metric space, finds the nearest prototype rows, reduces
them to the best distinct classes and gates the best one by its thresholds,
in the metric space and in the raw embedding space. Similarities are computed
again exactly for the rows the index found, so a label does not depend on
the index's arithmetic or on the order its rows were written in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from streamlabel.core.class_arrays import ClassArrays
from streamlabel.core.class_table import ClassTable
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.index import VectorIndex
from streamlabel.core.metric import Metric
from streamlabel.core.metric_fit import MetricFit, fit_metric
from streamlabel.core.store_config import StoreConfig
from streamlabel.schemas import UNKNOWN, ClassState

_EPS = 1e-5  # float32 cosine round-off: an exact copy of a member must pass its threshold


@dataclass(frozen=True, eq=False)
class Classification:
    """Result of classifying a batch (arrays aligned with the input rows).

    Attributes:
        class_ids: ids of the active classes; the integer arrays index into it.
        best: index of the nearest class per row (-1 when the store is empty).
        scores: similarity to the nearest class.
        margins: nearest minus second-nearest class similarity.
        thresholds: open-set threshold of the nearest class.
        accepted: True where ``scores >= thresholds`` (else the item is unknown).
        top_idx: ``(n, k)`` indices of the k best classes (-1 padded).
        top_scores: ``(n, k)`` their similarities.
        vectors: the inputs mapped into the metric space.
    """

    class_ids: list[str]
    best: np.ndarray
    scores: np.ndarray
    margins: np.ndarray
    thresholds: np.ndarray
    accepted: np.ndarray
    top_idx: np.ndarray
    top_scores: np.ndarray
    vectors: np.ndarray

    def label(self, i: int) -> str:
        """The label of row ``i``: a class id or ``unknown``."""
        return self.class_ids[int(self.best[i])] if self.accepted[i] else UNKNOWN


@dataclass(eq=False)
class CompiledStore:
    """The read view of a store: its :class:`ClassTable` under a metric fit.

    Attributes:
        table: the derived values of every active class.
    """

    table: ClassTable

    @property
    def metric(self) -> Metric:
        """The metric in force."""
        return self.table.fit.metric

    @property
    def fit(self) -> MetricFit:
        """The metric fit in force."""
        return self.table.fit

    @property
    def class_ids(self) -> list[str]:
        """The active classes, sorted; the integer arrays of a classification index into it."""
        return self.table.class_ids

    @property
    def index(self) -> VectorIndex:
        """The prototype rows (metric space) in a FAISS index."""
        return self.table.index()

    @property
    def thresholds(self) -> np.ndarray:
        """Open-set threshold per class (in the order of :attr:`class_ids`)."""
        t = self.table
        by_pos = np.empty(t.size, np.int64)
        by_pos[t.pos_of_slot[: t.size]] = np.arange(t.size)
        return t.thresholds()[0][by_pos]

    def member_scores(self, class_id: str) -> np.ndarray | None:
        """A class's members' similarities to it (None: not an active class)."""
        slot = self.table.slot(class_id)
        return None if slot is None else self.table.members(slot)

    def classify(self, x: np.ndarray, top_k: int) -> Classification:
        """Finds the nearest classes of raw embeddings ``(n, dim)`` and applies the thresholds."""
        t = self.table
        z = t.fit.metric.apply(x)
        n, k = len(x), top_k
        if not t.size or n == 0:
            empty_i = np.full((n, k), -1, np.int64)
            return Classification(
                t.class_ids,
                np.full(n, -1, np.int64),
                np.full(n, -1.0, np.float32),
                np.zeros(n, np.float32),
                np.full(n, np.inf, np.float32),
                np.zeros(n, bool),
                empty_i,
                np.full((n, k), -1.0, np.float32),
                z,
            )
        index = t.index()
        depth = min(index.size, max(k, 2) * t.width)
        _, ids = index.search(z, depth)
        valid = ids >= 0
        rows = np.where(valid, ids, 0)
        slots = rows // t.width
        sims = np.einsum("nd,nrd->nr", z, t.rows.reshape(-1, t.dim)[rows])
        sims = np.where(valid, sims, -np.inf).astype(np.float32)
        pos = np.where(valid, t.pos_of_slot[slots], -1)
        order = np.lexsort((rows, np.where(valid, pos, t.size), -sims), axis=1)
        sims, pos, valid, slots = (
            np.take_along_axis(a, order, axis=1) for a in (sims, pos, valid, slots)
        )
        # At least two classes are ranked so the margin is defined even when top_k == 1.
        top_idx, top_scores = _best_classes(sims, pos, valid, max(k, 2))
        best = top_idx[:, 0]
        scores = top_scores[:, 0]
        second = np.where(top_idx[:, 1] >= 0, top_scores[:, 1], -1.0).astype(np.float32)
        top_idx, top_scores = top_idx[:, :k], top_scores[:, :k]
        best_slot = slots[:, 0]  # the best row comes first
        thr, raw_thr = t.thresholds()
        thresholds = thr[best_slot]
        # Second gate, in the raw space: the learned metric stretches directions the
        # labelled data never spans, where off-domain items can land near a class.
        raw_scores = np.einsum("ij,ij->i", l2_normalize(x), t.raw_centre[best_slot])
        accepted = (scores >= thresholds - _EPS) & (raw_scores >= raw_thr[best_slot] - _EPS)
        return Classification(
            t.class_ids,
            best,
            scores,
            (scores - second).astype(np.float32),
            thresholds,
            accepted,
            top_idx,
            top_scores,
            z,
        )


def compile_store(
    states: Mapping[str, ClassState],
    arrays: Mapping[str, ClassArrays],
    config: StoreConfig,
    *,
    dim: int,
    use_gpu: bool = False,
    fit: MetricFit | None = None,
) -> CompiledStore:
    """Compiles the read view of a store from its class states, from scratch.

    Args:
        states: every class state, retired ones included (they are left out).
        arrays: the vectors of each class, as unpacked from its state.
        config: the store's knobs.
        dim: the embedding dimension.
        use_gpu: put the FAISS index on a GPU when faiss has GPU support.
        fit: the metric fit to derive under; fitted on ``states`` when None.
    """
    if fit is None:
        fit = fit_metric(states, arrays, config, dim=dim, version=0)
    return CompiledStore(ClassTable.build(states, arrays, fit, config, dim=dim, use_gpu=use_gpu))


def _best_classes(
    sims: np.ndarray, classes: np.ndarray, valid: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reduces row hits (sorted best first) to the k best distinct classes per item.

    The first hit of a class is its best row, so keeping first occurrences in
    order gives each class's max similarity, already sorted.
    """
    n, r = classes.shape
    classes = np.where(valid, classes, -1)
    first = np.ones((n, r), bool)
    for j in range(1, r):
        first[:, j] = (classes[:, j][:, None] != classes[:, :j]).all(axis=1)
    first &= classes >= 0
    order = np.argsort(~first, axis=1, kind="stable")[:, :k]
    top_idx = np.take_along_axis(classes, order, axis=1)
    top_scores = np.take_along_axis(sims, order, axis=1).astype(np.float32)
    keep = np.take_along_axis(first, order, axis=1)
    top_idx = np.where(keep, top_idx, -1)
    top_scores = np.where(keep, top_scores, -1.0).astype(np.float32)
    if top_idx.shape[1] < k:
        pad = k - top_idx.shape[1]
        top_idx = np.pad(top_idx, ((0, 0), (0, pad)), constant_values=-1)
        top_scores = np.pad(top_scores, ((0, 0), (0, pad)), constant_values=-1.0)
    return top_idx, top_scores
