"""The store's derived table: per class its prototype rows, member scores and thresholds.

Given a :class:`~streamlabel.core.metric_fit.MetricFit`, what the store derives
from one class depends on that class alone: its prototype rows in the metric
space, its members' similarities to it (out-of-fold for labelled classes) and
their calibrated quantile, its raw-space centre and gate. A :class:`ClassTable`
holds these per *slot* (one per active class, dense: a removed class's slot
takes the last one's), with the prototype rows ``width`` per slot (the mean and
up to ``max_sub_prototypes`` sub-prototypes, padded with copies of the mean) in
a :class:`~streamlabel.core.index.VectorIndex`. A class event rewrites one
slot; only what must stay global is computed over all classes, vectorised:
the thresholds' fallback (the median of the calibrated ones) and the cap of
discovered classes (see :meth:`ClassTable.thresholds`).

:func:`derive` computes any number of classes at once, vectorised (a refit
derives every class in one call); a row is computed by
:meth:`~streamlabel.core.metric.Metric.apply_rows`, so its value does not
depend on which classes it was derived with.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streamlabel.core.calibration import segment_quantiles
from streamlabel.core.class_arrays import ClassArrays
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.index import VectorIndex
from streamlabel.core.metric_fit import MetricFit, is_labelled
from streamlabel.core.store_config import StoreConfig
from streamlabel.errors import StoreError
from streamlabel.schemas import ClassState

__all__ = ["ClassTable", "Derived", "derive"]

_CHUNK = 1 << 15
"""Exemplars scored per block (bounds the gathered prototype rows' memory)."""

Entry = tuple[str, ClassState, ClassArrays]


@dataclass(eq=False)
class Derived:
    """What :func:`derive` computed, one entry per class (in the order given)."""

    rows: np.ndarray  # (b, width, dim): prototype rows, padded with the first
    quantile: np.ndarray  # (b,) calibrated member-score quantile (NaN: too few)
    raw_quantile: np.ndarray  # (b,) raw-space gate before fallback (NaN: too few)
    raw_centre: np.ndarray  # (b, dim) unit mean in the raw space
    labelled: np.ndarray  # (b,) shapes the metric (and caps discovered thresholds)
    discovered: np.ndarray  # (b,) origin discovery (its thresholds are capped)
    override: np.ndarray  # (b,) operator threshold (NaN: none)
    members: list[np.ndarray]  # per class, its members' similarities to it


def _starts(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _segment_sums(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per segment, the float64 sum of its rows (a segment of no rows sums to 0)."""
    out = np.zeros((len(counts), x.shape[1]), np.float64)
    nz = counts > 0
    if nz.any():
        out[nz] = np.add.reduceat(x.astype(np.float64, copy=False), _starts(counts)[nz], axis=0)
    return out


def derive(entries: Sequence[Entry], fit: MetricFit, config: StoreConfig, *, dim: int,
           width: int) -> Derived:  # fmt: skip
    """Derives classes ``entries`` (all active) under ``fit``, vectorised over them.

    Raises:
        StoreError: a class has no prototype or more than ``width`` of them.
    """
    b = len(entries)
    protos: list[np.ndarray] = []
    n_rows = np.zeros(b, np.int64)
    for i, (cid, _, arr) in enumerate(entries):
        p = ([arr.mean[None, :]] if arr.mean is not None else []) + [arr.subs]
        n_rows[i] = sum(len(x) for x in p)
        if not 0 < n_rows[i] <= width:
            raise StoreError(f"class {cid!r} has {n_rows[i]} prototypes, the table {width}")
        protos.extend(p)
    flat = fit.metric.apply_rows(np.concatenate(protos)) if b else np.zeros((0, dim), np.float32)
    r = np.arange(width)[None, :]
    rows = flat[_starts(n_rows)[:, None] + np.where(r < n_rows[:, None], r, 0)]
    labelled = np.array([is_labelled(s, a) for _, s, a in entries], bool)
    discovered = np.array([s.origin == "discovery" for _, s, _ in entries], bool)
    override = np.array(
        [np.nan if s.threshold_override is None else s.threshold_override for _, s, _ in entries],
        np.float32,
    )
    counts = np.array([len(a.exemplars) for _, _, a in entries], np.int64)
    ex = np.concatenate([a.exemplars for _, _, a in entries]) if b else np.zeros((0, dim))
    ex = ex.astype(np.float32, copy=False)
    owner = np.repeat(np.arange(b), counts)
    cross = labelled & (fit.folds is not None)
    scores = np.zeros(len(ex), np.float32)
    plain = ~cross[owner]
    for lo in range(0, int(plain.sum()), _CHUNK):
        idx = np.flatnonzero(plain)[lo : lo + _CHUNK]
        z = fit.metric.apply_rows(ex[idx])
        scores[idx] = np.einsum("nd,nrd->nr", z, rows[owner[idx]]).max(axis=1)
    if fit.folds is not None and cross.any():
        scores = _crossfit(ex, owner, counts, cross, fit.folds, scores)
    members = np.split(scores, np.cumsum(counts)[:-1]) if b else []
    quantile = segment_quantiles(
        scores, counts, config.threshold_quantile, min_count=config.min_calibration_examples
    ).astype(np.float32)
    raw_centre = np.zeros((b, dim), np.float32)
    raw_quantile = np.full(b, np.nan, np.float32)
    if config.raw_threshold_quantile is not None and b:
        has_mean = np.array([a.mean is not None for _, _, a in entries], bool)
        if has_mean.any():
            means = [a.mean for _, _, a in entries if a.mean is not None]
            raw_centre[has_mean] = l2_normalize(np.stack(means))
        raw_quantile = _raw_quantiles(ex, owner, counts, config).astype(np.float32)
    return Derived(
        rows, quantile, raw_quantile, raw_centre, labelled, discovered, override, members
    )


def _crossfit(
    ex: np.ndarray,
    owner: np.ndarray,
    counts: np.ndarray,
    cross: np.ndarray,
    folds: Sequence[object],
    scores: np.ndarray,
) -> np.ndarray:
    """Out-of-fold member scores of the ``cross`` classes (example ``i`` of a class in
    fold ``i % folds``; scored by the fold's metric against the mean of the other folds)."""
    k = len(folds)
    within = np.arange(len(ex)) - _starts(counts)[owner]
    fold_of = within % k
    out = scores.copy()
    total = _segment_sums(ex, counts)
    for f, metric in enumerate(folds):
        in_fold = fold_of == f
        sums = total - _segment_sums(np.where(in_fold[:, None], ex, 0.0), counts)
        n_train = np.bincount(owner, weights=~in_fold, minlength=len(counts))
        held = np.flatnonzero(in_fold & cross[owner] & (n_train[owner] > 0))
        if not len(held):
            continue
        means = (sums / np.maximum(n_train, 1)[:, None]).astype(np.float32)
        centres = metric.apply_rows(means)  # type: ignore[attr-defined]
        z = metric.apply_rows(ex[held])  # type: ignore[attr-defined]
        out[held] = np.einsum("nd,nd->n", z, centres[owner[held]])
    return out


def _raw_quantiles(
    ex: np.ndarray, owner: np.ndarray, counts: np.ndarray, config: StoreConfig
) -> np.ndarray:
    """The raw-space gate of each class: a quantile of its exemplars' cosine to the mean
    direction of the OTHER exemplars (leave-one-out; fewer than two give none)."""
    sums = _segment_sums(ex, counts)
    others = sums[owner] - ex
    norms = np.maximum(np.linalg.norm(others, axis=1), 1e-12)
    loo = (np.einsum("ij,ij->i", ex.astype(np.float64), others) / norms).astype(np.float32)
    keep = counts[owner] >= 2
    return segment_quantiles(
        loo[keep],
        np.where(counts >= 2, counts, 0),
        config.raw_threshold_quantile or 0.0,
        min_count=config.min_calibration_examples,
    )


class ClassTable:
    """The derived values of every active class, one slot each, and the index of their rows.

    Args:
        fit: the metric fit every class is derived under.
        config: the store's knobs.
        dim: the embedding dimension.
        width: prototype rows per slot (grown when a class needs more).
        use_gpu: put the index on a GPU when faiss has GPU support.
    """

    def __init__(
        self, fit: MetricFit, config: StoreConfig, *, dim: int, width: int, use_gpu: bool = False
    ) -> None:
        self.fit, self.config, self.dim, self.width = fit, config, dim, width
        self._use_gpu = use_gpu
        self.class_ids: list[str] = []  # sorted; replaced (never mutated) on a change
        self._slot: dict[str, int] = {}
        self._slot_ids: list[str] = []
        self.pos_of_slot = np.zeros(0, np.int64)
        self.rows = np.zeros((0, width, dim), np.float32)
        self.raw_centre = np.zeros((0, dim), np.float32)
        self._quantile = np.zeros(0, np.float32)
        self._raw_quantile = np.zeros(0, np.float32)
        self._override = np.zeros(0, np.float32)
        self._labelled = np.zeros(0, bool)
        self._discovered = np.zeros(0, bool)
        self._members: list[np.ndarray] = []
        self._index: VectorIndex | None = None
        self._thresholds: tuple[np.ndarray, np.ndarray] | None = None
        self.classes_derived = 0
        """Classes derived since the table was built (the work a class event costs)."""

    @classmethod
    def build(
        cls,
        states: Mapping[str, ClassState],
        arrays: Mapping[str, ClassArrays],
        fit: MetricFit,
        config: StoreConfig,
        *,
        dim: int,
        use_gpu: bool = False,
    ) -> ClassTable:
        """A table of every active class of ``states`` (slots in id order)."""
        entries = [
            (k, states[k], arrays[k]) for k in sorted(states) if states[k].status != "retired"
        ]
        width = max([1 + max(config.max_sub_prototypes, 0)] + [_needed(a) for _, _, a in entries])
        table = cls(fit, config, dim=dim, width=width, use_gpu=use_gpu)
        table.update(entries, [])
        return table

    @property
    def size(self) -> int:
        """Active classes in the table."""
        return len(self._slot_ids)

    def slot(self, class_id: str) -> int | None:
        """The slot of a class (None when it is not in the table)."""
        return self._slot.get(class_id)

    def members(self, slot: int) -> np.ndarray:
        """The members' similarities of the class in ``slot``."""
        return self._members[slot]

    # ----------------------------------------------------------------- writes
    def update(self, entries: Sequence[Entry], removed: Sequence[str]) -> None:
        """Derives ``entries`` (active classes, new or changed) and drops ``removed``."""
        for cid in removed:
            self._remove(cid)
        if not entries:
            return
        need = max(_needed(a) for _, _, a in entries)
        if need > self.width:
            self._widen(need)
        d = derive(entries, self.fit, self.config, dim=self.dim, width=self.width)
        self.classes_derived += len(entries)
        new = [cid for cid, _, _ in entries if cid not in self._slot]
        self._grow(len(self._slot_ids) + len(new))
        for cid in new:
            self._insert(cid)
        slots = np.array([self._slot[cid] for cid, _, _ in entries], np.int64)
        self.rows[slots] = d.rows
        self.raw_centre[slots] = d.raw_centre
        self._quantile[slots] = d.quantile
        self._raw_quantile[slots] = d.raw_quantile
        self._override[slots] = d.override
        self._labelled[slots] = d.labelled
        self._discovered[slots] = d.discovered
        for s, m in zip(slots.tolist(), d.members, strict=True):
            self._members[s] = m
        self._thresholds = None
        if self._index is not None and self._index.updatable:
            old = self._index.size // self.width
            for s in sorted(slots.tolist()):
                if s < old:
                    self._index.set_rows(s * self.width, self.rows[s])
            if self.size > old:
                self._index.add(self.rows[old : self.size].reshape(-1, self.dim))
        else:
            self._index = None

    def _insert(self, cid: str) -> None:
        slot = len(self._slot_ids)
        self._slot[cid] = slot
        self._slot_ids.append(cid)
        p = bisect.bisect_left(self.class_ids, cid)
        self.class_ids = [*self.class_ids[:p], cid, *self.class_ids[p:]]
        live = self.pos_of_slot[:slot]
        live[live >= p] += 1
        self.pos_of_slot[slot] = p
        self._members.append(np.zeros(0, np.float32))

    def _remove(self, cid: str) -> None:
        slot = self._slot.pop(cid, None)
        if slot is None:
            return
        last = len(self._slot_ids) - 1
        p = int(self.pos_of_slot[slot])
        if slot != last:  # the last slot moves into the hole
            moved = self._slot_ids[last]
            self._slot[moved] = slot
            self._slot_ids[slot] = moved
            for arr in self._per_slot():
                arr[slot] = arr[last]
            self._members[slot] = self._members[last]
            if self._index is not None and self._index.updatable:
                self._index.set_rows(slot * self.width, self.rows[slot])
        self._slot_ids.pop()
        self._members.pop()
        self.class_ids = [*self.class_ids[:p], *self.class_ids[p + 1 :]]
        live = self.pos_of_slot[:last]
        live[live > p] -= 1
        if self._index is not None and self._index.updatable:
            self._index.truncate(last * self.width)
        else:
            self._index = None
        self._thresholds = None

    def _per_slot(self) -> list[np.ndarray]:
        return [self.pos_of_slot, self.rows, self.raw_centre, self._quantile,
                self._raw_quantile, self._override, self._labelled, self._discovered]  # fmt: skip

    def _grow(self, n: int) -> None:
        cap = len(self.pos_of_slot)
        if n <= cap:
            return
        new_cap = max(n, 2 * cap, 16)
        grown = []
        for arr in self._per_slot():
            g = np.zeros((new_cap, *arr.shape[1:]), arr.dtype)
            g[:cap] = arr
            grown.append(g)
        (self.pos_of_slot, self.rows, self.raw_centre, self._quantile,
         self._raw_quantile, self._override, self._labelled, self._discovered) = grown  # fmt: skip

    def _widen(self, width: int) -> None:
        pad = np.repeat(self.rows[:, :1], width - self.width, axis=1)
        self.rows = np.concatenate([self.rows, pad], axis=1)
        self.width = width
        self._index = None

    # ------------------------------------------------------------------ reads
    def index(self) -> VectorIndex:
        """The index of every slot's rows (row ``s * width + j`` is row ``j`` of slot ``s``)."""
        if self._index is None:
            cfg = self.config
            self._index = VectorIndex.build(
                self.rows[: self.size].reshape(-1, self.dim),
                use_gpu=self._use_gpu,
                approximate_above=cfg.approximate_above,
                nprobe=cfg.nprobe,
            )
        return self._index

    def thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per slot, the open-set threshold (metric space) and the raw-space gate.

        The global part, vectorised over all classes: a class with too few
        members borrows the median of the calibrated ones (else the default); a
        discovered class is capped by a quantile of the labelled classes'
        thresholds; then the offset and the operators' overrides.
        """
        if self._thresholds is None:
            n, cfg = self.size, self.config
            labelled, discovered = self._labelled[:n], self._discovered[:n]
            thr = _fallback(self._quantile[:n], cfg.default_threshold)
            _cap(thr, labelled, discovered, cfg.discovered_threshold_cap)
            thr = thr - np.float32(cfg.threshold_offset)
            override = self._override[:n]
            thr = np.where(np.isnan(override), thr, override).astype(np.float32)
            raw = np.full(n, -1.0, np.float32)
            if cfg.raw_threshold_quantile is not None:
                raw = _fallback(self._raw_quantile[:n], -1.0)
                _cap(raw, labelled, discovered, cfg.discovered_threshold_cap)
            self._thresholds = (thr, raw)
        return self._thresholds


def _needed(arrays: ClassArrays) -> int:
    return (arrays.mean is not None) + len(arrays.subs)


def _fallback(quantiles: np.ndarray, default: float) -> np.ndarray:
    calibrated = ~np.isnan(quantiles)
    fallback = float(np.median(quantiles[calibrated])) if calibrated.any() else default
    return np.where(calibrated, quantiles, np.float32(fallback)).astype(np.float32)


def _cap(thr: np.ndarray, labelled: np.ndarray, discovered: np.ndarray, q: float | None) -> None:
    """Caps discovered classes' thresholds (in place) at the ``q`` quantile of the labelled
    classes' ones: a discovered class's members are the dense core its clustering
    kept, so their spread understates the class's."""
    if q is None or not labelled.any():
        return
    cap = float(np.quantile(thr[labelled], q))
    thr[discovered] = np.minimum(thr[discovered], cap)
