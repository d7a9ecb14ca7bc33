"""The learner on fake Kafka clients: feedback by id that arrives before its item waits.

* the feedback is neither dead-lettered nor applied until a worker's observation
  of the item arrives, then applied (class event, revised label);
* waiting feedback is in the snapshot, with the offsets past it: a restarted
  learner applies it when the item arrives, and applies it once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from kafka.structs import TopicPartition

from streamlabel.kafka.topics import Topics
from streamlabel.pipeline.output import Observed
from streamlabel.schemas import UNKNOWN, ClassEvent, Feedback, LabelRecord, decode, encode
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import HashEmbedder
from streamlabel.testing.kafka import FakeChangelog, FakeConsumer, FakePublisher, consumed
from streamlabel.workers.checkpoint import read_snapshot
from streamlabel.workers.learner import Learner

TOPICS = Topics("t.")
FEEDBACK = TopicPartition(TOPICS.feedback, 0)
DIM = 32


def by_id(offset: int, item_id: str, label: str) -> Any:
    return consumed(TOPICS.feedback, 0, offset, encode(Feedback(item_id=item_id, label=label)))


def observed(item_id: str, text: str) -> Observed:
    """What a worker labelled (unknown) and sends the learner."""
    return Observed(
        item_ids=[item_id],
        vectors=HashEmbedder(dim=DIM).embed([text]),
        texts=[text],
        labels=[UNKNOWN],
        revisions=[0],
        scores=np.zeros(1, np.float32),
        is_unknown=np.ones(1, bool),
    )


class Rig:
    """A started learner over fakes; it snapshots after every input record."""

    def __init__(self, state_dir: Path, polls: list[Any] = (), events: list[Any] = ()) -> None:
        settings = load_runtime_settings(
            None, kafka={"topic_prefix": "t."}, logging={"level": "warning"},
            learner={"state_dir": str(state_dir), "snapshot_every_records": 1},
            metrics={"enabled": False},
        )  # fmt: skip
        self.consumer = FakeConsumer({FEEDBACK}, polls=list(polls))
        self.publisher = FakePublisher(TOPICS)
        self.learner = Learner(
            settings, embedder=HashEmbedder(dim=DIM), consumer=self.consumer,
            publisher=self.publisher, changelog=FakeChangelog(events=list(events)),
        )  # fmt: skip
        assert self.learner.ready()

    def class_events(self) -> list[ClassEvent]:
        return [decode(r[2], ClassEvent) for r in self.publisher.on("classes")]

    def revisions(self) -> list[tuple[str, str, int, str | None]]:
        labels = [decode(r[2], LabelRecord) for r in self.publisher.on("labels")]
        return [(r.item_id, r.label, r.revision, r.reason) for r in labels]


def test_feedback_by_id_polled_before_its_item_is_applied_when_the_item_arrives(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, polls=[{FEEDBACK: [by_id(0, "w1", "haskell")]}])
    learner = rig.learner
    assert learner.step() == 1
    assert rig.publisher.on("dlq") == []
    assert rig.class_events() == []

    assert learner.observe(observed("w1", "haskell monad functor ghc")) is True
    learner.step()
    assert [(e.class_id, e.kind) for e in rig.class_events()] == [("haskell", "created")]
    assert rig.revisions() == [("w1", "haskell", 1, "feedback")]
    assert rig.publisher.on("dlq") == []


def test_waiting_feedback_survives_a_learner_restart_and_is_counted_once(tmp_path: Path) -> None:
    first = Rig(tmp_path, polls=[{FEEDBACK: [by_id(5, "w1", "haskell")]}])
    first.learner.step()  # the feedback waits; the snapshot holds it and the offset past it
    assert first.consumer.commit_history() == [{FEEDBACK: 6}]
    snap = read_snapshot(first.learner.path)
    assert snap is not None
    assert len(snap["engine"]["pending"]) == 1
    first.learner.close()  # the learner "dies" with the item not seen yet

    second = Rig(tmp_path)  # nothing to read again: the offset was past the feedback
    second.learner.observe(observed("w1", "haskell monad functor ghc"))
    second.learner.step()
    events = second.class_events()
    assert [(e.class_id, e.kind, e.state.count) for e in events] == [("haskell", "created", 1)]
    assert second.revisions() == [("w1", "haskell", 1, "feedback")]
    second.learner.close()

    third = Rig(tmp_path, events=events)  # restarted after it was applied
    third.learner.observe(observed("w1", "haskell monad functor ghc"))
    third.learner.step()
    assert third.class_events() == []
    assert third.revisions() == []
