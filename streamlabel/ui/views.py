"""What the console shows, kept from the deployment's topics in bounded memory.

:class:`ConsoleViews` takes the records a :class:`~streamlabel.ui.feed.ConsoleFeed`
reads (labels, unknowns, class events, alerts, command results, dead letters)
and keeps: items and unknowns per second and labels by class per second over a
sliding window, the latest state and the history of every class, the items
whose current label is still ``unknown`` (with text, nearest classes and
vector), drift incidents, discoveries, recent command results and the
dead-letter count. It does no I/O; a lock makes it safe to fill from the feed's
thread while the web server reads.

Example:
    >>> from streamlabel.testing.records import event, label
    >>> v = ConsoleViews(clock=lambda: 100.0)
    >>> v.take("classes", event("c1", name="billing"))
    >>> v.take("labels", label("i1", "c1", emitted_at=99.5, class_name="billing"))
    >>> v.take("labels", label("i2", "unknown", emitted_at=99.7, top_k=[("c1", 0.2)]))
    >>> o = v.overview()
    >>> o["items_total"], o["unknown_total"], o["series"]["by_class"]
    (2, 1, {'billing': [1], 'unknown': [1]})
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamlabel.kafka.changelog import keep_latest
from streamlabel.kafka.control_views import HistoryEntry, NearestClass
from streamlabel.schemas import (
    ClassEvent,
    ClassState,
    DriftAlert,
    LabelRecord,
    Record,
    UnknownRecord,
)
from streamlabel.schemas.commands import CommandResult
from streamlabel.ui.incidents import Incident, IncidentBook
from streamlabel.ui.projection import MapInput, ProjectedMap, project
from streamlabel.ui.windows import Recent, SecondBuckets

__all__ = ["ClassView", "ConsoleViews", "Mark", "UnknownView"]

TOP_CLASSES = 8
"""Classes drawn one by one in "labels by class" (besides ``unknown``); the others add
up to "other"."""


@dataclass
class UnknownView:
    """An item whose current label is ``unknown``."""

    item_id: str
    text: str | None
    score: float
    revision: int
    vector: np.ndarray | None = None
    nearest: tuple[NearestClass, ...] = ()
    at: float = 0.0


@dataclass(frozen=True)
class Mark:
    """A moment on the overview's timeline: a drift incident or a discovery."""

    at: float
    kind: str  # "incident" | "discovery"
    label: str
    ref: str


@dataclass
class ClassView:
    """A class as the Classes page shows it."""

    state: ClassState
    history: list[HistoryEntry] = field(default_factory=list)

    @property
    def awaiting_review(self) -> bool:
        """Discovered and not yet looked at by a person: provisional, or found by
        discovery and never changed by an operator command."""
        if self.state.status == "retired":
            return False
        if self.state.status == "provisional":
            return True
        reviewed = any(h.cause == "operator" for h in self.history)
        return self.state.origin == "discovery" and not reviewed

    @property
    def threshold(self) -> float | None:
        return self.state.threshold_override


class ConsoleViews:
    """Bounded views of a deployment's topics.

    Args:
        window_s: seconds of the per-second series.
        max_unknowns: unknown items kept (the most recent).
        max_results: command results kept.
        max_history: history entries kept per class.
        clock: epoch seconds (the rates' "now").
    """

    def __init__(
        self,
        *,
        window_s: int = 300,
        max_unknowns: int = 300,
        max_results: int = 50,
        max_history: int = 50,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.max_history = max_history
        self.items = SecondBuckets(window_s)  # first labels: "items", "unknown"
        self.by_class = SecondBuckets(window_s)  # first labels by class name
        self._latest: dict[str, ClassEvent] = {}
        self._history: dict[str, deque[HistoryEntry]] = {}
        self._unknowns: Recent[str, UnknownView] = Recent(max_unknowns)
        self._pending_top: Recent[str, LabelRecord] = Recent(max_unknowns * 8)
        self._resolved: Recent[str, int] = Recent(max_unknowns * 20)
        self._recent_labels: Recent[str, LabelRecord] = Recent(30)
        self.incidents = IncidentBook()
        self._discoveries: deque[Mark] = deque(maxlen=200)
        self.results: deque[CommandResult] = deque(maxlen=max_results)
        self.results_seen = 0
        self.dead_letters = 0
        self.store_version = 0
        self.changes = 0
        """Bumped by every record taken (the live page's "anything new?")."""
        self.unknown_changes = 0
        self._map: tuple[tuple[int, int], ProjectedMap] | None = None

    # ------------------------------------------------------------- taking
    def take(self, kind: str, record: Record) -> None:
        """Takes one record of topic ``kind`` (records of another type are ignored)."""
        with self._lock:
            self.changes += 1
            if kind == "labels" and isinstance(record, LabelRecord):
                self._label(record)
            elif kind == "unknowns" and isinstance(record, UnknownRecord):
                self._unknown(record)
            elif kind == "classes" and isinstance(record, ClassEvent):
                self._class_event(record)
            elif kind == "alerts" and isinstance(record, DriftAlert):
                self.incidents.take(record)
            elif kind == "command_results" and isinstance(record, CommandResult):
                self.results.appendleft(record)
                self.results_seen += 1

    def dead_letter(self) -> None:
        """Counts one record of the dead-letter topic."""
        with self._lock:
            self.changes += 1
            self.dead_letters += 1

    def _label(self, r: LabelRecord) -> None:
        if r.revision == 0:
            self.items.add(r.emitted_at, "items")
            if r.is_unknown:
                self.items.add(r.emitted_at, "unknown")
            self.by_class.add(r.emitted_at, "unknown" if r.is_unknown else self._name(r))
        if r.is_unknown:
            seen = self._unknowns.get(r.item_id)
            if seen is not None and r.revision >= seen.revision:
                seen.nearest, seen.score, seen.revision = self._nearest(r), r.score, r.revision
                seen.at = r.emitted_at
                self.unknown_changes += 1
            elif seen is None:
                self._pending_top.put(r.item_id, r)
            return
        resolved = self._resolved.get(r.item_id)
        if resolved is None or r.revision >= resolved:
            self._resolved.put(r.item_id, r.revision)
            self._recent_labels.put(r.item_id, r)
        seen = self._unknowns.get(r.item_id)
        if seen is not None and r.revision >= seen.revision:
            self._unknowns.pop(r.item_id)
            self.unknown_changes += 1

    def _unknown(self, u: UnknownRecord) -> None:
        resolved = self._resolved.get(u.item_id)
        if resolved is not None and resolved >= u.revision:
            return  # labelled since
        label = self._pending_top.pop(u.item_id)
        view = UnknownView(u.item_id, u.text, u.score, u.revision,
                           np.asarray(u.vector, dtype=np.float32))  # fmt: skip
        if label is not None and label.revision >= u.revision:
            view.nearest, view.at, view.revision = (
                self._nearest(label),
                label.emitted_at,
                label.revision,
            )
        elif u.nearest_class is not None:
            view.nearest = (
                NearestClass(u.nearest_class, self._class_name(u.nearest_class), u.score),
            )
        self._unknowns.put(u.item_id, view)
        self.unknown_changes += 1

    def _class_event(self, e: ClassEvent) -> None:
        keep_latest(self._latest, e)
        self.store_version = max(self.store_version, e.store_version)
        hist = self._history.setdefault(e.class_id, deque(maxlen=self.max_history))
        hist.append(HistoryEntry.of(e))
        for other in e.related:  # a merge names the other class: its history shows it too
            if other != e.class_id:
                self._history.setdefault(other, deque(maxlen=self.max_history)).append(
                    HistoryEntry.of(e)
                )
        if e.kind == "created" and e.cause == "discovery":
            self._discoveries.append(
                Mark(e.state.created_at, "discovery", e.state.name, e.class_id)
            )

    def _name(self, r: LabelRecord) -> str:
        return r.class_name or self._class_name(r.label) or r.label

    def _class_name(self, class_id: str) -> str | None:
        e = self._latest.get(class_id)
        return e.state.name if e is not None else None

    def _nearest(self, r: LabelRecord) -> tuple[NearestClass, ...]:
        return tuple(
            NearestClass(s.class_id, self._class_name(s.class_id), s.score) for s in r.top_k
        )

    # ------------------------------------------------------------- reading
    def classes(self, *, include_merged: bool = False) -> list[ClassView]:
        """Every class (merged-away ones only when asked), those awaiting review first,
        then by count."""
        with self._lock:
            out = [
                ClassView(e.state, list(self._history.get(cid, ())))
                for cid, e in self._latest.items()
                if include_merged or e.state.merged_into is None
            ]
        order = {"provisional": 0, "known": 1, "retired": 2}
        out.sort(key=lambda c: (not c.awaiting_review, order[c.state.status], -c.state.count,
                                c.state.class_id))  # fmt: skip
        return out

    def class_names(self) -> dict[str, str]:
        """Active classes: id -> name."""
        with self._lock:
            return {cid: e.state.name for cid, e in self._latest.items()
                    if e.state.status != "retired"}  # fmt: skip

    def unknowns(self, n: int | None = None) -> list[UnknownView]:
        """Items whose current label is ``unknown``, newest first, their nearest classes
        named with the classes' current names."""
        with self._lock:
            views = self._unknowns.newest(n)
            for v in views:
                v.nearest = tuple(NearestClass(c.class_id, self._class_name(c.class_id), c.score)
                                  for c in v.nearest)  # fmt: skip
            return list(views)

    def recent_labels(self, n: int = 15) -> list[LabelRecord]:
        """Items most recently given a class (their current label), newest first."""
        with self._lock:
            return self._recent_labels.newest(n)

    def incident_list(self) -> list[Incident]:
        with self._lock:
            return self.incidents.incidents()

    def marks(self) -> list[Mark]:
        """Drift incidents (at their first signal) and discoveries, oldest first."""
        with self._lock:
            inc = [Mark(i.first_at, "incident", f"{i.severity}: {', '.join(i.kinds)}",
                        i.incident_id) for i in self.incidents.incidents()]  # fmt: skip
            return sorted([*inc, *self._discoveries], key=lambda m: m.at)

    def overview(self) -> dict[str, Any]:
        """The overview's numbers and its per-second series (JSON-ready)."""
        with self._lock:
            xs = self.items.seconds()
            series = self.items.series(["items", "unknown"])
            top = [k for k, _ in self.by_class.keys().most_common() if k != "unknown"]
            shown, rest = top[:TOP_CLASSES], top[TOP_CLASSES:]
            if self.by_class.keys().get("unknown"):
                shown.append("unknown")
            by_class = self.by_class.series(shown)
            if rest:
                other = self.by_class.series(rest)
                by_class["other"] = [sum(col) for col in zip(*other.values(), strict=True)]
            rate = [round(u / n, 4) if n else None
                    for u, n in zip(series["unknown"], series["items"], strict=True)]  # fmt: skip
            recent_n = self.items.count("items", 10)
            recent_u = self.items.count("unknown", 60)
            recent_60 = self.items.count("items", 60)
            active = [e.state for e in self._latest.values() if e.state.status != "retired"]
            return {
                "items_total": self.items.totals["items"],
                "unknown_total": self.items.totals["unknown"],
                "items_per_s": round(recent_n / 10, 2),
                "unknown_rate": round(recent_u / recent_60, 4) if recent_60 else None,
                "dead_letters": self.dead_letters,
                "classes": len(active),
                "provisional": sum(s.status == "provisional" for s in active),
                "discovered": sum(s.origin == "discovery" for s in active),
                "store_version": self.store_version,
                "incidents": len(self.incidents),
                "alerts": self.incidents.alerts,
                "unknowns_held": len(self._unknowns),
                "series": {
                    "x": xs,
                    "items": series["items"],
                    "unknown_rate": rate,
                    "by_class": by_class,
                },
            }

    def versions(self) -> dict[str, int]:
        """Counters that change when a page's content does (the live pages refetch then)."""
        with self._lock:
            return {
                "classes": self.store_version,
                "unknowns": self.unknown_changes,
                "incidents": self.incidents.alerts,
                "results": self.results_seen,
            }

    def projection(self, *, exemplars_per_class: int = 20, unknowns: int = 300) -> ProjectedMap:
        """The map, recomputed only when the store version or the unknowns changed."""
        with self._lock:
            key = (self.store_version, self.unknown_changes)
            if self._map is not None and self._map[0] == key:
                return self._map[1]
            inputs: list[MapInput] = []
            for e in self._latest.values():
                st = e.state
                if st.status == "retired" or st.mean is None:
                    continue
                inputs.append(MapInput("prototype", st.class_id, st.name, None,
                                       np.asarray(st.mean)))  # fmt: skip
                rows = np.asarray(st.exemplars)[:exemplars_per_class]
                texts = st.exemplar_texts
                for j, row in enumerate(rows):
                    text = texts[j] if j < len(texts) else None
                    inputs.append(MapInput("exemplar", st.class_id, st.name, text, row))
            for u in self._unknowns.newest(unknowns):
                if u.vector is not None:
                    inputs.append(MapInput("unknown", u.item_id, "unknown", u.text, u.vector))
        projected = project(inputs)
        with self._lock:
            self._map = (key, projected)
        return projected
