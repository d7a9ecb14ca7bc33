"""The prototype store: classes as prototypes in a learned metric space, searched with FAISS.

State is a map ``class_id -> ClassState`` plus a version. The ONLY way state
changes is :meth:`PrototypeStore.apply` of a :class:`ClassEvent` that carries the
class's full new state; the learner-side methods (:meth:`learn`, :meth:`add_class`,
:meth:`rename`, :meth:`merge`, :meth:`split_off`, :meth:`set_threshold`,
:meth:`retire`) compute that state, apply it and return the events so they can
be published. A replica that applies the same events (or only the last event
per class, as a compacted topic keeps) holds the same store.

Everything derived (prototype rows, thresholds, FAISS index) is a pure function
of the class states and the metric fit in force (:func:`~streamlabel.core.compiled.compile_store`),
kept up to date one class per event by :class:`~streamlabel.core.derived_view.DerivedView`;
the metric refits on a schedule of versions (:mod:`streamlabel.core.metric_fit`).
A class's vectors are unpacked and updated by :mod:`streamlabel.core.class_arrays`;
the store's snapshot is written and read by :mod:`streamlabel.core.store_snapshot`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import ValidationError

from streamlabel.core.aliases import resolve, retired_named
from streamlabel.core.class_arrays import (
    ClassArrays,
    absorb,
    arrays_of,
    check_vectors,
    empty_arrays,
    pooled,
    with_arrays,
    without,
)
from streamlabel.core.compiled import Classification, CompiledStore
from streamlabel.core.derived_view import DerivedView
from streamlabel.core.metric import Metric
from streamlabel.core.name_index import NameIndex
from streamlabel.core.store_config import StoreConfig
from streamlabel.core.store_snapshot import from_snapshot, to_snapshot
from streamlabel.errors import StoreError
from streamlabel.schemas import UNKNOWN, ClassEvent, ClassEventKind, ClassState
from streamlabel.schemas.records import ClassOrigin, ClassStatus

__all__ = ["Classification", "PrototypeStore", "StoreConfig"]


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
        self._arrays: dict[str, ClassArrays] = {}
        self._names = NameIndex()
        self._version = 0
        self._view = DerivedView(self._states, self._arrays, self.config, dim=dim, use_gpu=use_gpu)

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

    def resolve(self, name: str) -> str | None:
        """The active class a label refers to: by id, name or alias; follows merges."""
        if name in self._states:
            return resolve(self._states, name)
        return resolve(self._names.named(self._states, name), name)

    @property
    def metric(self) -> Metric:
        """The metric in use (learned from the labelled classes)."""
        return self._compile().metric

    def thresholds(self) -> dict[str, float]:
        """The open-set threshold of every active class."""
        c = self._compile()
        return {cid: float(t) for cid, t in zip(c.class_ids, c.thresholds, strict=True)}

    @property
    def metric_version(self) -> int:
        """The store version whose states the metric in force was fitted on (0: none)."""
        return self._compile().fit.version

    @property
    def classes_derived(self) -> int:
        """Classes derived so far: a class event derives its class, a refit every class."""
        return self._view.classes_derived

    def member_score_quantile(self, class_id: str, q: float) -> float | None:
        """The ``q`` quantile of a class's examples' similarities to it (None without examples)."""
        scores = self._compile().member_scores(class_id)
        if scores is None:
            raise StoreError(f"no active class {class_id!r}")
        return float(np.quantile(scores, q)) if len(scores) else None

    def refresh(self) -> None:
        """Brings the derived view up to date now, as the next read would (a learner may call
        it when idle, so that the next classification does not pay for it)."""
        self._compile()

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Maps raw embeddings into the metric space."""
        return self._compile().metric.apply(vectors)

    def classify(self, vectors: np.ndarray) -> Classification:
        """Finds the nearest classes of raw embeddings ``(n, dim)`` and applies the thresholds."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise StoreError(f"expected vectors of shape (n, {self.dim}), got {x.shape}")
        return self._compile().classify(x, self.config.top_k)

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
        cid = event.class_id
        arrays = arrays_of(state, self.dim)
        before = None if current is None else (current, self._arrays[cid])
        self._names.remove(current)
        self._states[cid] = state
        self._arrays[cid] = arrays
        self._names.add(state)
        previous, self._version = self._version, max(self._version, event.store_version)
        self._view.changed(cid, before, (state, arrays), previous, self._version)
        return True

    # --------------------------------------------------- learner-side writes
    def learn(
        self, label: str, vectors: np.ndarray, texts: Sequence[str] | None = None
    ) -> ClassEvent:
        """Teaches a class examples; a label never seen before creates the class at once.

        A provisional (discovered) class that receives labelled examples becomes known.
        """
        vectors = check_vectors(vectors, self.dim)
        texts = list(texts) if texts is not None else [""] * len(vectors)
        named = self._names.named(self._states, label)
        class_id = self.resolve(label) or retired_named(named, label)
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
        cause: str | None = None,
    ) -> ClassEvent:
        """Creates a class from examples (or, for zero-shot, one description vector); the
        event's ``cause`` is ``cause``, else ``origin``.

        Raises:
            StoreError: the id exists already or is reserved, or the store holds
                ``max_classes`` classes.
        """
        if class_id in self._states or class_id == UNKNOWN:
            raise StoreError(f"class id {class_id!r} already exists or is reserved")
        cap = self.config.max_classes
        if cap is not None and len(self._states) >= cap:
            raise StoreError(
                f"store.max_classes={cap} reached: cannot create class {class_id!r} "
                f"(the store holds {len(self._states)} classes, retired ones included)"
            )
        vectors = check_vectors(vectors, self.dim)
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
        state = absorb(
            empty, empty_arrays(self.dim), vectors, texts, config=self.config, dim=self.dim
        )
        return self._emit("created", state, cause=cause or origin)

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
        vectors = check_vectors(vectors, self.dim)
        texts = list(texts) if texts is not None else [""] * len(vectors)
        new = absorb(
            state, self._arrays[class_id], vectors, texts, config=self.config, dim=self.dim
        )
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

    def set_threshold(self, class_id: str, threshold: float | None) -> ClassEvent:
        """Fixes a class's open-set threshold (in the metric space; the raw-space gate
        still applies); None gives it back its calibrated threshold.

        Raises:
            StoreError: no such class, or ``threshold`` is not a number in [-1, 1].
        """
        if threshold is not None and not -1.0 <= threshold <= 1.0:  # NaN fails too
            raise StoreError(f"a threshold is a number in [-1, 1], not {threshold!r}")
        override = None if threshold is None else float(threshold)
        new = self.get(class_id).model_copy(update={"threshold_override": override})
        return self._emit("threshold_set", new, cause="operator")

    def split_off(
        self, source_id: str, class_id: str, vectors: np.ndarray, texts: Sequence[str]
    ) -> list[ClassEvent]:
        """Moves items out of ``source`` into a new known class ``class_id`` (also its name)
        whose examples they are; the source loses those that were its examples
        (see :func:`~streamlabel.core.class_arrays.without`).

        Returns:
            Two events: ``created`` for the new class, then ``updated`` for the source.

        Raises:
            StoreError: the source is retired or would be left without an example,
                or the new class cannot be created (see :meth:`add_class`).
        """
        source = self.get(source_id)
        if source.status == "retired":
            raise StoreError(f"cannot split: class {source_id!r} is retired")
        # the source's new state first: a refusal leaves the store as it was
        rest = without(source, self._arrays[source_id], vectors, config=self.config, dim=self.dim)
        created = self.add_class(
            class_id, class_id, vectors, texts, status="known", origin="feedback", cause="split"
        )
        return [created, self._emit("updated", rest, cause="split", related=(class_id,))]

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
        arrays = pooled(
            source,
            self._arrays[source_id],
            target,
            self._arrays[target_id],
            config=self.config,
            dim=self.dim,
        )
        aliases = tuple(dict.fromkeys((*target.aliases, source.name, *source.aliases, source_id)))
        merged_target = with_arrays(
            target, arrays, count=source.count + target.count, aliases=aliases
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
        """The state as plain data msgpack can pack: vectors as float32 bytes, as on the wire."""
        return to_snapshot(self)

    @classmethod
    def restore(
        cls,
        snapshot: dict[str, Any],
        config: StoreConfig | None = None,
        *,
        clock: Callable[[], float],
        use_gpu: bool = False,
    ) -> PrototypeStore:
        """Rebuilds a store from :meth:`snapshot` (or an older form, see
        :mod:`~streamlabel.core.store_snapshot`).

        Raises:
            SnapshotError: unknown format or inconsistent content.
        """
        return from_snapshot(cls, snapshot, config, clock=clock, use_gpu=use_gpu)

    # -------------------------------------------------------------- internals
    def _emit(
        self, kind: ClassEventKind, state: ClassState, *, cause: str, related: tuple[str, ...] = ()
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

    def _compile(self) -> CompiledStore:
        """The read view, brought up to date (see :class:`DerivedView`)."""
        return self._view.compiled(self.config)
