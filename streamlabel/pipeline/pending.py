"""Feedback waiting for its item: feedback by id that arrived before the item's labelling.

A stream worker labels an item, publishes the label, and only then sends the
item to the learner's cache; a person's feedback naming the item can reach the
learner first. Such feedback waits here (``limits.feedback_wait_s``, at most
``limits.max_pending_feedback`` records) and is applied when the item arrives;
after the window it is dead-lettered ``unresolvable``. It is part of the
curator's snapshot, so a restart neither loses it nor applies it twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streamlabel.pipeline.batch import dead_letter
from streamlabel.pipeline.inputs import RawRecord
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import Feedback, SourceRef, decode, encode

__all__ = ["PendingFeedback", "Waiting"]


@dataclass(frozen=True)
class Waiting:
    """One feedback record waiting for its item (``since``: when it arrived, epoch seconds)."""

    feedback: Feedback
    raw: RawRecord | None
    since: float

    @property
    def item_id(self) -> str:
        """The id of the item it names."""
        assert self.feedback.item_id is not None
        return self.feedback.item_id


class PendingFeedback:
    """Feedback by id waiting for its item, by item id, oldest first.

    Args:
        capacity: records kept at most; 0 keeps none.
        wait_s: how long a record waits before it expires; 0 keeps none.

    Example:
        >>> pending, out = PendingFeedback(10, wait_s=60), EngineOutput()
        >>> pending.hold(Feedback(item_id="a", label="x"), None, now=0.0, out=out)
        >>> pending.hold(Feedback(item_id="b", label="x"), None, now=30.0, out=out)
        >>> [w.item_id for w in pending.take(["c", "a"])], len(pending)
        (['a'], 1)
        >>> pending.expire(90.0, out)
        >>> [(d.reason, d.error) for d in out.dead_letters]  # doctest: +NORMALIZE_WHITESPACE
        [('unresolvable', "item 'b' did not reach the learner's item cache within 60 s
          (limits.feedback_wait_s)")]
    """

    def __init__(self, capacity: int, *, wait_s: float) -> None:
        self.capacity = capacity
        self.wait_s = wait_s
        self._by_item: dict[str, list[Waiting]] = {}
        self._count = 0
        # no record is due before this (None: not known, scan); expire() is called every
        # step and scans only when something may be due
        self._next_due: float | None = None

    def __len__(self) -> int:
        return self._count

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._by_item

    def hold(
        self, feedback: Feedback, raw: RawRecord | None, *, now: float, out: EngineOutput
    ) -> None:
        """Keeps a feedback record naming an item not seen yet; dead-letters it
        ``unresolvable`` into ``out`` when it cannot wait (no window, or full)."""
        if feedback.item_id is not None and self._count < self.capacity and self.wait_s > 0:
            self._by_item.setdefault(feedback.item_id, []).append(Waiting(feedback, raw, now))
            self._count += 1
            if self._count == 1:
                self._next_due = now + self.wait_s
            elif self._next_due is not None:
                self._next_due = min(self._next_due, now + self.wait_s)
            return
        error = f"item {feedback.item_id!r} is not in the cache"
        if self.wait_s > 0:
            error += (
                f" and {self.capacity} feedback records already wait for their items "
                "(limits.max_pending_feedback)"
            )
        dead_letter(out, raw, feedback, "unresolvable", error)

    def take(self, item_ids: Iterable[str]) -> list[Waiting]:
        """Removes and returns the records naming any of ``item_ids``, oldest first."""
        if not self._by_item:
            return []
        found = [w for i in dict.fromkeys(item_ids) for w in self._by_item.pop(i, ())]
        self._count -= len(found)
        return sorted(found, key=lambda w: w.since)

    def expire(self, now: float, out: EngineOutput) -> None:
        """Dead-letters (``unresolvable``, into ``out``) the records that have waited
        ``wait_s`` or longer for their item, oldest first."""
        for w in self._expired(now):
            error = (
                f"item {w.item_id!r} did not reach the learner's item cache within "
                f"{self.wait_s:g} s (limits.feedback_wait_s)"
            )
            dead_letter(out, w.raw, w.feedback, "unresolvable", error)

    def _expired(self, now: float) -> list[Waiting]:
        if not self._by_item or (self._next_due is not None and now < self._next_due):
            return []
        gone: list[Waiting] = []
        for item_id in list(self._by_item):
            waiting = self._by_item[item_id]
            old = [w for w in waiting if now - w.since >= self.wait_s]
            if not old:
                continue
            gone.extend(old)
            rest = [w for w in waiting if now - w.since < self.wait_s]
            if rest:
                self._by_item[item_id] = rest
            else:
                del self._by_item[item_id]
        self._count -= len(gone)
        oldest = min((w.since for ws in self._by_item.values() for w in ws), default=None)
        self._next_due = None if oldest is None else oldest + self.wait_s
        return sorted(gone, key=lambda w: w.since)

    # ------------------------------------------------------------- snapshot
    def state(self) -> list[dict[str, Any]]:
        """Plain data (msgpack-able), oldest first."""
        everything = sorted((w for ws in self._by_item.values() for w in ws), key=lambda w: w.since)
        return [_state(w) for w in everything]

    def load(self, state: list[dict[str, Any]]) -> None:
        """Restores a :meth:`state` (records beyond the capacity are dropped, oldest kept).

        Raises:
            DecodeError: a record does not decode.
            KeyError, TypeError: the state is not a :meth:`state`.
        """
        self._by_item, self._count, self._next_due = {}, 0, None
        for entry in state[: self.capacity]:
            source = entry["source"]
            raw = None
            if source is not None:
                topic, partition, offset = source
                ref = SourceRef(topic=topic, partition=partition, offset=offset)
                raw = RawRecord(value=entry["value"], source=ref, key=entry["key"])
            fb = decode(entry["feedback"], Feedback)
            if fb.item_id is None:
                raise TypeError("pending feedback does not name an item")
            self._by_item.setdefault(fb.item_id, []).append(Waiting(fb, raw, float(entry["since"])))
            self._count += 1


def _state(w: Waiting) -> dict[str, Any]:
    raw = w.raw
    return {
        "feedback": encode(w.feedback),
        "value": raw.value if raw else None,
        "key": raw.key if raw else None,
        "source": [raw.source.topic, raw.source.partition, raw.source.offset] if raw else None,
        "since": w.since,
    }
