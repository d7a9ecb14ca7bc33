"""The ``classes`` changelog reader: catching up keeps the latest event of each class.

A fake consumer serves the changelog in the batches it is asked for, encoding
each record as it is polled, so what the reader holds is all that grows.
"""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import numpy as np
import structlog
from kafka.structs import TopicPartition

from streamlabel.core.store import PrototypeStore, StoreConfig
from streamlabel.kafka.changelog import CATCH_UP_BATCH, LEARNER_OFFSETS_HEADER, ClassTail
from streamlabel.kafka.topics import Topics
from streamlabel.schemas import ClassEvent, ClassState, encode
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import ManualClock
from streamlabel.testing.kafka import FakeChangelog, FakeConsumer, consumed

DIM = 16
TOPICS = Topics("t.")
TP = TopicPartition(TOPICS.classes, 0)


def _state(class_id: str, version: int, *, name: str | None = None) -> ClassState:
    x = np.random.default_rng(version).standard_normal((16, DIM)).astype(np.float32)
    return ClassState.model_validate({
        "class_id": class_id, "name": name or class_id, "status": "known",
        "origin": "feedback", "count": 16, "mean": x.mean(axis=0), "exemplars": x,
        "created_version": 1, "updated_version": version, "created_at": 0.0,
        "updated_at": float(version),
    })  # fmt: skip


def _event(state: ClassState) -> ClassEvent:
    return ClassEvent(
        kind="updated", class_id=state.class_id, state=state, store_version=state.updated_version
    )


class ChangelogConsumer(FakeConsumer):
    """Serves ``make(offset)`` for offsets ``[0, end)``, ``max_records`` a poll."""

    def __init__(self, end: int, make: Any) -> None:
        super().__init__([TP], highwater={TP: end}, positions={TP: 0})
        self.end = end
        self.make = make

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        self.asked.append(max_records)
        start = self.positions[TP]
        stop = min(self.end, start + (max_records or self.end))
        self.positions[TP] = stop
        if start == stop:
            return {}
        return {TP: [self.make(o) for o in range(start, stop)]}


def _tail(consumer: FakeConsumer) -> ClassTail:
    return ClassTail(load_runtime_settings(), TOPICS, structlog.get_logger(), consumer=consumer)


def _one_class_record(offset: int) -> Any:
    raw = encode(_event(_state("c", offset + 1)))
    headers = [(LEARNER_OFFSETS_HEADER, json.dumps({"t.feedback:0": offset}).encode())]
    return consumed(TOPICS.classes, 0, offset, raw, key=b"c", headers=headers)


def _catch_up_peak(events: int) -> tuple[list[ClassEvent], ClassTail, int]:
    tail = _tail(ChangelogConsumer(events, _one_class_record))
    tracemalloc.start()
    try:
        got = tail.catch_up(stall_timeout_s=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return got, tail, peak


def test_catching_up_on_5000_events_of_one_class_holds_one_event() -> None:
    """The reader reduces as it reads: its peak memory does not grow with the events."""
    few, _, few_peak = _catch_up_peak(500)
    got, tail, peak = _catch_up_peak(5000)
    assert [e.state.updated_version for e in few] == [500]
    assert [e.state.updated_version for e in got] == [5000]
    assert got[0].state == _state("c", 5000)
    assert tail.learner_offsets == {"t.feedback:0": 4999}  # the last event's header
    assert peak < few_peak * 1.5 + 256 * 1024, (few_peak, peak)


def test_catch_up_polls_in_bounded_batches() -> None:
    """Each poll asks for at most ``CATCH_UP_BATCH`` records (raw bytes held at once)."""
    consumer = ChangelogConsumer(1200, _one_class_record)
    _tail(consumer).catch_up(stall_timeout_s=5)
    assert consumer.asked
    assert set(consumer.asked) == {CATCH_UP_BATCH}


def test_catch_up_keeps_the_latest_state_of_each_class_like_applying_every_event() -> None:
    """Latest by ``updated_version`` (a tie: the later event); the same store as a full replay."""
    events = [
        _event(_state("a", 1)),
        _event(_state("b", 2)),
        _event(_state("a", 4)),
        _event(_state("b", 3)),
        _event(_state("a", 2)),  # older than what "a" holds: ignored by a store too
        _event(_state("b", 3, name="renamed")),  # same version, later: wins
        _event(_state("c", 5)),
    ]

    def record(offset: int) -> Any:
        return consumed(TOPICS.classes, 0, offset, encode(events[offset]))

    got = _tail(ChangelogConsumer(len(events), record)).catch_up(stall_timeout_s=5)
    assert [(e.class_id, e.state.updated_version) for e in got] == [("a", 4), ("b", 3), ("c", 5)]
    assert got[1].state.name == "renamed"
    assert max(e.store_version for e in got) == max(e.store_version for e in events)
    full, reduced = (PrototypeStore(DIM, StoreConfig(), clock=ManualClock()) for _ in range(2))
    for e in events:
        full.apply(e)
    for e in got:
        reduced.apply(e)
    assert reduced.states() == full.states()
    assert reduced.version == full.version


def test_the_fake_changelog_catches_up_like_the_reader() -> None:
    """``FakeChangelog.catch_up`` also hands back the latest event of each class."""
    events = [_event(_state("a", 1)), _event(_state("a", 3)), _event(_state("b", 2))]
    got = FakeChangelog(events).catch_up()
    assert [(e.class_id, e.state.updated_version) for e in got] == [("a", 3), ("b", 2)]


def test_a_bad_record_on_the_changelog_is_skipped_not_fatal() -> None:
    """A tombstone, garbage, or a malformed learner.offsets header used to stop every replica."""
    good = [_event(_state("a", 1)), _event(_state("b", 2)), _event(_state("a", 3))]
    records = [
        consumed(TOPICS.classes, 0, 0, encode(good[0])),
        consumed(TOPICS.classes, 0, 1, None, key=b"a"),  # a tombstone
        consumed(TOPICS.classes, 0, 2, b"\xc1 garbage"),
        consumed(TOPICS.classes, 0, 3, encode(good[1]),
                 headers=[(LEARNER_OFFSETS_HEADER, b"{not json")]),
        consumed(TOPICS.classes, 0, 4, encode(good[2]),
                 headers=[(LEARNER_OFFSETS_HEADER, b'{"t.feedback:0": 7}')]),
    ]  # fmt: skip
    tail = _tail(ChangelogConsumer(len(records), lambda o: records[o]))
    got = tail.catch_up(stall_timeout_s=5)
    assert [(e.class_id, e.state.updated_version) for e in got] == [("a", 3), ("b", 2)]
    assert tail.skipped == 2
    assert tail.learner_offsets == {"t.feedback:0": 7}


def test_a_replica_skips_an_event_its_store_refuses() -> None:
    """An event of another dimension is logged and skipped; the events after it apply."""
    from streamlabel.pipeline import load_settings
    from streamlabel.pipeline.labeler import Labeler
    from streamlabel.testing import HashEmbedder

    labeler = Labeler(load_settings(), HashEmbedder(dim=DIM))
    wrong = ClassEvent(kind="created", class_id="w", state=_wide_state(), store_version=1)
    assert labeler.apply([wrong, _event(_state("a", 2))]) == 1
    assert labeler.store.active_ids() == ["a"]


def _wide_state() -> ClassState:
    x = np.ones((4, DIM * 2), np.float32)
    return ClassState.model_validate({
        "class_id": "w", "name": "w", "status": "known", "origin": "feedback", "count": 4,
        "mean": x.mean(axis=0), "exemplars": x, "created_version": 1, "updated_version": 1,
        "created_at": 0.0, "updated_at": 1.0,
    })  # fmt: skip


def test_events_of_a_stale_learner_are_fenced_by_the_writer_epoch() -> None:
    """Two learners at once: once a newer learner's epoch is seen, the older one's
    events are ignored by every reader."""
    from streamlabel.kafka.changelog import LEARNER_EPOCH_HEADER

    def rec(offset: int, version: int, epoch: int | None) -> Any:
        headers = [] if epoch is None else [(LEARNER_EPOCH_HEADER, str(epoch).encode())]
        return consumed(TOPICS.classes, 0, offset, encode(_event(_state("a", version))),
                        headers=headers)  # fmt: skip

    records = [rec(0, 1, None), rec(1, 2, 1), rec(2, 3, 2), rec(3, 9, 1), rec(4, 4, 2)]
    tail = _tail(ChangelogConsumer(len(records), lambda o: records[o]))
    got = tail.poll(timeout_ms=0)
    assert [e.state.updated_version for e in got] == [1, 2, 3, 4]  # version 9 came from epoch 1
    assert (tail.epoch, tail.fenced) == (2, 1)
    tail.reset()  # a recreated changelog: its writers start over
    assert tail.epoch == 0
