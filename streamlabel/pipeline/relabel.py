"""Label revisions: when the store learns, items already labelled get a new label.

These causes revise labels, each with its ``reason`` on the revised record:

* ``reclassified``: a worker rejected an item against an older store than the
  learner's; the current store accepts it.
* ``discovered``: a discovered class explains buffered unknowns (its members),
  or wins recent labelled items from a neighbouring class.
* ``settled``: an unknown that discovery assigned to an existing class.
* ``feedback``: a person named the item's class.
* ``renamed``, ``merged``, ``split``: a person's command moved the item's class
  (renamed it, folded it into another) or moved the item to a new class.

Each revision continues the item's revision count, so "highest revision wins"
downstream. The :class:`Reviser` classifies each group of items once against
the store as it is now and stamps every record of the step alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from streamlabel.core.buffer import UnknownBuffer
from streamlabel.core.store import Classification, PrototypeStore
from streamlabel.pipeline.cache import CachedItem, ItemCache
from streamlabel.pipeline.records import Stamp, label_record
from streamlabel.schemas import UNKNOWN, LabelRecord, UnknownRecord

__all__ = ["Reviser"]


@dataclass(frozen=True)
class Reviser:
    """Revises labels against ``store``, keeping ``cache`` in step with what it publishes."""

    store: PrototypeStore
    cache: ItemCache
    clock: Callable[[], float]
    model_id: str

    def _classify(self, vectors: np.ndarray) -> tuple[Classification, Stamp]:
        return self.store.classify(vectors), Stamp.of(self.clock, self.store, self.model_id)

    def reclassify(
        self, unknowns: Sequence[UnknownRecord], vectors: np.ndarray
    ) -> tuple[list[LabelRecord], np.ndarray]:
        """Labels the unknowns that a class now accepts.

        Only items rejected against an older store version are classified again.

        Returns:
            the revised labels, and the mask of the items still unknown.
        """
        keep = np.ones(len(unknowns), bool)
        revised: list[LabelRecord] = []
        stale = [i for i, u in enumerate(unknowns) if u.store_version < self.store.version]
        if not stale or not self.store.active_ids():
            return revised, keep
        result, stamp = self._classify(vectors[stale])
        for row, i in enumerate(stale):
            if not result.accepted[row]:
                continue
            u = unknowns[i]
            record = label_record(
                self.store, result, row, u.item_id, stamp, u.revision + 1,
                reason="reclassified", source=u.source,
            )  # fmt: skip
            revised.append(record)
            self.cache.remember(u.item_id, vectors[i], u.text, record.label, record.revision)
            keep[i] = False
        return revised, keep

    def buffered(
        self, buffer: UnknownBuffer, assigned: dict[str, str], settled: set[str]
    ) -> list[LabelRecord]:
        """Revises the labels of buffered unknowns that a class now explains.

        ``assigned`` forces a class on items (a finding's members, settled items).
        Settled items (reason ``settled``) stay buffered with their new label, so
        later runs still cluster them; the others (reason ``discovered``) leave.
        """
        if not len(buffer):
            return []
        ids = buffer.ids
        current = buffer.labels
        result, stamp = self._classify(np.asarray(buffer.vectors))
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
            revision = buffer.revision(i) + 1
            reason = "settled" if item_id in settled else "discovered"
            record = label_record(
                self.store, result, i, item_id, stamp, revision, forced=forced, reason=reason
            )
            records.append(record)
            cached = self.cache.get(item_id)
            if cached is not None:
                cached.revision, cached.label = revision, record.label
            if item_id in settled:
                kept[item_id] = (record.label, revision)
            else:
                done.add(item_id)
        buffer.settle(kept)
        buffer.remove(done)
        return records

    def recent(self, adopted: set[str]) -> list[LabelRecord]:
        """Revises recent labelled items that a newly adopted class now explains better.

        An open-set threshold cannot separate a new class's items from a
        neighbouring known class perfectly; once the new class exists, recent
        items it now wins (and accepts) move to it.
        """
        entries = [(k, c) for k, c in self.cache.items() if c.label not in adopted]
        entries = [(k, c) for k, c in entries if c.label != UNKNOWN]
        if not entries:
            return []
        result, stamp = self._classify(np.stack([c.vector for _, c in entries]))
        records: list[LabelRecord] = []
        for i in np.flatnonzero(result.accepted):
            new = result.class_ids[int(result.best[i])]
            if new not in adopted:
                continue
            item_id, cached = entries[i]
            cached.revision += 1
            cached.label = new
            records.append(
                label_record(
                    self.store, result, int(i), item_id, stamp, cached.revision, reason="discovered"
                )
            )
        return records

    def named(self, buffer: UnknownBuffer, assigned: dict[str, str]) -> list[LabelRecord]:
        """Revises the labels of seen items that feedback named (one classify for all)."""
        moves = [(i, c, assigned[i]) for i in assigned if (c := self.cache.get(i)) is not None]
        if moves:
            buffer.remove({i for i, _, _ in moves})
        return self.moved(moves, "feedback")

    def moved(self, moves: Sequence[tuple[str, CachedItem, str]], reason: str) -> list[LabelRecord]:
        """Revises the labels of items moved to a class: ``(item id, item, class id)``.

        Each item's label and revision change in place (one classify for all).
        """
        if not moves:
            return []
        result, stamp = self._classify(np.stack([item.vector for _, item, _ in moves]))
        records = []
        for row, (item_id, item, class_id) in enumerate(moves):
            item.revision += 1
            item.label = class_id
            records.append(
                label_record(
                    self.store, result, row, item_id, stamp, item.revision,
                    forced=class_id, reason=reason,
                )
            )  # fmt: skip
        return records
