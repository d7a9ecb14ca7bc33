"""The Curator: the store's single writer.

The learner holds the only one: it takes in labelled feedback (new classes and
examples), the unknowns the stream workers report (buffered for discovery),
what the workers labelled (item cache and drift), runs discovery and adopts
what it finds, and turns every change into class events for the changelog
that the stream workers' :class:`~.labeler.Labeler` replicas apply.

Example:
    >>> from streamlabel.schemas import Feedback
    >>> from streamlabel.testing import HashEmbedder, ManualClock
    >>> curator = Curator(load_settings(), HashEmbedder(), clock=ManualClock(0))
    >>> out = curator.learn([Feedback(text="python list sort", label="python")])
    >>> [e.kind for e in out.class_events], curator.version
    (['created'], 1)
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamlabel.core.buffer import UnknownBuffer
from streamlabel.core.discovery import Discoverer
from streamlabel.core.embedder import Embedder, l2_normalize
from streamlabel.core.store import PrototypeStore
from streamlabel.errors import DecodeError, EmbeddingError, SnapshotError, StoreError
from streamlabel.pipeline.batch import (
    MODEL_FAILED,
    dead_letter,
    decode_feedback,
    embed_texts,
    too_long,
    wrong_dim,
)
from streamlabel.pipeline.cache import CachedItem, ItemCache
from streamlabel.pipeline.command_log import CommandLog
from streamlabel.pipeline.discovery_job import DiscoveryJob, adopt_report
from streamlabel.pipeline.drift import DriftWatch
from streamlabel.pipeline.inputs import RawRecord
from streamlabel.pipeline.labeler import apply_events, store_for
from streamlabel.pipeline.output import EngineOutput, Observed
from streamlabel.pipeline.pending import PendingFeedback
from streamlabel.pipeline.relabel import Reviser
from streamlabel.schemas import UNKNOWN, ClassEvent, ClassState, Feedback, UnknownRecord
from streamlabel.settings.engine import EngineSettings, load_settings

__all__ = ["STATE_FORMAT", "Curator", "DiscoveryJob", "load_settings"]

STATE_FORMAT = 1


@dataclass(frozen=True)
class _Example:
    vector: np.ndarray
    text: str
    feedback: Feedback
    raw: RawRecord | None


class Curator:
    """Learns from feedback and the stream; the only code that changes the store.

    Args:
        settings: validated settings (see :func:`load_settings`).
        embedder: embeds feedback texts and zero-shot descriptions.
        clock: epoch seconds; inject a settable clock in tests.
        store: the store to write (shared with a labeler in one process); a new one otherwise.
        cache: the item cache (shared with a labeler in one process); a new one otherwise.
        incarnation: which run of the learner this is (its start), so drift alert ids
            do not repeat after a restart; empty in one process (see :class:`DriftWatch`).
    """

    def __init__(
        self,
        settings: EngineSettings,
        embedder: Embedder,
        *,
        clock: Callable[[], float] = time.time,
        store: PrototypeStore | None = None,
        cache: ItemCache | None = None,
        incarnation: str = "",
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self._clock = clock
        self.store = store_for(settings, embedder, clock, store)
        self.cache = cache if cache is not None else ItemCache(settings.limits.max_item_cache)
        disc = settings.discovery
        self.buffer = UnknownBuffer(disc.buffer_capacity, embedder.dim)
        self.discoverer = Discoverer(disc.to_config(settings.seed))
        self.drift = DriftWatch.of(settings.drift, seed=settings.seed, clock=clock,
                                   incarnation=incarnation)  # fmt: skip
        self.pending = PendingFeedback(settings.limits.max_pending_feedback,
                                       wait_s=settings.limits.feedback_wait_s)  # fmt: skip
        self._unknowns_since_run = 0
        self.commands = CommandLog()  # results and audit of the commands applied

    # ------------------------------------------------------------- reading
    @property
    def version(self) -> int:
        """The store's version (the version of its latest change)."""
        return self.store.version

    def classes(self) -> dict[str, ClassState]:
        """Every class by id (retired ones included)."""
        return self.store.states()

    def _reviser(self) -> Reviser:
        return Reviser(self.store, self.cache, self._clock, self.embedder.model_id)

    # ------------------------------------------------------------- the stream
    def take(self, out: EngineOutput) -> EngineOutput:
        """Takes in a batch labelled by a labeler in this process: its unknowns, its drift,
        the feedback waiting for its items.

        The labeler shares this curator's item cache, so unlike :meth:`absorb`
        the unknowns are buffered as they are.
        """
        if out.unknowns and self.settings.discovery.enabled:
            self._buffer(
                out.unknowns, np.stack([np.asarray(u.vector, np.float32) for u in out.unknowns])
            )
        if out.observed is not None:
            out.alerts.extend(self.drift.watch(out.observed, self.store.version))
            out.extend(self._resolve(out.observed.item_ids))
        return out.extend(self.settle_feedback())

    def observe(self, observed: Observed) -> EngineOutput:
        """Takes in items labelled elsewhere (by a stream worker): cache and drift.

        The item cache then resolves feedback by id (feedback that was waiting
        for these items is applied now) and the relabelling of recent items
        after a discovery; the drift detectors watch the rows marked for them.
        """
        for i, item_id in enumerate(observed.item_ids):
            if self.cache.revised_past(item_id, observed.revisions[i]):
                continue  # the learner already revised it
            self.cache.remember(
                item_id,
                np.asarray(observed.vectors[i], np.float32),
                observed.texts[i],
                observed.labels[i],
                observed.revisions[i],
            )
        out = EngineOutput(alerts=self.drift.watch(observed, self.store.version))
        return out.extend(self._resolve(observed.item_ids))

    def absorb(self, unknowns: Sequence[UnknownRecord]) -> EngineOutput:
        """Buffers unknown items reported by stream workers for discovery.

        An item a worker rejected with an older store version than the current
        one is classified again first; if a class now accepts it, it gets a
        revised label (reason ``reclassified``) instead of being buffered.
        """
        out = EngineOutput()
        # An item already revised past this report (e.g. by feedback) stays as revised.
        unknowns = [u for u in unknowns if not self.cache.revised_past(u.item_id, u.revision)]
        dim = self.embedder.dim
        for u in (u for u in unknowns if len(u.vector) != dim):  # decode_unknowns catches these
            dead_letter(
                out, None, u, "bad_vector", wrong_dim(len(u.vector), dim), key=u.item_id.encode()
            )
        unknowns = [u for u in unknowns if len(u.vector) == dim]
        if not unknowns:
            return out
        vectors = l2_normalize(np.stack([np.asarray(u.vector, np.float32) for u in unknowns]))
        revised, keep = self._reviser().reclassify(unknowns, vectors)
        out.labels.extend(revised)
        rows = [int(i) for i in np.flatnonzero(keep)]
        for i in rows:
            u = unknowns[i]
            self.cache.remember(u.item_id, vectors[i], u.text, UNKNOWN, u.revision)
        if rows and self.settings.discovery.enabled:
            self._buffer([unknowns[i] for i in rows], vectors[rows])
        return out.extend(self._resolve(unknowns[i].item_id for i in rows))

    def _buffer(self, unknowns: Sequence[UnknownRecord], vectors: np.ndarray) -> None:
        self.buffer.add(
            [u.item_id for u in unknowns], vectors, [u.text for u in unknowns],
            [u.revision for u in unknowns],
        )  # fmt: skip
        self._unknowns_since_run += len(unknowns)

    # ------------------------------------------------------------- feedback
    def learn(self, feedback: Iterable[Feedback | RawRecord]) -> EngineOutput:
        """Class-incremental update from labelled examples.

        Examples are grouped by label; each label yields one class event (a new
        label creates its class at once). Feedback naming a seen or buffered
        item relabels it (a revision with reason ``feedback``); feedback naming
        an item not seen yet waits for it (see :meth:`settle_feedback`).
        """
        out = self.settle_feedback()
        by_label: dict[str, list[_Example]] = {}
        to_embed: list[tuple[Feedback, RawRecord | None]] = []
        for entry in feedback:
            fb, raw = decode_feedback(entry, self.settings.limits, out)
            if fb is None:
                continue
            if fb.text is not None and len(fb.text) > self.settings.limits.max_text_chars:
                dead_letter(out, raw, fb, "oversized", too_long(fb.text, self.settings.limits))
                continue
            if fb.vector is None and fb.text is not None:
                to_embed.append((fb, raw))
            elif (example := self._example(fb, raw, out)) is not None:
                by_label.setdefault(fb.label, []).append(example)
        if to_embed:
            vecs = embed_texts(self.embedder, [fb.text or "" for fb, _ in to_embed])
            for (fb, raw), vec in zip(to_embed, vecs, strict=True):
                if vec is None:
                    dead_letter(out, raw, fb, "embedding", MODEL_FAILED)
                    continue
                by_label.setdefault(fb.label, []).append(_Example(vec, fb.text or "", fb, raw))
        return self._teach(by_label, out)

    def _teach(self, by_label: dict[str, list[_Example]], out: EngineOutput) -> EngineOutput:
        """Teaches the store each label's examples; revises the items they name."""
        assigned: dict[str, str] = {}
        for label, examples in by_label.items():
            try:
                event = self.store.learn(
                    label, np.stack([e.vector for e in examples]), [e.text for e in examples]
                )
            except StoreError as exc:  # this label only; the others still apply
                for e in examples:
                    dead_letter(out, e.raw, e.feedback, "rejected", str(exc))
                continue
            out.class_events.append(event)
            for e in examples:
                if e.feedback.item_id is not None:
                    assigned[e.feedback.item_id] = event.class_id
        out.labels.extend(self._reviser().named(self.buffer, assigned))
        return out

    def _example(self, fb: Feedback, raw: RawRecord | None, out: EngineOutput) -> _Example | None:
        """The example of a feedback record that carries its vector or names an item
        (None: it was dead-lettered, or it waits for its item)."""
        if fb.vector is not None:
            vec = np.asarray(fb.vector, np.float32)
            if vec.shape != (self.embedder.dim,):
                dead_letter(out, raw, fb, "bad_vector", "feedback vector has the wrong dimension")
                return None
            return _Example(l2_normalize(vec), fb.text or "", fb, raw)
        if fb.item_id is not None and fb.item_id not in self.pending:  # else after those
            cached = self.cache.get(fb.item_id) or self._recall(fb.item_id)
            if cached is not None:
                return _Example(cached.vector, cached.text or "", fb, raw)
        self.pending.hold(fb, raw, now=self._clock(), out=out)  # or dead-letters it
        return None

    def settle_feedback(self) -> EngineOutput:
        """Dead-letters (``unresolvable``) the feedback that waited ``limits.feedback_wait_s``
        for an item that never came."""
        out = EngineOutput()
        self.pending.expire(self._clock(), out)
        return out

    def _resolve(self, item_ids: Iterable[str]) -> EngineOutput:
        """Applies the feedback that waited for any of these (now cached) items."""
        out = EngineOutput()
        by_label: dict[str, list[_Example]] = {}
        for w in self.pending.take(item_ids):
            cached = self.cache.get(w.item_id) or self._recall(w.item_id)
            if cached is None:  # not kept after all (a cache of capacity 0)
                error = f"item {w.item_id!r} is not in the cache"
                dead_letter(out, w.raw, w.feedback, "unresolvable", error)
                continue
            example = _Example(cached.vector, cached.text or "", w.feedback, w.raw)
            by_label.setdefault(w.feedback.label, []).append(example)
        return self._teach(by_label, out) if by_label else out

    def _recall(self, item_id: str) -> CachedItem | None:
        """An unknown still buffered but evicted from the item cache, put back in the cache."""
        found = self.buffer.get(item_id)
        if found is None:
            return None
        vector, text, revision = found
        self.cache.remember(item_id, vector, text, UNKNOWN, revision)
        return self.cache.get(item_id) or CachedItem(vector, text, UNKNOWN, revision)

    # ------------------------------------------------------------- discovery
    def discovery_due(self) -> bool:
        """True when ``discovery.run_every`` new unknowns have arrived since the last run."""
        disc = self.settings.discovery
        return disc.enabled and self._unknowns_since_run >= disc.run_every

    def discover(self) -> EngineOutput:
        """One discovery run, here and now: new classes and extended ones, then relabel."""
        self._unknowns_since_run = 0
        report = self.discoverer.run(self.buffer, self.store)
        return adopt_report(report, self.store, self.buffer, self._reviser())

    def begin_discovery(self) -> DiscoveryJob:
        """Freezes copies of the buffer and store for a (background) discovery run."""
        self._unknowns_since_run = 0
        store = PrototypeStore.restore(
            self.store.snapshot(), self.store.config, clock=self._clock, use_gpu=False
        )
        return DiscoveryJob(self.buffer.copy(), store, copy.deepcopy(self.discoverer))

    def keep_candidates(self, job: DiscoveryJob) -> bool:
        """Takes a finished job's candidates (and the ids they carry) without adopting.

        A caller that checkpoints between this and :meth:`finish_discovery` can
        lose the adoption to a crash but not the ids: the restored discoverer
        matches the same clusters to the same candidates.

        Returns:
            True when the run found a new class (so a checkpoint is worth it).

        Raises:
            ValueError: the job has not run.
        """
        if job.report is None:
            raise ValueError("the discovery job has not run")
        self.discoverer = job.discoverer
        return any(not f.extends for f in job.report.findings)

    def finish_discovery(self, job: DiscoveryJob) -> EngineOutput:
        """Adopts a finished job's findings as classes and relabels the items they explain.

        The job's discoverer (it carries the run's candidates) replaces the Curator's.

        Raises:
            ValueError: the job has not run.
        """
        if job.report is None:
            raise ValueError("the discovery job has not run")
        self.discoverer = job.discoverer
        return adopt_report(job.report, self.store, self.buffer, self._reviser())

    # ------------------------------------------------------------- by a person
    def register_zero_shot(self, name: str, description: str) -> EngineOutput:
        """Creates a class known only by a name and a description (embedded by the model)."""
        vector = embed_texts(self.embedder, [description])[0]
        if vector is None:
            raise EmbeddingError(f"the model failed on the description of {name!r}")
        return EngineOutput(class_events=[self.store.register_zero_shot(name, vector, description)])

    def rename(self, class_id: str, name: str) -> EngineOutput:
        """Gives a class (typically a discovered one) a readable name chosen by a person."""
        return EngineOutput(class_events=[self.store.rename(class_id, name)])

    def merge(self, source_id: str, target_id: str) -> EngineOutput:
        """Folds one class into another (e.g. discovery split a class in two)."""
        return EngineOutput(class_events=self.store.merge(source_id, target_id))

    def retire(self, class_id: str) -> EngineOutput:
        """Stops predicting a class."""
        return EngineOutput(class_events=[self.store.retire(class_id)])

    # ------------------------------------------------------------- recovery
    def replay(self, events: Iterable[ClassEvent]) -> int:
        """Rebuilds the store from changelog events (no snapshot); returns how many changed
        it (an event the store refuses is skipped and logged)."""
        return apply_events(self.store, events)

    def advance_version(self, version: int) -> None:
        """Moves the store's version past ``version`` (the highest the changelog holds)."""
        self.store.advance_version(version)

    def reassert_all(self, cause: str) -> EngineOutput:
        """Re-publishes every class (e.g. the broker lost the changelog)."""
        states = self.store.states()
        return EngineOutput(class_events=[self.store.reassert(c, cause=cause) for c in states])

    def reconcile(self, events: list[ClassEvent]) -> EngineOutput:
        """Events that make the replicas (which hold the changelog) match the restored store.

        A class whose latest changelog state differs from the store's is re-asserted
        with a new version; a class on the changelog that the store does not have
        (a snapshot older than the changelog) is retired.
        """
        latest: dict[str, ClassEvent] = {}
        for event in events:
            current = latest.get(event.class_id)
            if current is None or event.state.updated_version >= current.state.updated_version:
                latest[event.class_id] = event
        states = self.store.states()
        out = EngineOutput()
        for class_id, state in states.items():
            seen = latest.get(class_id)
            if seen is None or seen.state != state:
                out.class_events.append(self.store.reassert(class_id))
        for class_id, event in latest.items():
            missing = class_id not in states and event.state.status != "retired"
            if missing and apply_events(self.store, [event]):  # else refused (and logged)
                out.class_events.append(self.store.retire(class_id))
        return out

    # ------------------------------------------------------------- snapshot
    def state(self) -> dict[str, Any]:
        """Plain data (msgpack-able) for a snapshot: store, unknown buffer, discovery, the
        feedback waiting for its items, the commands applied.

        Drift detectors and the item cache are not included: detectors warm up
        again after a restore, and the cache refills from the stream.
        """
        return {
            "format": STATE_FORMAT,
            "store": self.store.snapshot(),
            "buffer": self.buffer.state(),
            "discoverer": self.discoverer.state(),
            "unknowns_since_run": self._unknowns_since_run,
            "pending": self.pending.state(),
            "commands": self.commands.state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state` (the embedder's dimension must match).

        Replaces the store object: a labeler sharing the old one must take the new one.

        Raises:
            SnapshotError: the state is of another format or does not fit.
        """
        if not isinstance(state, dict):
            raise SnapshotError(f"engine state must be a map, got {type(state).__name__}")
        try:
            if state.get("format") != STATE_FORMAT:
                raise SnapshotError(f"engine state format {state.get('format')!r} is not supported")
            s = self.settings
            store = PrototypeStore.restore(
                state["store"], s.store.to_config(s.seed), clock=self._clock,
                use_gpu=s.store.use_gpu,
            )  # fmt: skip
            if store.dim != self.embedder.dim:
                raise SnapshotError(
                    f"snapshot dimension {store.dim} != embedder dimension {self.embedder.dim}"
                )
            buffer = UnknownBuffer(s.discovery.buffer_capacity, store.dim)
            buffer.load(state["buffer"])
            discoverer = Discoverer(self.discoverer.config)
            discoverer.load(state["discoverer"])
            pending = PendingFeedback(self.pending.capacity, wait_s=self.pending.wait_s)
            pending.load(state.get("pending", []))
            (commands := CommandLog(self.commands.capacity)).load(state.get("commands"))
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, DecodeError) as exc:
            raise SnapshotError(f"invalid engine state: {exc}") from exc
        self.store, self.buffer, self.discoverer = store, buffer, discoverer
        self.pending, self.commands = pending, commands
        self._unknowns_since_run = int(state.get("unknowns_since_run", 0))
