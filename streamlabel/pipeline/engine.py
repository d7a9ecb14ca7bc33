"""The Engine: one batch of raw items in; labels, unknowns, events, alerts, dead letters out.

The Engine is the whole open-world classifier in one process, without any
I/O, for the benchmarks, replay and notebooks. It is a :class:`~.labeler.Labeler`
(the stream side: decode, embed, classify, emit) and a :class:`~.curator.Curator`
(the store's single writer: feedback, unknowns, discovery, drift, state)
sharing one store and one item cache. A deployment splits the two: each stream
worker holds a labeler over a replica of the store, the learner the curator.

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

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from streamlabel.core.buffer import UnknownBuffer
from streamlabel.core.discovery import Discoverer
from streamlabel.core.drift import DriftDetector
from streamlabel.core.embedder import Embedder
from streamlabel.core.store import PrototypeStore
from streamlabel.pipeline.batch import EmbeddedTexts, PreparedBatch
from streamlabel.pipeline.cache import ItemCache
from streamlabel.pipeline.curator import STATE_FORMAT, Curator, DiscoveryJob
from streamlabel.pipeline.inputs import RawRecord
from streamlabel.pipeline.labeler import Labeler, new_store
from streamlabel.pipeline.output import EngineOutput, Observed
from streamlabel.schemas import ClassEvent, Feedback, Item, UnknownRecord
from streamlabel.settings.engine import EngineSettings, load_settings

__all__ = [
    "STATE_FORMAT",
    "DiscoveryJob",
    "EmbeddedTexts",
    "Engine",
    "PreparedBatch",
    "load_settings",
]


class Engine:
    """The open-world classifier, batch in, records out: a labeler and a curator in one.

    Args:
        settings: validated settings (see :func:`load_settings`).
        embedder: text embedder; its ``dim`` fixes the store's dimension.
        clock: epoch seconds; inject a settable clock in tests.
        store: an existing store (e.g. restored from a snapshot); a new one otherwise.

    Raises:
        StoreError: the store's dimension is not the embedder's.
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
        store = store or new_store(settings, embedder.dim, clock)
        cache = ItemCache(settings.limits.max_item_cache)
        self.labeler = Labeler(settings, embedder, clock=clock, store=store, cache=cache)
        self.curator = Curator(settings, embedder, clock=clock, store=store, cache=cache)

    # ------------------------------------------------------------- shared parts
    @property
    def store(self) -> PrototypeStore:
        """The prototype store (the labeler reads it, the curator writes it)."""
        return self.curator.store

    @property
    def buffer(self) -> UnknownBuffer:
        """Unknown items waiting for discovery."""
        return self.curator.buffer

    @property
    def discoverer(self) -> Discoverer:
        """Novel-class discovery (its candidates carry the ids of classes to come)."""
        return self.curator.discoverer

    @property
    def detectors(self) -> list[DriftDetector]:
        """The drift detectors watching the stream."""
        return self.curator.drift.detectors

    @detectors.setter
    def detectors(self, detectors: list[DriftDetector]) -> None:
        self.curator.drift.detectors = detectors

    # ------------------------------------------------------------- the stream
    def process(self, batch: Sequence[RawRecord | Item]) -> EngineOutput:
        """Labels one batch. Raw records are decoded; bad ones become dead letters.

        Runs discovery afterwards when ``discovery.run_every`` new unknowns have
        accumulated (the Ray learner runs it in the background instead).
        ``process(b)`` is ``finish(p, embed(p))`` with ``p = prepare(b)``.
        """
        prepared = self.prepare(batch)
        return self.finish(prepared, self.embed(prepared))

    def prepare(self, batch: Sequence[RawRecord | Item]) -> PreparedBatch:
        """Decodes and validates a batch (see :meth:`Labeler.prepare`)."""
        return self.labeler.prepare(batch)

    def embed(self, prepared: PreparedBatch) -> EmbeddedTexts:
        """Runs the model on a prepared batch's texts (see :meth:`Labeler.embed`)."""
        return self.labeler.embed(prepared)

    def finish(self, prepared: PreparedBatch, embedded: EmbeddedTexts) -> EngineOutput:
        """Classifies and emits (the labeler); buffers unknowns and watches drift (the
        curator); runs discovery when due."""
        out = self.curator.take(self.labeler.finish(prepared, embedded))
        if self.curator.discovery_due():
            out.extend(self.curator.discover())
        return out

    def observe(self, observed: Observed) -> EngineOutput:
        """See :meth:`Curator.observe`."""
        return self.curator.observe(observed)

    def absorb(self, unknowns: Sequence[UnknownRecord]) -> EngineOutput:
        """See :meth:`Curator.absorb`."""
        return self.curator.absorb(unknowns)

    def learn(self, feedback: Iterable[Feedback | RawRecord]) -> EngineOutput:
        """See :meth:`Curator.learn`."""
        return self.curator.learn(feedback)

    def settle_feedback(self) -> EngineOutput:
        """See :meth:`Curator.settle_feedback`."""
        return self.curator.settle_feedback()

    def apply(self, events: Iterable[ClassEvent]) -> int:
        """Applies class events from the changelog; returns how many changed the store."""
        return self.labeler.apply(events)

    # ------------------------------------------------------------- discovery
    def discovery_due(self) -> bool:
        """See :meth:`Curator.discovery_due`."""
        return self.curator.discovery_due()

    def discover(self) -> EngineOutput:
        """See :meth:`Curator.discover`."""
        return self.curator.discover()

    def begin_discovery(self) -> DiscoveryJob:
        """See :meth:`Curator.begin_discovery`."""
        return self.curator.begin_discovery()

    def keep_candidates(self, job: DiscoveryJob) -> bool:
        """See :meth:`Curator.keep_candidates`."""
        return self.curator.keep_candidates(job)

    def finish_discovery(self, job: DiscoveryJob) -> EngineOutput:
        """See :meth:`Curator.finish_discovery`."""
        return self.curator.finish_discovery(job)

    # ------------------------------------------------------------- by a person
    def register_zero_shot(self, name: str, description: str) -> EngineOutput:
        """See :meth:`Curator.register_zero_shot`."""
        return self.curator.register_zero_shot(name, description)

    def rename(self, class_id: str, name: str) -> EngineOutput:
        """See :meth:`Curator.rename`."""
        return self.curator.rename(class_id, name)

    def merge(self, source_id: str, target_id: str) -> EngineOutput:
        """See :meth:`Curator.merge`."""
        return self.curator.merge(source_id, target_id)

    def retire(self, class_id: str) -> EngineOutput:
        """See :meth:`Curator.retire`."""
        return self.curator.retire(class_id)

    # ------------------------------------------------------------- snapshot
    def state(self) -> dict[str, Any]:
        """See :meth:`Curator.state`."""
        return self.curator.state()

    def load_state(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state`; the labeler reads the restored store from then on.

        Raises:
            SnapshotError: the state is of another format or does not fit.
        """
        self.curator.load_state(state)
        self.labeler.store = self.curator.store
