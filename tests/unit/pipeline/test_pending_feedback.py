"""Feedback by id that reaches the curator before its item waits for it.

A stream worker publishes a label, then sends the item to the learner; a
person's feedback naming it can arrive first. It waits ``limits.feedback_wait_s``
(``limits.max_pending_feedback`` records at most), is applied when the item
arrives, and is dead-lettered ``unresolvable`` only after the window; it is in
the curator's state, so a restored curator applies it (once).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from topic_world import topic_texts

from streamlabel.pipeline import Engine, RawRecord
from streamlabel.pipeline.output import EngineOutput, Observed
from streamlabel.pipeline.pending import PendingFeedback
from streamlabel.schemas import Feedback, Item, SourceRef, encode
from streamlabel.testing import ManualClock


def teach(engine: Engine, topics: list[str]) -> list:
    events = []
    for t in topics:
        out = engine.learn([Feedback(text=x, label=t) for x in topic_texts(t, 30, 0)])
        events += out.class_events
    return events


def labelled(make_engine, learner: Engine, items: list[Item]) -> Observed:
    """What a worker replica of ``learner`` labelled and would send it."""
    worker = make_engine()
    worker.apply(teach(learner, ["python", "java"]))
    observed = worker.process(items).observed
    assert observed is not None
    return observed


def raw_feedback(offset: int, fb: Feedback) -> RawRecord:
    return RawRecord(encode(fb), SourceRef(topic="feedback", partition=0, offset=offset), b"k")


# ------------------------------------------------------------- the curator
def test_feedback_by_id_whose_item_arrives_later_is_applied_when_it_arrives(make_engine) -> None:
    learner = make_engine()
    observed = labelled(make_engine, learner, [Item(id="w1", text="haskell monad functor ghc")])
    early = learner.learn([Feedback(item_id="w1", label="haskell")])
    assert (early.dead_letters, early.class_events, early.labels) == ([], [], [])
    assert len(learner.curator.pending) == 1

    out = learner.observe(observed)
    assert [(e.kind, e.class_id) for e in out.class_events] == [("created", "haskell")]
    assert [(r.item_id, r.label, r.revision, r.reason) for r in out.labels] == [
        ("w1", "haskell", 1, "feedback")
    ]
    assert len(learner.curator.pending) == 0
    assert learner.observe(observed).class_events == []  # applied once


def test_feedback_by_id_for_an_item_never_seen_is_dead_lettered_after_the_window(
    make_engine, clock: ManualClock
) -> None:
    engine = make_engine(limits={"feedback_wait_s": 60})
    out = engine.learn([raw_feedback(7, Feedback(item_id="never-seen", label="python"))])
    assert (out.class_events, out.dead_letters) == ([], [])
    clock.advance(59.9)
    assert engine.settle_feedback().dead_letters == []
    clock.advance(0.1)
    dead = engine.settle_feedback().dead_letters
    assert [(d.reason, d.source.offset if d.source else None) for d in dead] == [
        ("unresolvable", 7)
    ]
    assert "within 60 s (limits.feedback_wait_s)" in dead[0].error
    assert engine.settle_feedback().dead_letters == []  # dead-lettered once
    assert engine.store.states() == {}


def test_feedback_beyond_max_pending_feedback_is_dead_lettered_at_once(make_engine) -> None:
    engine = make_engine(limits={"max_pending_feedback": 2})
    out = engine.learn([Feedback(item_id=f"i{k}", label="python") for k in range(3)])
    assert [d.reason for d in out.dead_letters] == ["unresolvable"]
    assert "limits.max_pending_feedback" in out.dead_letters[0].error
    assert len(engine.curator.pending) == 2


def test_one_process_applies_waiting_feedback_when_its_item_is_labelled(make_engine) -> None:
    engine = make_engine()
    teach(engine, ["python", "java"])
    assert engine.learn([Feedback(item_id="h1", label="haskell")]).dead_letters == []
    out = engine.process([Item(id="h1", text="haskell monad functor ghc")])
    assert [e.class_id for e in out.class_events] == ["haskell"]
    revised = [(r.item_id, r.label, r.revision) for r in out.labels if r.revision > 0]
    assert revised == [("h1", "haskell", 1)]


def test_a_second_feedback_for_a_waiting_item_waits_behind_the_first(make_engine) -> None:
    learner = make_engine()
    observed = labelled(make_engine, learner, [Item(id="w1", text="haskell monad functor ghc")])
    learner.learn([Feedback(item_id="w1", label="css")])
    learner.learn([Feedback(item_id="w1", label="haskell")])  # a correction
    out = learner.observe(observed)
    assert sorted(e.class_id for e in out.class_events) == ["css", "haskell"]
    assert [r.label for r in out.labels] == ["haskell"]  # the later feedback wins


def test_waiting_feedback_survives_a_state_round_trip_and_is_applied_once(make_engine) -> None:
    learner = make_engine()
    observed = labelled(make_engine, learner, [Item(id="w1", text="haskell monad functor ghc")])
    learner.learn([raw_feedback(3, Feedback(item_id="w1", label="haskell"))])
    state = msgpack.unpackb(msgpack.packb(learner.state()), raw=False)

    restored = make_engine()
    restored.load_state(state)
    assert len(restored.curator.pending) == 1
    out = restored.observe(observed)
    assert [e.class_id for e in out.class_events] == ["haskell"]
    assert restored.store.get("haskell").count == 1
    again = make_engine()
    again.load_state(restored.state())  # after it was applied: nothing waits any more
    assert len(again.curator.pending) == 0
    assert again.observe(observed).class_events == []


def test_a_state_without_waiting_feedback_loads(make_engine) -> None:
    engine = make_engine()
    state = engine.state()
    del state["pending"]  # a snapshot written before feedback could wait
    engine.load_state(state)
    assert len(engine.curator.pending) == 0


# ------------------------------------------------------------- the waiting room
def test_pending_feedback_gives_back_what_waited_for_an_item_oldest_first() -> None:
    pending = PendingFeedback(10, wait_s=60)
    out = EngineOutput()
    for k, item in enumerate(["a", "b", "a"]):
        pending.hold(Feedback(item_id=item, label=f"l{k}"), None, now=float(k), out=out)
    assert "a" in pending
    assert [w.feedback.label for w in pending.take(["a", "zzz"])] == ["l0", "l2"]
    assert (len(pending), "a" in pending) == (1, False)
    assert out.dead_letters == []


def test_pending_feedback_expires_only_what_waited_the_whole_window() -> None:
    pending = PendingFeedback(10, wait_s=10)
    out = EngineOutput()
    pending.hold(Feedback(item_id="a", label="x"), None, now=0.0, out=out)
    pending.hold(Feedback(item_id="a", label="y"), None, now=5.0, out=out)
    pending.expire(10.0, out)
    assert [d.reason for d in out.dead_letters] == ["unresolvable"]
    assert [w.feedback.label for w in pending.take(["a"])] == ["y"]


class _CountingDict(dict[str, Any]):
    """Counts full scans of the waiting records (``list(d)`` iterates the keys)."""

    scans = 0

    def __iter__(self) -> Iterator[str]:
        _CountingDict.scans += 1
        return super().__iter__()


def test_pending_feedback_scans_for_expired_records_only_when_one_may_be_due() -> None:
    """expire() runs every learner step: before the oldest record's deadline it does no
    work; at the deadline it expires that one and knows the next deadline; after a
    restore it scans once to learn it."""
    pending = PendingFeedback(10, wait_s=10)
    out = EngineOutput()
    pending.hold(Feedback(item_id="a", label="x"), None, now=0.0, out=out)
    pending.hold(Feedback(item_id="b", label="y"), None, now=4.0, out=out)
    pending._by_item = _CountingDict(pending._by_item)
    _CountingDict.scans = 0
    for now in (1.0, 5.0, 9.9):
        pending.expire(now, out)
    assert _CountingDict.scans == 0
    assert out.dead_letters == []
    pending.expire(10.0, out)  # a is due
    assert _CountingDict.scans == 1
    assert len(out.dead_letters) == 1
    pending.expire(13.9, out)  # b is due at 14
    assert _CountingDict.scans == 1
    pending.expire(14.0, out)
    assert len(out.dead_letters) == 2
    assert len(pending) == 0
    again = PendingFeedback(10, wait_s=10)
    pending.hold(Feedback(item_id="c", label="z"), None, now=20.0, out=out)
    again.load(pending.state())
    again.expire(29.9, out)  # restored: not known yet, one scan learns the deadline
    again.expire(30.0, out)
    assert len(out.dead_letters) == 3


@pytest.mark.parametrize("raw", [None, raw_feedback(9, Feedback(item_id="a", label="x"))])
def test_pending_feedback_state_round_trips(raw: RawRecord | None) -> None:
    pending = PendingFeedback(10, wait_s=10)
    pending.hold(Feedback(item_id="a", label="x"), raw, now=2.5, out=EngineOutput())
    again = PendingFeedback(10, wait_s=10)
    again.load(msgpack.unpackb(msgpack.packb(pending.state()), raw=False))
    [w] = again.take(["a"])
    assert (w.feedback, w.raw, w.since) == (Feedback(item_id="a", label="x"), raw, 2.5)
