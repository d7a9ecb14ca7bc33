"""The Labeler: the stream side of the pipeline, against a read-only store replica.

A stream worker holds one: it decodes a batch, embeds its texts (possibly on
another thread), classifies them against the store as it is now and emits a
label per item, an unknown record per rejected item and what it observed (for
the learner's drift detectors and item cache). It changes its store only by
applying class events from the changelog; the :class:`~.curator.Curator` is
the store's single writer.

Example:
    >>> from streamlabel.schemas import Item
    >>> from streamlabel.testing import HashEmbedder
    >>> labeler = Labeler(load_settings(), HashEmbedder())
    >>> labeler.process([Item(id="1", text="sort a list")]).labels[0].label
    'unknown'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import structlog

from streamlabel.core.embedder import Embedder
from streamlabel.core.store import Classification, PrototypeStore
from streamlabel.errors import StoreError
from streamlabel.pipeline.batch import (
    Decoded,
    EmbeddedTexts,
    PreparedBatch,
    assemble,
    embed_texts,
)
from streamlabel.pipeline.cache import ItemCache
from streamlabel.pipeline.inputs import RawRecord
from streamlabel.pipeline.output import EngineOutput, Observed
from streamlabel.pipeline.records import Stamp, label_record
from streamlabel.schemas import ClassEvent, Item, UnknownRecord
from streamlabel.schemas.mapping import DEFAULT_MAPPING, ItemMapping
from streamlabel.settings.engine import EngineSettings, load_settings

__all__ = ["Labeler", "apply_events", "load_settings", "new_store", "store_for"]

log = structlog.get_logger(__name__)


def apply_events(store: PrototypeStore, events: Iterable[ClassEvent]) -> int:
    """Applies changelog events to ``store``, skipping (and logging) those it refuses;
    returns how many changed it."""
    changed = 0
    for event in events:
        try:
            changed += store.apply(event)
        except StoreError as exc:
            log.error("class_event_skipped", class_id=event.class_id,
                      store_version=event.store_version, error=str(exc))  # fmt: skip
    return changed


def store_for(
    settings: EngineSettings,
    embedder: Embedder,
    clock: Callable[[], float],
    store: PrototypeStore | None = None,
) -> PrototypeStore:
    """``store``, or a new one, checked against the embedder's dimension.

    Raises:
        StoreError: the store's dimension is not the embedder's.
    """
    store = store or new_store(settings, embedder.dim, clock)
    if store.dim != embedder.dim:
        raise StoreError(f"store dimension {store.dim} != embedder dimension {embedder.dim}")
    return store


def new_store(settings: EngineSettings, dim: int, clock: Callable[[], float]) -> PrototypeStore:
    """An empty store configured by ``settings``."""
    return PrototypeStore(
        dim, settings.store.to_config(settings.seed), clock=clock, use_gpu=settings.store.use_gpu
    )


class Labeler:
    """Labels batches against a store it only reads (and updates from class events).

    Args:
        settings: validated settings (limits, store configuration).
        embedder: text embedder; its ``dim`` fixes the store's dimension.
        clock: epoch seconds; inject a settable clock in tests.
        store: the store to read (shared with a curator in one process); a new one otherwise.
        cache: the item cache of a curator in the same process (the labeler keeps it
            up to date); none otherwise: a labeler alone needs no memory of items.
        items: how a foreign record on the items topic makes an item (``kafka.items_mapping``).

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
        cache: ItemCache | None = None,
        items: ItemMapping = DEFAULT_MAPPING,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.items = items
        self._clock = clock
        self.store = store_for(settings, embedder, clock, store)
        self.cache = cache if cache is not None else ItemCache(0)

    def process(self, batch: Sequence[RawRecord | Item]) -> EngineOutput:
        """``finish(p, embed(p))`` with ``p = prepare(batch)``."""
        prepared = self.prepare(batch)
        return self.finish(prepared, self.embed(prepared))

    def prepare(self, batch: Sequence[RawRecord | Item]) -> PreparedBatch:
        """Decodes and validates a batch (bad records become dead letters)."""
        return PreparedBatch.of(batch, self.settings.limits, self.embedder.dim, self.items)

    def embed(self, prepared: PreparedBatch) -> EmbeddedTexts:
        """Runs the model on a prepared batch's texts.

        Touches nothing but the embedder, so it may run on another thread while
        this Labeler applies class events or finishes the previous batch (one
        call at a time: the embedder is not shared between concurrent calls).
        """
        t0 = time.perf_counter()
        vectors = embed_texts(self.embedder, prepared.texts) if prepared.texts else []
        return EmbeddedTexts(vectors, time.perf_counter() - t0)

    def finish(self, prepared: PreparedBatch, embedded: EmbeddedTexts) -> EngineOutput:
        """Classifies an embedded batch against the store as it is now; emits its records."""
        out = prepared.out
        vectors, decoded = assemble(prepared.decoded, embedded.vectors, self.embedder.dim, out)
        t0 = time.perf_counter()
        result = self.store.classify(vectors)
        classify_s = time.perf_counter() - t0
        out.stage_s = {
            "decode": prepared.decode_s, "embed": embedded.seconds, "classify": classify_s,
        }  # fmt: skip
        n = max(len(decoded), 1)
        timings = {stage: seconds * 1e3 / n for stage, seconds in out.stage_s.items()}
        self._emit(decoded, vectors, result, timings, out)
        return out

    def apply(self, events: Iterable[ClassEvent]) -> int:
        """Applies class events from the changelog; returns how many changed the store.

        An event the store refuses (another dimension, a state it cannot hold) is
        skipped and logged: one bad record must not stop every replica.
        """
        return apply_events(self.store, events)

    def _emit(
        self,
        decoded: list[Decoded],
        vectors: np.ndarray,
        result: Classification,
        timings: dict[str, float],
        out: EngineOutput,
    ) -> None:
        stamp = Stamp.of(self._clock, self.store, self.embedder.model_id)
        revisions: list[int] = []
        labels: list[str] = []
        for i, d in enumerate(decoded):
            # A stream label is always revision 0, redelivered or not: only the
            # learner revises (1, 2...), so its revisions outrank every stream label,
            # and stream labels of one item order by store_version.
            revision = 0
            record = label_record(
                self.store, result, i, d.item.id, stamp, revision,
                source=d.source, timings=timings,
            )  # fmt: skip
            out.labels.append(record)
            revisions.append(revision)
            labels.append(record.label)
            if not self.cache.revised_past(d.item.id, revision):  # keep what the learner knows
                self.cache.remember(d.item.id, vectors[i], d.item.text, record.label, revision)
            if record.is_unknown:
                nearest = int(result.best[i])
                out.unknowns.append(
                    UnknownRecord(
                        item_id=d.item.id,
                        text=d.item.text,
                        vector=vectors[i],
                        score=float(result.scores[i]),
                        nearest_class=result.class_ids[nearest] if nearest >= 0 else None,
                        revision=revision,
                        store_version=stamp.store_version,
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
