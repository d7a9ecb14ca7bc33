"""The store's compiled read view: metric, prototype rows, open-set thresholds, FAISS index.

Everything the store derives from its class states is one pure function,
:func:`compile_store`, of the states (with their vectors unpacked) and the
config. The :class:`CompiledStore` it returns classifies embeddings: it maps
them into the metric space, finds the nearest prototype rows, reduces them to
the best distinct classes and gates the best one by its thresholds, in the
metric space and in the raw embedding space.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from streamlabel.core.calibration import (
    calibrate_thresholds,
    crossfit_member_scores,
    leave_one_out_scores,
)
from streamlabel.core.class_arrays import ClassArrays
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.index import VectorIndex
from streamlabel.core.metric import Metric
from streamlabel.core.store_config import StoreConfig
from streamlabel.errors import StoreError
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
    """What the store derives from its class states (see :func:`compile_store`).

    Attributes:
        metric: the metric learned from the labelled classes.
        class_ids: the active classes, sorted; the other fields index into it.
        thresholds: open-set threshold per class, in the metric space.
        row_class: the class of each index row.
        index: the prototype rows (metric space) in a FAISS index.
        max_rows_per_class: most prototype rows any class has.
        member_scores: per class, its examples' similarities to it (cross-fitted when learned).
        raw_centres: per class, its unit mean in the raw space (zero without a mean).
        raw_thresholds: per class, the raw-space gate (-1 when the gate is off).
    """

    metric: Metric
    class_ids: list[str]
    thresholds: np.ndarray
    row_class: np.ndarray
    index: VectorIndex
    max_rows_per_class: int
    member_scores: list[np.ndarray]
    raw_centres: np.ndarray
    raw_thresholds: np.ndarray

    def classify(self, x: np.ndarray, top_k: int) -> Classification:
        """Finds the nearest classes of raw embeddings ``(n, dim)`` and applies the thresholds."""
        z = self.metric.apply(x)
        n, k = len(x), top_k
        if not self.class_ids or n == 0:
            empty_i = np.full((n, k), -1, np.int64)
            return Classification(
                self.class_ids,
                np.full(n, -1, np.int64),
                np.full(n, -1.0, np.float32),
                np.zeros(n, np.float32),
                np.full(n, np.inf, np.float32),
                np.zeros(n, bool),
                empty_i,
                np.full((n, k), -1.0, np.float32),
                z,
            )
        rows = min(self.index.size, max(k, 2) * self.max_rows_per_class)
        sims, ids = self.index.search(z, rows)
        # At least two classes are ranked so the margin is defined even when top_k == 1.
        top_idx, top_scores = _best_classes(sims, self.row_class[ids], ids >= 0, max(k, 2))
        best = top_idx[:, 0]
        scores = top_scores[:, 0]
        second = np.where(top_idx[:, 1] >= 0, top_scores[:, 1], -1.0).astype(np.float32)
        top_idx, top_scores = top_idx[:, :k], top_scores[:, :k]
        thresholds = self.thresholds[best]
        # Second gate, in the raw space: the learned metric stretches directions the
        # labelled data never spans, where off-domain items can land near a class.
        raw_scores = np.einsum("ij,ij->i", l2_normalize(x), self.raw_centres[best])
        accepted = (scores >= thresholds - _EPS) & (raw_scores >= self.raw_thresholds[best] - _EPS)
        return Classification(
            self.class_ids,
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
) -> CompiledStore:
    """Compiles the read view of a store from its class states.

    Args:
        states: every class state, retired ones included (they are left out).
        arrays: the vectors of each class, as unpacked from its state.
        config: the store's knobs.
        dim: the embedding dimension.
        use_gpu: put the FAISS index on a GPU when faiss has GPU support.
    """
    cfg = config
    ids = sorted(k for k, s in states.items() if s.status != "retired")
    labelled_ids = [
        k for k in ids if states[k].origin == "feedback" and len(arrays[k].exemplars) >= 2
    ]

    def fitter(min_examples: int) -> Callable[[list[np.ndarray]], Metric]:
        def fit(groups: list[np.ndarray]) -> Metric:
            if not groups:
                return Metric.identity(dim)
            return Metric.fit(groups, shrinkage=cfg.metric_shrinkage, min_examples=min_examples)

        return fit

    labelled = [arrays[k].exemplars for k in labelled_ids]
    pseudo = [
        arrays[k].exemplars
        for k in ids
        if cfg.metric_pseudo_labels
        and states[k].origin == "discovery"
        and len(arrays[k].exemplars) >= 2
    ]
    metric = fitter(cfg.metric_min_examples)(labelled + pseudo)
    crossfit: dict[str, np.ndarray] = {}
    if not metric.is_identity and cfg.calibration_folds > 1:
        # A fold sees (folds-1)/folds of the examples: the same estimator on a
        # subset, so the bar for learning it scales the same way.
        folds = cfg.calibration_folds
        fold_min = max(2, math.ceil(cfg.metric_min_examples * (folds - 1) / folds))
        scores = crossfit_member_scores(
            labelled, fitter(fold_min), folds=folds, require_learned=True
        )
        if scores is not None:
            crossfit = dict(zip(labelled_ids, scores, strict=True))
    rows: list[np.ndarray] = []
    row_class: list[int] = []
    member_scores: list[np.ndarray] = []
    max_rows = 1
    for ci, cid in enumerate(ids):
        arr = arrays[cid]
        protos = [arr.mean[None, :]] if arr.mean is not None else []
        if len(arr.subs):
            protos.append(arr.subs)
        if not protos:  # unreachable: add_class requires examples
            raise StoreError(f"class {cid!r} has no prototype")
        p = metric.apply(np.concatenate(protos))
        rows.append(p)
        row_class.extend([ci] * len(p))
        max_rows = max(max_rows, len(p))
        if cid in crossfit:
            member_scores.append(crossfit[cid])
        elif len(arr.exemplars):
            member_scores.append((metric.apply(arr.exemplars) @ p.T).max(axis=1))
        else:
            member_scores.append(np.zeros(0, np.float32))
    thresholds = calibrate_thresholds(
        member_scores,
        quantile=cfg.threshold_quantile,
        min_examples=cfg.min_calibration_examples,
        default=cfg.default_threshold,
    )
    _cap_discovered(states, ids, thresholds, set(labelled_ids), cfg.discovered_threshold_cap)
    thresholds = thresholds - np.float32(cfg.threshold_offset)
    for i, cid in enumerate(ids):
        override = states[cid].threshold_override
        if override is not None:
            thresholds[i] = override
    raw_centres = np.zeros((len(ids), dim), np.float32)
    raw_thresholds = np.full(len(ids), -1.0, np.float32)
    if cfg.raw_threshold_quantile is not None:
        raw_scores: list[np.ndarray] = []
        for i, cid in enumerate(ids):
            arr = arrays[cid]
            raw_centres[i] = l2_normalize(arr.mean) if arr.mean is not None else 0.0
            raw_scores.append(leave_one_out_scores(arr.exemplars))
        raw_thresholds = calibrate_thresholds(
            raw_scores,
            quantile=cfg.raw_threshold_quantile,
            min_examples=cfg.min_calibration_examples,
            default=-1.0,
        )
        _cap_discovered(
            states, ids, raw_thresholds, set(labelled_ids), cfg.discovered_threshold_cap
        )
    index = VectorIndex.build(
        np.concatenate(rows) if rows else np.zeros((0, dim), np.float32),
        use_gpu=use_gpu,
        approximate_above=cfg.approximate_above,
        nprobe=cfg.nprobe,
    )
    return CompiledStore(
        metric,
        ids,
        thresholds.astype(np.float32),
        np.asarray(row_class, np.int64),
        index,
        max_rows,
        member_scores,
        raw_centres,
        raw_thresholds.astype(np.float32),
    )


def _cap_discovered(
    states: Mapping[str, ClassState],
    ids: list[str],
    thresholds: np.ndarray,
    labelled: set[str],
    q: float | None,
) -> None:
    """Caps discovered classes' thresholds (in place) by the labelled classes' ones.

    A discovered class's members are the dense core its clustering kept, so
    their spread understates the class's; its threshold is capped by how wide
    the labelled classes are (the ``discovered_threshold_cap`` quantile ``q``).
    """
    if q is None or not labelled:
        return
    cap = float(np.quantile([t for t, c in zip(thresholds, ids, strict=True) if c in labelled], q))
    for i, c in enumerate(ids):
        if states[c].origin == "discovery":
            thresholds[i] = min(thresholds[i], cap)


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
