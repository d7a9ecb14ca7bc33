"""The Engine: one batch of raw items in; labels, unknowns, events, alerts, dead letters out.

The Engine is the whole open-world classifier without any I/O: the stream
workers and the learner of :mod:`streamlabel.workers` wrap it with Kafka and
Ray, and the benchmark drives it directly. It owns

* the embedder (items that carry a vector skip it),
* the :class:`~streamlabel.core.store.PrototypeStore` (class-incremental: a label
  never seen before becomes a class at once),
* the unknown buffer and the :class:`~streamlabel.core.discovery.Discoverer`
  (novel classes found in the background relabel the items they explain),
* the drift detectors.

Example:
    >>> from streamlabel.schemas import Feedback, Item
    >>> from streamlabel.testing import HashEmbedder, ManualClock
    >>> engine = Engine(load_settings(), HashEmbedder(), clock=ManualClock(0))
    >>> _ = engine.learn([Feedback(text="python list sort", label="python"),
    ...                   Feedback(text="java string split", label="java")])
    >>> out = engine.process([Item(id="1", text="sort a python list")])
    >>> out.labels[0].label
    'python'
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import structlog

from streamlabel.core.discovery import Discoverer, DiscoveryReport, UnknownBuffer, adopt
from streamlabel.core.drift import DriftDetector, DriftObservation, DriftSignal, default_detectors
from streamlabel.core.embedder import Embedder, l2_normalize
from streamlabel.core.store import Classification, PrototypeStore
from streamlabel.errors import DecodeError, EmbeddingError, SnapshotError, StoreError
from streamlabel.pipeline.inputs import RawRecord
from streamlabel.pipeline.output import EngineOutput, Observed
from streamlabel.schemas import (
    UNKNOWN,
    ClassEvent,
    DeadLetter,
    DriftAlert,
    Feedback,
    Item,
    LabelRecord,
    ScoredClass,
    SourceRef,
    UnknownRecord,
    decode,
    encode,
)
from streamlabel.settings.engine import EngineSettings, load_settings

__all__ = ["DiscoveryJob", "EmbeddedTexts", "Engine", "PreparedBatch", "load_settings"]

STATE_FORMAT = 1

log = structlog.get_logger(__name__)

R = TypeVar("R", Item, Feedback)


@dataclass(frozen=True)
class _Decoded:
    item: Item
    source: SourceRef | None
    raw: RawRecord | None = None  # the consumed message, for a dead letter


@dataclass(frozen=True)
class _Example:
    vector: np.ndarray
    text: str
    feedback: Feedback
    raw: RawRecord | None


@dataclass(frozen=True)
class PreparedBatch:
    """A decoded batch waiting for its embeddings (:meth:`Engine.prepare`).

    Attributes:
        texts: the texts the model must embed (items that carry a vector skip it).
        out: the batch's output so far (dead letters of undecodable records).
        decode_s: seconds spent decoding.
    """

    decoded: list[_Decoded]
    texts: list[str]
    out: EngineOutput
    decode_s: float


@dataclass(frozen=True)
class EmbeddedTexts:
    """The model's output for a prepared batch (:meth:`Engine.embed`): one unit
    vector per text, None where the model failed on the text."""

    vectors: list[np.ndarray | None]
    seconds: float


@dataclass
class DiscoveryJob:
    """One discovery run over frozen copies of the buffer, the store and the discoverer.

    :meth:`run` touches nothing the Engine uses, so it can run in a background
    thread while the Engine goes on; then hand the job to
    :meth:`Engine.finish_discovery` on the Engine's own thread.
    """

    buffer: UnknownBuffer
    store: PrototypeStore
    discoverer: Discoverer
    report: DiscoveryReport | None = None

    def run(self) -> DiscoveryReport:
        """Clusters the copied buffer against the copied store (keeps the report)."""
        self.report = self.discoverer.run(self.buffer, self.store)
        return self.report


@dataclass
class _Cached:
    vector: np.ndarray
    text: str | None
    label: str
    revision: int


class Engine:
    """The open-world classifier, batch in, records out.

    Args:
        settings: validated settings (see :func:`load_settings`).
        embedder: text embedder; its ``dim`` fixes the store's dimension.
        clock: epoch seconds; inject a settable clock in tests.
        store: an existing store (e.g. restored from a snapshot); a new one otherwise.
    """

    def __init__(
        self,
        settings: EngineSettings,
        embedder: Embedder,
        *,
        clock: Callable[[], float] = time.time,
        store: PrototypeStore | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self._clock = clock
        dim = embedder.dim
        self.store = store or PrototypeStore(
            dim,
            settings.store.to_config(settings.seed),
            clock=clock,
            use_gpu=settings.store.use_gpu,
        )
        if self.store.dim != dim:
            raise StoreError(f"store dimension {self.store.dim} != embedder dimension {dim}")
        disc = settings.discovery
        self.buffer = UnknownBuffer(disc.buffer_capacity, dim)
        self.discoverer = Discoverer(disc.to_config(settings.seed))
        self.detectors: list[DriftDetector] = (
            default_detectors(seed=settings.seed) if settings.drift.enabled else []
        )
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._unknowns_since_run = 0

    # ------------------------------------------------------------- the stream
    def process(self, batch: Sequence[RawRecord | Item]) -> EngineOutput:
        """Labels one batch. Raw records are decoded; bad ones become dead letters.

        Runs discovery afterwards when ``discovery.run_every`` new unknowns have
        accumulated (the Ray learner runs it in the background instead).
        ``process(b)`` is ``finish(p, embed(p))`` with ``p = prepare(b)``; a stream
        worker calls the three itself to run the model while it does Kafka I/O.
        """
        prepared = self.prepare(batch)
        return self.finish(prepared, self.embed(prepared))

    def prepare(self, batch: Sequence[RawRecord | Item]) -> PreparedBatch:
        """Decodes and validates a batch (bad records become dead letters)."""
        out = EngineOutput()
        t0 = time.perf_counter()
        decoded = self._decode(batch, out)
        texts = [d.item.text or "" for d in decoded if d.item.vector is None]
        return PreparedBatch(decoded, texts, out, time.perf_counter() - t0)

    def embed(self, prepared: PreparedBatch) -> EmbeddedTexts:
        """Runs the model on a prepared batch's texts.

        Touches nothing but the embedder, so it may run on another thread while
        this Engine applies class events or finishes the previous batch (one
        call at a time: the embedder is not shared between concurrent calls).
        """
        t0 = time.perf_counter()
        vectors = self._embed_texts(prepared.texts) if prepared.texts else []
        return EmbeddedTexts(vectors, time.perf_counter() - t0)

    def finish(self, prepared: PreparedBatch, embedded: EmbeddedTexts) -> EngineOutput:
        """Classifies an embedded batch against the store as it is now; emits its records."""
        out = prepared.out
        vectors, decoded = self._assemble(prepared.decoded, embedded.vectors, out)
        t0 = time.perf_counter()
        result = self.store.classify(vectors)
        classify_s = time.perf_counter() - t0
        out.stage_s = {
            "decode": prepared.decode_s, "embed": embedded.seconds, "classify": classify_s,
        }  # fmt: skip
        n = max(len(decoded), 1)
        timings = {stage: seconds * 1e3 / n for stage, seconds in out.stage_s.items()}
        self._emit_labels(decoded, vectors, result, timings, out)
        if self.detectors and out.observed is not None and len(out.observed):
            out.alerts.extend(self._detect(out.observed))
        if self.discovery_due():
            out.extend(self.discover())
        return out

    def observe(self, observed: Observed) -> EngineOutput:
        """Takes in items labelled elsewhere (by a stream worker): cache and drift.

        The learner calls it with what the workers labelled: the item cache then
        resolves feedback by id and the relabelling of recent items after a
        discovery, and the drift detectors watch the whole stream.
        """
        out = EngineOutput()
        for i, item_id in enumerate(observed.item_ids):
            seen = self._cache.get(item_id)
            if seen is not None and seen.revision > observed.revisions[i]:
                continue  # the learner already revised it
            self._remember(
                item_id,
                np.asarray(observed.vectors[i], np.float32),
                observed.texts[i],
                observed.labels[i],
                observed.revisions[i],
            )
        if self.detectors and len(observed):
            out.alerts.extend(self._detect(observed))
        return out

    def absorb(self, unknowns: Sequence[UnknownRecord]) -> EngineOutput:
        """Buffers unknown items reported by stream workers for discovery.

        An item a worker rejected with an older store version than the current
        one is classified again first; if a class now accepts it, it gets a
        revised label (reason ``reclassified``) instead of being buffered.
        """
        out = EngineOutput()
        # An item already revised past this report (e.g. by feedback) stays as revised.
        unknowns = [u for u in unknowns if not self._revised_past(u.item_id, u.revision)]
        if not unknowns:
            return out
        vectors = l2_normalize(np.stack([np.asarray(u.vector, np.float32) for u in unknowns]))
        keep = np.ones(len(unknowns), bool)
        stale = [i for i, u in enumerate(unknowns) if u.store_version < self.store.version]
        if stale and self.store.active_ids():
            result = self.store.classify(vectors[stale])
            now, version, model_id = self._clock(), self.store.version, self.embedder.model_id
            for row, i in enumerate(stale):
                if not result.accepted[row]:
                    continue
                u = unknowns[i]
                record = self._label_record(
                    result, row, u.item_id, now, version, model_id, u.revision + 1,
                    reason="reclassified", source=u.source,
                )  # fmt: skip
                out.labels.append(record)
                self._remember(u.item_id, vectors[i], u.text, record.label, record.revision)
                keep[i] = False
        rows = [int(i) for i in np.flatnonzero(keep)]
        for i in rows:
            u = unknowns[i]
            self._remember(u.item_id, vectors[i], u.text, UNKNOWN, u.revision)
        if rows and self.settings.discovery.enabled:
            self.buffer.add(
                [unknowns[i].item_id for i in rows],
                vectors[rows],
                [unknowns[i].text for i in rows],
                [unknowns[i].revision for i in rows],
            )
            self._unknowns_since_run += len(rows)
        return out

    def _revised_past(self, item_id: str, revision: int) -> bool:
        cached = self._cache.get(item_id)
        return cached is not None and cached.revision > revision

    def discovery_due(self) -> bool:
        """True when ``discovery.run_every`` new unknowns have arrived since the last run."""
        return (
            self.settings.discovery.enabled
            and self._unknowns_since_run >= self.settings.discovery.run_every
        )

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

        The job's discoverer (it carries the run's candidates) replaces the Engine's.

        Raises:
            ValueError: the job has not run.
        """
        if job.report is None:
            raise ValueError("the discovery job has not run")
        self.discoverer = job.discoverer
        return self._adopt(job.report)

    def _adopt(self, report: DiscoveryReport) -> EngineOutput:
        out = EngineOutput(discoveries=[report])
        log.debug(
            "discovery_run",
            run=report.run,
            clusters=report.clusters,
            accepted=len(report.findings),
            rejected=report.rejected,
            buffered=len(self.buffer),
        )
        assigned: dict[str, str] = {}
        adopted: set[str] = set()
        for finding in report.findings:
            try:  # the store may have changed since the run's copy was taken
                out.class_events.append(adopt(self.store, finding))
            except StoreError as exc:
                log.warning("discovery_finding_rejected", class_id=finding.class_id, error=str(exc))
                continue
            adopted.add(finding.class_id)
            assigned.update(dict.fromkeys(finding.item_ids, finding.class_id))
        settled: set[str] = set()
        for item_id, class_id in report.settled.items():
            target = self.store.resolve(class_id)  # it may have changed since the run
            if target is not None and item_id not in assigned:
                assigned[item_id] = target
                settled.add(item_id)
        if assigned:
            out.labels.extend(self._relabel_buffer(assigned, settled))
        if adopted:
            out.labels.extend(self._relabel_recent(adopted))
        return out

    # ------------------------------------------------------------- snapshot
    def state(self) -> dict[str, Any]:
        """Plain data (msgpack-able) for a snapshot: store, unknown buffer, discovery.

        Drift detectors and the item cache are not included: detectors warm up
        again after a restore, and the cache refills from the stream.
        """
        return {
            "format": STATE_FORMAT,
            "store": self.store.snapshot(),
            "buffer": self.buffer.state(),
            "discoverer": self.discoverer.state(),
            "unknowns_since_run": self._unknowns_since_run,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state` (the embedder's dimension must match).

        Raises:
            SnapshotError: the state is of another format or does not fit.
        """
        if not isinstance(state, dict):
            raise SnapshotError(f"engine state must be a map, got {type(state).__name__}")
        try:
            if state.get("format") != STATE_FORMAT:
                raise SnapshotError(f"engine state format {state.get('format')!r} is not supported")
            store = PrototypeStore.restore(
                state["store"],
                self.settings.store.to_config(self.settings.seed),
                clock=self._clock,
                use_gpu=self.settings.store.use_gpu,
            )
            if store.dim != self.embedder.dim:
                raise SnapshotError(
                    f"snapshot dimension {store.dim} != embedder dimension {self.embedder.dim}"
                )
            buffer = UnknownBuffer(self.settings.discovery.buffer_capacity, store.dim)
            buffer.load(state["buffer"])
            discoverer = Discoverer(self.discoverer.config)
            discoverer.load(state["discoverer"])
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SnapshotError(f"invalid engine state: {exc}") from exc
        self.store, self.buffer, self.discoverer = store, buffer, discoverer
        self._unknowns_since_run = int(state.get("unknowns_since_run", 0))

    def learn(self, feedback: Iterable[Feedback | RawRecord]) -> EngineOutput:
        """Class-incremental update from labelled examples.

        Examples are grouped by label; each label yields one class event (a new
        label creates its class at once). Feedback naming a buffered unknown item
        relabels it (a revision with reason ``feedback``).
        """
        out = EngineOutput()
        by_label: dict[str, list[_Example]] = {}
        to_embed: list[tuple[Feedback, RawRecord | None]] = []
        for entry in feedback:
            fb, raw = self._decode_feedback(entry, out)
            if fb is None:
                continue
            if fb.vector is not None:
                vec = self._check_dim(np.asarray(fb.vector, np.float32))
                if vec is None:
                    self._dead(
                        out, raw, fb, "bad_vector", "feedback vector has the wrong dimension"
                    )
                    continue
                by_label.setdefault(fb.label, []).append(_Example(vec, fb.text or "", fb, raw))
            elif fb.text is not None:
                to_embed.append((fb, raw))
            elif fb.item_id is not None and fb.item_id in self._cache:
                cached = self._cache[fb.item_id]
                by_label.setdefault(fb.label, []).append(
                    _Example(cached.vector, cached.text or "", fb, raw)
                )
            elif fb.item_id is not None and (buffered := self._recall(fb.item_id)) is not None:
                by_label.setdefault(fb.label, []).append(
                    _Example(buffered.vector, buffered.text or "", fb, raw)
                )
            else:
                self._dead(out, raw, fb, "unresolvable", f"item {fb.item_id!r} is not in the cache")
        if to_embed:
            vecs = self._embed_texts([fb.text or "" for fb, _ in to_embed])
            for (fb, raw), vec in zip(to_embed, vecs, strict=True):
                if vec is None:
                    self._dead(out, raw, fb, "embedding", "the model failed on this text")
                    continue
                by_label.setdefault(fb.label, []).append(_Example(vec, fb.text or "", fb, raw))
        assigned: dict[str, str] = {}
        for label, examples in by_label.items():
            try:
                event = self.store.learn(
                    label, np.stack([e.vector for e in examples]), [e.text for e in examples]
                )
            except StoreError as exc:  # this label only; the others still apply
                for e in examples:
                    self._dead(out, e.raw, e.feedback, "rejected", str(exc))
                continue
            out.class_events.append(event)
            for e in examples:
                if e.feedback.item_id is not None:
                    assigned[e.feedback.item_id] = event.class_id
        out.labels.extend(self._relabel_feedback(assigned))
        return out

    def discover(self) -> EngineOutput:
        """One discovery run: new classes and extended ones, then relabel the buffer."""
        self._unknowns_since_run = 0
        return self._adopt(self.discoverer.run(self.buffer, self.store))

    def register_zero_shot(self, name: str, description: str) -> EngineOutput:
        """Creates a class known only by a name and a description (embedded by the model)."""
        vector = self._embed_texts([description])[0]
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

    def apply(self, events: Iterable[ClassEvent]) -> int:
        """Applies class events from the changelog (a read replica); returns how many changed it."""
        return sum(self.store.apply(e) for e in events)

    # ------------------------------------------------------------- internals
    def _decode(self, batch: Sequence[RawRecord | Item], out: EngineOutput) -> list[_Decoded]:
        limits = self.settings.limits
        decoded: list[_Decoded] = []
        for entry in batch:
            if isinstance(entry, Item):
                item, source = entry, None
            else:
                decoded_item = self._decode_raw(entry, Item, out)
                if decoded_item is None:
                    continue
                item, source = decoded_item, entry.source
            if item.text is not None and len(item.text) > limits.max_text_chars:
                self._dead_item(
                    out,
                    item,
                    source,
                    entry,
                    "oversized",
                    f"text has {len(item.text)} characters, limit {limits.max_text_chars}",
                )
                continue
            if item.vector is not None and len(item.vector) != self.embedder.dim:
                self._dead_item(
                    out,
                    item,
                    source,
                    entry,
                    "bad_vector",
                    f"vector has {len(item.vector)} dimensions, the model {self.embedder.dim}",
                )
                continue
            decoded.append(_Decoded(item, source, entry if isinstance(entry, RawRecord) else None))
        return decoded

    def _assemble(
        self, decoded: list[_Decoded], embedded: Sequence[np.ndarray | None], out: EngineOutput
    ) -> tuple[np.ndarray, list[_Decoded]]:
        """One matrix of unit vectors: the items' own vectors and the model's, in batch
        order; a text the model failed on becomes a dead letter and leaves the batch."""
        dim = self.embedder.dim
        vectors = np.zeros((len(decoded), dim), np.float32)
        need = [i for i, d in enumerate(decoded) if d.item.vector is None]
        have = [i for i, d in enumerate(decoded) if d.item.vector is not None]
        if have:
            vectors[have] = l2_normalize(
                np.asarray([decoded[i].item.vector for i in have], np.float32)
            )
        ok = np.ones(len(decoded), bool)
        for i, vec in zip(need, embedded, strict=True):
            if vec is None:
                ok[i] = False
                d = decoded[i]
                self._dead_item(
                    out, d.item, d.source, d.raw, "embedding", "the model failed on this text"
                )
            else:
                vectors[i] = vec
        if ok.all():
            return vectors, decoded
        return vectors[ok], [d for d, keep in zip(decoded, ok, strict=True) if keep]

    def _embed_texts(self, texts: list[str]) -> list[np.ndarray | None]:
        """Embeds texts; on failure bisects to isolate the texts the model raises on."""
        try:
            return list(self.embedder.embed(texts))
        except EmbeddingError:
            if len(texts) == 1:
                return [None]
            mid = len(texts) // 2
            return self._embed_texts(texts[:mid]) + self._embed_texts(texts[mid:])

    def _emit_labels(
        self,
        decoded: list[_Decoded],
        vectors: np.ndarray,
        result: Classification,
        timings: dict[str, float],
        out: EngineOutput,
    ) -> None:
        now = self._clock()
        version = self.store.version
        model_id = self.embedder.model_id
        unknown_ids: list[str] = []
        unknown_rows: list[int] = []
        unknown_revisions: list[int] = []
        revisions: list[int] = []
        labels: list[str] = []
        for i, d in enumerate(decoded):
            # An id seen before (a redelivery, a resend) continues its revision count,
            # so "highest revision wins" stays true downstream.
            seen = self._cache.get(d.item.id)
            revision = 0 if seen is None else seen.revision + 1
            record = self._label_record(
                result, i, d.item.id, now, version, model_id, revision,
                source=d.source, timings=timings,
            )  # fmt: skip
            out.labels.append(record)
            revisions.append(revision)
            labels.append(record.label)
            self._remember(d.item.id, vectors[i], d.item.text, record.label, revision)
            if record.is_unknown:
                unknown_ids.append(d.item.id)
                unknown_rows.append(i)
                unknown_revisions.append(revision)
                nearest = int(result.best[i])
                out.unknowns.append(
                    UnknownRecord(
                        item_id=d.item.id,
                        text=d.item.text,
                        vector=vectors[i],
                        score=float(result.scores[i]),
                        nearest_class=result.class_ids[nearest] if nearest >= 0 else None,
                        revision=revision,
                        store_version=version,
                        source=d.source,
                        event_time=d.item.event_time,
                    )
                )
        out.observed = Observed(
            item_ids=[d.item.id for d in decoded],
            vectors=vectors,
            texts=[d.item.text for d in decoded],
            labels=labels,
            revisions=revisions,
            scores=result.scores.astype(np.float32),
            is_unknown=~result.accepted,
        )
        if unknown_rows and self.settings.discovery.enabled:
            self.buffer.add(
                unknown_ids,
                vectors[unknown_rows],
                [decoded[i].item.text for i in unknown_rows],
                unknown_revisions,
            )
            self._unknowns_since_run += len(unknown_rows)

    def _label_record(
        self,
        result: Classification,
        i: int,
        item_id: str,
        now: float,
        version: int,
        model_id: str,
        revision: int,
        *,
        forced: str | None = None,
        reason: str | None = None,
        source: SourceRef | None = None,
        timings: dict[str, float] | None = None,
    ) -> LabelRecord:
        label = forced or result.label(i)
        best = int(result.best[i])
        top = tuple(
            ScoredClass(class_id=result.class_ids[int(c)], score=float(s))
            for c, s in zip(result.top_idx[i], result.top_scores[i], strict=True)
            if c >= 0
        )
        name = None
        novel = False
        score = float(result.scores[i])
        if label != UNKNOWN:
            state = self.store.get(label)
            name, novel = state.name, state.origin == "discovery"
            score = next((t.score for t in top if t.class_id == label), score)
        return LabelRecord(
            item_id=item_id,
            label=label,
            class_name=name,
            score=score,
            margin=float(result.margins[i]),
            threshold=float(result.thresholds[i]) if best >= 0 else None,
            top_k=top,
            is_unknown=label == UNKNOWN,
            is_novel=novel,
            revision=revision,
            store_version=version,
            model_id=model_id,
            reason=reason,
            source=source,
            timings_ms=timings or {},
            emitted_at=now,
        )

    def _relabel_buffer(
        self, assigned: dict[str, str], settled: set[str] | None = None
    ) -> list[LabelRecord]:
        """Revises the labels of buffered unknowns that a class now explains.

        ``assigned`` forces a class on items (a finding's members, settled items).
        Settled items (reason ``settled``) stay buffered with their new label, so
        later runs still cluster them; the others (reason ``discovered``) leave.
        """
        settled = settled or set()
        if not len(self.buffer):
            return []
        ids = self.buffer.ids
        current = self.buffer.labels
        result = self.store.classify(np.asarray(self.buffer.vectors))
        now, version, model_id = self._clock(), self.store.version, self.embedder.model_id
        records: list[LabelRecord] = []
        done: set[str] = set()  # leave the buffer: a class found (or accepts) them
        kept: dict[str, tuple[str, int]] = {}  # settled: stay buffered with their label
        for i, item_id in enumerate(ids):
            forced = assigned.get(item_id)
            if forced is None and not result.accepted[i]:
                continue
            if (forced or result.label(i)) == current[i]:
                if item_id not in settled:
                    done.add(item_id)  # accepted by the class it settled into: no news
                continue
            revision = self.buffer.revision(i) + 1
            records.append(
                self._label_record(
                    result,
                    i,
                    item_id,
                    now,
                    version,
                    model_id,
                    revision,
                    forced=forced,
                    reason="settled" if item_id in settled else "discovered",
                )
            )
            cached = self._cache.get(item_id)
            if cached is not None:
                cached.revision, cached.label = revision, records[-1].label
            if item_id in settled:
                kept[item_id] = (records[-1].label, revision)
            else:
                done.add(item_id)
        self.buffer.settle(kept)
        self.buffer.remove(done)
        return records

    def _relabel_recent(self, adopted: set[str]) -> list[LabelRecord]:
        """Revises recent labelled items that a newly adopted class now explains better.

        An open-set threshold cannot separate a new class's items from a
        neighbouring known class perfectly; once the new class exists, recent
        items it now wins (and accepts) move to it.
        """
        ids = [k for k, c in self._cache.items() if c.label != UNKNOWN and c.label not in adopted]
        if not ids:
            return []
        result = self.store.classify(np.stack([self._cache[k].vector for k in ids]))
        now, version, model_id = self._clock(), self.store.version, self.embedder.model_id
        records: list[LabelRecord] = []
        for i in np.flatnonzero(result.accepted):
            new = result.class_ids[int(result.best[i])]
            if new not in adopted:
                continue
            cached = self._cache[ids[i]]
            cached.revision += 1
            cached.label = new
            records.append(
                self._label_record(
                    result,
                    int(i),
                    ids[i],
                    now,
                    version,
                    model_id,
                    cached.revision,
                    reason="discovered",
                )
            )
        return records

    def _recall(self, item_id: str) -> _Cached | None:
        """An unknown still buffered but evicted from the item cache, put back in the cache."""
        found = self.buffer.get(item_id)
        if found is None:
            return None
        vector, text, revision = found
        self._remember(item_id, vector, text, UNKNOWN, revision)
        return self._cache.get(item_id) or _Cached(vector, text, UNKNOWN, revision)

    def _relabel_feedback(self, assigned: dict[str, str]) -> list[LabelRecord]:
        """Revises the labels of seen items that feedback named (one classify for all)."""
        known = [i for i in assigned if i in self._cache]
        if not known:
            return []
        result = self.store.classify(np.stack([self._cache[i].vector for i in known]))
        now, version, model_id = self._clock(), self.store.version, self.embedder.model_id
        records = []
        for row, item_id in enumerate(known):
            cached = self._cache[item_id]
            cached.revision += 1
            cached.label = assigned[item_id]
            records.append(
                self._label_record(
                    result, row, item_id, now, version, model_id, cached.revision,
                    forced=cached.label, reason="feedback",
                )
            )  # fmt: skip
        self.buffer.remove(set(known))
        return records

    def _detect(self, observed: Observed) -> list[DriftAlert]:
        obs = DriftObservation(
            vectors=np.asarray(observed.vectors, np.float32),
            labels=np.array(observed.labels, dtype=object),
            is_unknown=np.asarray(observed.is_unknown, bool),
            scores=np.asarray(observed.scores, np.float32),
        )
        alerts = []
        for detector in self.detectors:
            for signal in detector.update(obs):
                alerts.append(self._alert(signal))
        return alerts

    def _alert(self, signal: DriftSignal) -> DriftAlert:
        digest = hashlib.blake2b(
            f"{self.settings.seed}:{signal.kind}:{signal.at_item}".encode(), digest_size=6
        ).hexdigest()
        alert = DriftAlert(
            alert_id=f"{signal.kind}-{digest}",
            kind=signal.kind,
            statistic=float(signal.statistic),
            threshold=float(signal.threshold),
            p_value=signal.p_value,
            window=signal.window,
            reference=signal.reference,
            at_item=signal.at_item,
            severity=signal.severity,
            affected_classes=tuple(signal.affected_classes),
            detail=signal.detail,
            store_version=self.store.version,
            emitted_at=self._clock(),
        )
        log.info("drift_alert", kind=alert.kind, at_item=alert.at_item, severity=alert.severity)
        return alert

    def _remember(
        self, item_id: str, vector: np.ndarray, text: str | None, label: str, revision: int
    ) -> None:
        cap = self.settings.limits.max_item_cache
        if cap == 0:
            return
        self._cache[item_id] = _Cached(vector, text, label, revision)
        self._cache.move_to_end(item_id)
        while len(self._cache) > cap:
            self._cache.popitem(last=False)

    def _check_dim(self, vec: np.ndarray) -> np.ndarray | None:
        if vec.shape != (self.embedder.dim,):
            return None
        return l2_normalize(vec)

    def _decode_feedback(
        self, entry: Feedback | RawRecord, out: EngineOutput
    ) -> tuple[Feedback | None, RawRecord | None]:
        if isinstance(entry, Feedback):
            return entry, None
        return self._decode_raw(entry, Feedback, out), entry

    def _decode_raw(self, entry: RawRecord, record_type: type[R], out: EngineOutput) -> R | None:
        """Decodes a raw message; an undecodable one becomes a dead letter (None returned)."""
        try:
            return decode(
                entry.value, record_type, max_bytes=self.settings.limits.max_message_bytes
            )
        except DecodeError as exc:
            out.dead_letters.append(
                DeadLetter(
                    source=entry.source,
                    key=entry.key,
                    value=entry.value or b"",
                    reason=exc.reason,
                    error=str(exc),
                )
            )
            return None

    def _dead(
        self, out: EngineOutput, raw: RawRecord | None, fb: Feedback, reason: str, error: str
    ) -> None:
        out.dead_letters.append(
            DeadLetter(
                source=raw.source if raw else None,
                key=raw.key if raw else None,
                value=raw.value if raw and raw.value else encode(fb),
                reason=reason,
                error=error,
            )
        )

    def _dead_item(
        self,
        out: EngineOutput,
        item: Item,
        source: SourceRef | None,
        raw: RawRecord | Item | None,
        reason: str,
        error: str,
    ) -> None:
        value = raw.value if isinstance(raw, RawRecord) and raw.value else encode(item)
        key = raw.key if isinstance(raw, RawRecord) else item.id.encode()
        out.dead_letters.append(
            DeadLetter(source=source, key=key, value=value, reason=reason, error=error)
        )
