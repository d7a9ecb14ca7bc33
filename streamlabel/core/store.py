"""The prototype store: classes as prototypes in a learned metric space, searched with FAISS.

State is a map ``class_id -> ClassState`` plus a version. The ONLY way state
changes is :meth:`PrototypeStore.apply` of a :class:`ClassEvent` that carries the
class's full new state; the learner-side methods (:meth:`learn`,
:meth:`add_class`, :meth:`rename`, :meth:`merge`, :meth:`retire`) compute that
state, apply it and return the events so they can be published. A replica
that applies the same events (or only the last event per class, as a
compacted topic keeps) holds the same store.

Everything derived — the learned :class:`~streamlabel.core.metric.Metric`, the
prototype rows in metric space, the open-set thresholds and the FAISS index —
is a pure function of the class states, compiled lazily and cached by version.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from streamlabel.core.calibration import (
    calibrate_thresholds,
    crossfit_member_scores,
    leave_one_out_scores,
)
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.index import VectorIndex
from streamlabel.core.metric import Metric
from streamlabel.core.reservoir import reservoir_add
from streamlabel.errors import SnapshotError, StoreError
from streamlabel.schemas import UNKNOWN, ClassEvent, ClassEventKind, ClassState, to_array
from streamlabel.schemas.records import ClassOrigin, ClassStatus

SNAPSHOT_FORMAT = 1
_EPS = 1e-5  # float32 cosine round-off: an exact copy of a member must pass its threshold


@dataclass(frozen=True)
class StoreConfig:
    """Knobs of the prototype store (validated by the pipeline's settings).

    Attributes:
        max_sub_prototypes: extra prototypes per class for multi-modal classes (0 = mean only).
        exemplar_capacity: examples kept per class (reservoir).
        threshold_quantile: quantile of member similarities used as open-set threshold.
        threshold_offset: subtracted from every calibrated threshold (more lenient when > 0).
        default_threshold: threshold when no class can be calibrated.
        min_calibration_examples: examples a class needs to calibrate its own threshold.
        metric_shrinkage: shrinkage of the within-class scatter toward the identity.
        metric_min_examples: labelled examples needed before the metric is learned.
        calibration_folds: folds for cross-fitted thresholds of labelled classes (1 = in-sample).
        discovered_threshold_cap: a discovered class's threshold is at most this quantile of
            the labelled classes' thresholds (``None`` = its own calibration only).
        raw_threshold_quantile: an item must also reach this quantile of the class's
            members' cosine to the class mean in the raw embedding space (catches
            off-domain items the learned metric would accept; ``None`` = off).
        top_k: candidate classes reported per item.
        approximate_above: prototypes above which the index is approximate (IVF,
            see :mod:`streamlabel.core.index`); ``None`` = always exact.
        nprobe: inverted lists an approximate index scans per query.
        seed: seed of every random choice (reservoirs, sub-prototype clustering).
    """

    max_sub_prototypes: int = 0
    exemplar_capacity: int = 64
    threshold_quantile: float = 0.1
    threshold_offset: float = 0.0
    default_threshold: float = 0.3
    min_calibration_examples: int = 8
    metric_shrinkage: float = 0.3
    metric_min_examples: int = 20
    calibration_folds: int = 2
    discovered_threshold_cap: float | None = 0.5
    raw_threshold_quantile: float | None = 0.02
    top_k: int = 5
    approximate_above: int | None = None
    nprobe: int = 16
    metric_pseudo_labels: bool = False
    seed: int = 0


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
class _Compiled:
    version: int
    metric: Metric
    class_ids: list[str]
    thresholds: np.ndarray
    row_class: np.ndarray
    index: VectorIndex
    max_rows_per_class: int
    member_scores: list[np.ndarray]
    raw_centres: np.ndarray
    raw_thresholds: np.ndarray


@dataclass(eq=False)
class _Arrays:
    mean: np.ndarray | None
    subs: np.ndarray
    exemplars: np.ndarray
    exemplar_texts: list[str] = field(default_factory=list)


class PrototypeStore:
    """Class prototypes with open-set thresholds in a learned metric space.

    Args:
        dim: embedding dimension.
        config: the store's knobs.
        clock: returns the current time in epoch seconds (inject a settable one in tests).
        use_gpu: put the FAISS index on a GPU when faiss has GPU support.
    """

    def __init__(
        self,
        dim: int,
        config: StoreConfig | None = None,
        *,
        clock: Callable[[], float],
        use_gpu: bool = False,
    ) -> None:
        if dim <= 0:
            raise StoreError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.config = config or StoreConfig()
        self._clock = clock
        self._use_gpu = use_gpu
        self._states: dict[str, ClassState] = {}
        self._arrays: dict[str, _Arrays] = {}
        self._version = 0
        self._compiled: _Compiled | None = None

    # ------------------------------------------------------------------ reads
    @property
    def version(self) -> int:
        """Increases with every applied mutation."""
        return self._version

    def states(self) -> dict[str, ClassState]:
        """All class states, retired and merged ones included (a copy of the map)."""
        return dict(self._states)

    def get(self, class_id: str) -> ClassState:
        """The state of one class.

        Raises:
            StoreError: no such class.
        """
        try:
            return self._states[class_id]
        except KeyError:
            raise StoreError(f"no class {class_id!r}") from None

    def active_ids(self) -> list[str]:
        """Ids of classes that can be predicted (not retired), sorted."""
        return sorted(k for k, s in self._states.items() if s.status != "retired")

    def _retired_named(self, name: str) -> str | None:
        """A retired (not merged) class whose id, name or alias is ``name``: a label revives it."""
        for k in sorted(self._states):
            s = self._states[k]
            if s.status == "retired" and s.merged_into is None and name in (k, s.name, *s.aliases):
                return k
        return None

    def resolve(self, name: str) -> str | None:
        """The active class a label refers to: by id, name or alias; follows merges."""
        target = self._states.get(name)
        if target is None:
            matches = sorted(
                k for k, s in self._states.items() if name == s.name or name in s.aliases
            )
            active = [k for k in matches if self._states[k].status != "retired"]
            target = self._states[(active or matches)[0]] if matches else None
        seen: set[str] = set()
        while target is not None and target.merged_into and target.class_id not in seen:
            seen.add(target.class_id)
            target = self._states.get(target.merged_into)
        if target is None or target.status == "retired":
            return None
        return target.class_id

    @property
    def metric(self) -> Metric:
        """The metric in use (learned from the labelled classes)."""
        return self._compile().metric

    def thresholds(self) -> dict[str, float]:
        """The open-set threshold of every active class."""
        c = self._compile()
        return {cid: float(t) for cid, t in zip(c.class_ids, c.thresholds, strict=True)}

    def member_score_quantile(self, class_id: str, q: float) -> float | None:
        """The ``q`` quantile of a class's examples' similarities to it (None without examples)."""
        c = self._compile()
        try:
            scores = c.member_scores[c.class_ids.index(class_id)]
        except ValueError:
            raise StoreError(f"no active class {class_id!r}") from None
        return float(np.quantile(scores, q)) if len(scores) else None

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Maps raw embeddings into the metric space."""
        return self._compile().metric.apply(vectors)

    def classify(self, vectors: np.ndarray) -> Classification:
        """Finds the nearest classes of raw embeddings ``(n, dim)`` and applies the thresholds."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise StoreError(f"expected vectors of shape (n, {self.dim}), got {x.shape}")
        c = self._compile()
        z = c.metric.apply(x)
        n, k = len(x), self.config.top_k
        if not c.class_ids or n == 0:
            empty_i = np.full((n, k), -1, np.int64)
            return Classification(
                c.class_ids,
                np.full(n, -1, np.int64),
                np.full(n, -1.0, np.float32),
                np.zeros(n, np.float32),
                np.full(n, np.inf, np.float32),
                np.zeros(n, bool),
                empty_i,
                np.full((n, k), -1.0, np.float32),
                z,
            )
        rows = min(c.index.size, max(k, 2) * c.max_rows_per_class)
        sims, ids = c.index.search(z, rows)
        # At least two classes are ranked so the margin is defined even when top_k == 1.
        top_idx, top_scores = _best_classes(sims, c.row_class[ids], ids >= 0, max(k, 2))
        best = top_idx[:, 0]
        scores = top_scores[:, 0]
        second = np.where(top_idx[:, 1] >= 0, top_scores[:, 1], -1.0).astype(np.float32)
        top_idx, top_scores = top_idx[:, :k], top_scores[:, :k]
        thresholds = c.thresholds[best]
        # Second gate, in the raw space: the learned metric stretches directions the
        # labelled data never spans, where off-domain items can land near a class.
        raw_scores = np.einsum("ij,ij->i", l2_normalize(x), c.raw_centres[best])
        accepted = (scores >= thresholds - _EPS) & (raw_scores >= c.raw_thresholds[best] - _EPS)
        return Classification(
            c.class_ids,
            best,
            scores,
            (scores - second).astype(np.float32),
            thresholds,
            accepted,
            top_idx,
            top_scores,
            z,
        )

    # ------------------------------------------------------- the one mutator
    def apply(self, event: ClassEvent) -> bool:
        """Applies a class event; the only way the store changes.

        Idempotent and order-safe: an event older than the class's current state
        (``state.updated_version`` lower) is ignored.

        Returns:
            True when the event changed the store.

        Raises:
            StoreError: the event's vectors have the wrong dimension.
        """
        state = event.state
        current = self._states.get(event.class_id)
        if current is not None and state.updated_version < current.updated_version:
            return False
        if current is not None and state == current:
            self._version = max(self._version, event.store_version)
            return False
        arrays = self._arrays_of(state)
        self._states[event.class_id] = state
        self._arrays[event.class_id] = arrays
        self._version = max(self._version, event.store_version)
        self._compiled = None
        return True

    # --------------------------------------------------- learner-side writes
    def learn(
        self, label: str, vectors: np.ndarray, texts: Sequence[str] | None = None
    ) -> ClassEvent:
        """Teaches a class examples; a label never seen before creates the class at once.

        A provisional (discovered) class that receives labelled examples becomes known.
        """
        vectors = self._check_vectors(vectors)
        texts = list(texts) if texts is not None else [""] * len(vectors)
        class_id = self.resolve(label) or self._retired_named(label)
        if class_id is None:
            if label in self._states:  # merged into a class this store does not hold
                raise StoreError(
                    f"label {label!r} names a class merged into "
                    f"{self._states[label].merged_into!r}, which is not in the store"
                )
            return self.add_class(label, label, vectors, texts, status="known", origin="feedback")
        return self.extend(class_id, vectors, texts, status="known", cause="feedback")

    def add_class(
        self,
        class_id: str,
        name: str,
        vectors: np.ndarray,
        texts: Sequence[str] | None = None,
        *,
        status: ClassStatus,
        origin: ClassOrigin,
        keywords: Sequence[str] = (),
        description: str | None = None,
    ) -> ClassEvent:
        """Creates a class from examples (or, for zero-shot, one description vector).

        Raises:
            StoreError: the id exists already or is reserved.
        """
        if class_id in self._states or class_id == UNKNOWN:
            raise StoreError(f"class id {class_id!r} already exists or is reserved")
        vectors = self._check_vectors(vectors)
        if not len(vectors):
            raise StoreError(f"class {class_id!r} needs at least one example")
        texts = list(texts) if texts is not None else [""] * len(vectors)
        now = self._clock()
        version = self._version + 1
        try:
            empty = ClassState(
                class_id=class_id,
                name=name,
                status=status,
                origin=origin,
                description=description,
                count=0,
                keywords=tuple(keywords),
                created_version=version,
                updated_version=version,
                created_at=now,
                updated_at=now,
            )
        except ValidationError as exc:
            raise StoreError(f"invalid class {class_id!r}: {exc}") from None
        state = self._absorb(empty, _Arrays(None, self._empty(), self._empty()), vectors, texts)
        return self._emit("created", state, cause=origin)

    def register_zero_shot(
        self, name: str, description_vector: np.ndarray, description: str
    ) -> ClassEvent:
        """Registers a class known only by a name and a description's embedding."""
        return self.add_class(
            name,
            name,
            np.asarray(description_vector, np.float32).reshape(1, -1),
            [description],
            status="known",
            origin="zero_shot",
            description=description,
        )

    def extend(
        self,
        class_id: str,
        vectors: np.ndarray,
        texts: Sequence[str] | None = None,
        *,
        status: ClassStatus | None = None,
        keywords: Sequence[str] | None = None,
        cause: str = "feedback",
    ) -> ClassEvent:
        """Adds examples to an existing class (count-weighted mean, reservoir, sub-prototypes)."""
        state = self.get(class_id)
        vectors = self._check_vectors(vectors)
        texts = list(texts) if texts is not None else [""] * len(vectors)
        new = self._absorb(state, self._arrays[class_id], vectors, texts)
        changes: dict[str, Any] = {}
        if status is not None and state.status != "retired":
            changes["status"] = status
        if state.status == "retired":
            changes["status"] = status or "known"
        if keywords is not None:
            changes["keywords"] = tuple(keywords)
        return self._emit("updated", new.model_copy(update=changes), cause=cause)

    def rename(self, class_id: str, name: str) -> ClassEvent:
        """Gives a class a new readable name; the old one stays as an alias."""
        state = self.get(class_id)
        aliases = tuple(dict.fromkeys((*state.aliases, state.name)))
        new = state.model_copy(update={"name": name, "aliases": aliases})
        return self._emit("renamed", new, cause="operator")

    def retire(self, class_id: str) -> ClassEvent:
        """Stops predicting a class; its state is kept (a later label can revive it)."""
        state = self.get(class_id)
        return self._emit(
            "retired", state.model_copy(update={"status": "retired"}), cause="operator"
        )

    def reassert(self, class_id: str, *, cause: str = "recovery") -> ClassEvent:
        """Re-emits a class's current state with a new version.

        A recovering learner uses it when replicas may hold another state of the
        class: the new version supersedes whatever they hold.
        """
        return self._emit("updated", self.get(class_id), cause=cause)

    def merge(self, source_id: str, target_id: str) -> list[ClassEvent]:
        """Folds ``source`` into ``target``: target absorbs its examples, source is retired.

        Returns:
            Two events: ``updated`` for the target, then ``merged`` for the source.
        """
        if source_id == target_id:
            raise StoreError("cannot merge a class into itself")
        source, target = self.get(source_id), self.get(target_id)
        for state in (source, target):
            if state.status == "retired":
                raise StoreError(f"cannot merge: class {state.class_id!r} is retired")
        src = self._arrays[source_id]
        tgt = self._arrays[target_id]
        total = source.count + target.count
        mean = None
        if src.mean is not None and tgt.mean is not None and total:
            mean = (src.mean * source.count + tgt.mean * target.count) / total
        pooled = np.concatenate([tgt.exemplars, src.exemplars])
        pooled_texts = tgt.exemplar_texts + src.exemplar_texts
        rng = self._rng(target_id, total)
        keep = np.sort(rng.permutation(len(pooled))[: self.config.exemplar_capacity])
        aliases = tuple(dict.fromkeys((*target.aliases, source.name, *source.aliases, source_id)))
        exemplars = pooled[keep]
        subs = self._sub_prototypes(exemplars, target_id, total)
        merged_target = self._with_arrays(
            target,
            _Arrays(mean, subs, exemplars, [pooled_texts[i] for i in keep]),
            count=total,
            aliases=aliases,
        )
        first = self._emit("updated", merged_target, cause="merge", related=(source_id,))
        gone = source.model_copy(update={"status": "retired", "merged_into": target_id})
        second = self._emit("merged", gone, cause="merge", related=(target_id,))
        return [first, second]

    def advance_version(self, version: int) -> None:
        """Moves the version forward to at least ``version`` (never back).

        A restarted learner calls it with the highest version on the changelog,
        so that the events it emits next supersede everything published before.
        """
        self._version = max(self._version, int(version))

    # -------------------------------------------------------------- snapshot
    def snapshot(self) -> dict[str, Any]:
        """A plain-data copy of the state (msgpack/JSON-able with the codec's types)."""
        return {
            "format": SNAPSHOT_FORMAT,
            "dim": self.dim,
            "version": self._version,
            "classes": [s.model_dump(mode="json") for s in self._states.values()],
        }

    @classmethod
    def restore(
        cls,
        snapshot: dict[str, Any],
        config: StoreConfig | None = None,
        *,
        clock: Callable[[], float],
        use_gpu: bool = False,
    ) -> PrototypeStore:
        """Rebuilds a store from :meth:`snapshot`.

        Raises:
            SnapshotError: unknown format or inconsistent content.
        """
        try:
            if snapshot["format"] != SNAPSHOT_FORMAT:
                raise SnapshotError(f"snapshot format {snapshot['format']!r} is not supported")
            store = cls(int(snapshot["dim"]), config, clock=clock, use_gpu=use_gpu)
            for raw in snapshot["classes"]:
                state = ClassState.model_validate(raw)
                store._states[state.class_id] = state
                store._arrays[state.class_id] = store._arrays_of(state)
            store._version = int(snapshot["version"])
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError, StoreError) as exc:
            raise SnapshotError(f"invalid snapshot: {exc}") from exc
        return store

    # -------------------------------------------------------------- internals
    def _emit(
        self,
        kind: ClassEventKind,
        state: ClassState,
        *,
        cause: str,
        related: tuple[str, ...] = (),
    ) -> ClassEvent:
        version = self._version + 1
        # model_copy does not validate: rebuild, so the leader never applies a state
        # that a replica (or its own snapshot) would reject.
        try:
            state = ClassState.model_validate(
                {**dict(state), "updated_version": version, "updated_at": self._clock()}
            )
            event = ClassEvent(
                kind=kind,
                class_id=state.class_id,
                state=state,
                store_version=version,
                cause=cause,
                related=related,
            )
        except ValidationError as exc:
            raise StoreError(f"invalid change to class {state.class_id!r}: {exc}") from None
        self.apply(event)
        return event

    def _absorb(
        self, state: ClassState, arrays: _Arrays, vectors: np.ndarray, texts: list[str]
    ) -> ClassState:
        n = len(vectors)
        total = state.count + n
        if n == 0:
            return state
        batch_mean = vectors.mean(axis=0)
        mean = (
            batch_mean
            if arrays.mean is None or state.count == 0
            else (arrays.mean * state.count + batch_mean * n) / total
        )
        rng = self._rng(state.class_id, state.count)
        exemplars, ex_texts = reservoir_add(
            arrays.exemplars,
            arrays.exemplar_texts,
            state.count,
            vectors,
            texts,
            self.config.exemplar_capacity,
            rng,
        )
        subs = self._sub_prototypes(exemplars, state.class_id, total)
        return self._with_arrays(state, _Arrays(mean, subs, exemplars, ex_texts), count=total)

    def _sub_prototypes(self, exemplars: np.ndarray, class_id: str, count: int) -> np.ndarray:
        p = self.config.max_sub_prototypes
        if p <= 0 or len(exemplars) < 4 * p:
            return self._empty()
        from sklearn.cluster import KMeans

        seed = int(self._rng(class_id, count).integers(0, 2**31 - 1))
        km = KMeans(n_clusters=p, n_init=1, random_state=seed).fit(exemplars)
        return l2_normalize(km.cluster_centers_.astype(np.float32))

    def _with_arrays(self, state: ClassState, arrays: _Arrays, **update: Any) -> ClassState:
        return state.model_copy(
            update={
                "mean": None
                if arrays.mean is None
                else tuple(arrays.mean.astype(np.float32).tolist()),
                "sub_prototypes": tuple(tuple(r) for r in arrays.subs.tolist()),
                "exemplars": tuple(tuple(r) for r in arrays.exemplars.tolist()),
                "exemplar_texts": tuple(arrays.exemplar_texts),
                **update,
            }
        )

    def _arrays_of(self, state: ClassState) -> _Arrays:
        mean = None if state.mean is None else to_array(state.mean)
        subs = to_array(state.sub_prototypes, self.dim)
        ex = to_array(state.exemplars, self.dim)
        for name, arr in (("mean", mean), ("sub_prototypes", subs), ("exemplars", ex)):
            if arr is not None and arr.shape[-1] != self.dim:
                raise StoreError(
                    f"class {state.class_id!r}: {name} has dimension {arr.shape[-1]}, "
                    f"the store has {self.dim}"
                )
        texts = list(state.exemplar_texts) + [""] * (len(ex) - len(state.exemplar_texts))
        return _Arrays(mean, subs, ex, texts[: len(ex)])

    def _check_vectors(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise StoreError(f"expected vectors of shape (n, {self.dim}), got {x.shape}")
        if not np.isfinite(x).all():
            raise StoreError("vectors contain NaN or infinity")
        return x

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), np.float32)

    def _rng(self, class_id: str, count: int) -> np.random.Generator:
        digest = hashlib.blake2b(
            f"{self.config.seed}:{class_id}:{count}".encode(), digest_size=8
        ).digest()
        return np.random.default_rng(int.from_bytes(digest, "little"))

    def _cap_discovered(self, ids: list[str], thresholds: np.ndarray, labelled: set[str]) -> None:
        """Caps discovered classes' thresholds (in place) by the labelled classes' ones.

        A discovered class's members are the dense core its clustering kept, so
        their spread understates the class's; its threshold is capped by how wide
        the labelled classes are (the ``discovered_threshold_cap`` quantile).
        """
        q = self.config.discovered_threshold_cap
        if q is None or not labelled:
            return
        cap = float(
            np.quantile([t for t, c in zip(thresholds, ids, strict=True) if c in labelled], q)
        )
        for i, c in enumerate(ids):
            if self._states[c].origin == "discovery":
                thresholds[i] = min(thresholds[i], cap)

    def _compile(self) -> _Compiled:
        if self._compiled is not None and self._compiled.version == self._version:
            return self._compiled
        cfg = self.config
        ids = self.active_ids()
        labelled_ids = [
            k
            for k in ids
            if self._states[k].origin == "feedback" and len(self._arrays[k].exemplars) >= 2
        ]

        def fitter(min_examples: int) -> Callable[[list[np.ndarray]], Metric]:
            def fit(groups: list[np.ndarray]) -> Metric:
                if not groups:
                    return Metric.identity(self.dim)
                return Metric.fit(groups, shrinkage=cfg.metric_shrinkage, min_examples=min_examples)

            return fit

        labelled = [self._arrays[k].exemplars for k in labelled_ids]
        pseudo = [
            self._arrays[k].exemplars
            for k in ids
            if cfg.metric_pseudo_labels
            and self._states[k].origin == "discovery"
            and len(self._arrays[k].exemplars) >= 2
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
            arr = self._arrays[cid]
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
        self._cap_discovered(ids, thresholds, set(labelled_ids))
        thresholds = thresholds - np.float32(cfg.threshold_offset)
        for i, cid in enumerate(ids):
            override = self._states[cid].threshold_override
            if override is not None:
                thresholds[i] = override
        raw_centres = np.zeros((len(ids), self.dim), np.float32)
        raw_thresholds = np.full(len(ids), -1.0, np.float32)
        if cfg.raw_threshold_quantile is not None:
            raw_scores: list[np.ndarray] = []
            for i, cid in enumerate(ids):
                arr = self._arrays[cid]
                raw_centres[i] = l2_normalize(arr.mean) if arr.mean is not None else 0.0
                raw_scores.append(leave_one_out_scores(arr.exemplars))
            raw_thresholds = calibrate_thresholds(
                raw_scores,
                quantile=cfg.raw_threshold_quantile,
                min_examples=cfg.min_calibration_examples,
                default=-1.0,
            )
            self._cap_discovered(ids, raw_thresholds, set(labelled_ids))
        index = VectorIndex.build(
            np.concatenate(rows) if rows else np.zeros((0, self.dim), np.float32),
            use_gpu=self._use_gpu,
            approximate_above=cfg.approximate_above,
            nprobe=cfg.nprobe,
        )
        self._compiled = _Compiled(
            self._version,
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
        return self._compiled


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
