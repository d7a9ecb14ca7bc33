"""The learner's inputs on fake Kafka clients: a bad record is dead-lettered, the learner lives.

A wrong-dimension ``unknowns`` record used to raise in ``absorb`` (StoreError or a
``np.stack`` ValueError) and crash-loop the learner; a 600 KB feedback text went
into the exemplar reservoir and into an oversized class event.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from kafka.structs import TopicPartition

from streamlabel.kafka.topics import Topics
from streamlabel.schemas import ClassEvent, Feedback, UnknownRecord, decode, encode
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import HashEmbedder
from streamlabel.testing.kafka import FakeChangelog, FakeConsumer, FakePublisher, consumed
from streamlabel.workers.learner import Learner

TOPICS = Topics("t.")
FEEDBACK = TopicPartition(TOPICS.feedback, 0)
UNKNOWNS = TopicPartition(TOPICS.unknowns, 0)


def unknown(item_id: str, dim: int) -> bytes:
    vector = np.ones(dim, np.float32) / np.sqrt(dim)
    return encode(UnknownRecord(item_id=item_id, text="x", vector=vector, score=0.1,
                                revision=0, store_version=0))  # fmt: skip


def test_a_wrong_dimension_unknown_and_oversized_feedback_leave_the_learner_running(
    tmp_path: Path,
) -> None:
    settings = load_runtime_settings(
        None, kafka={"topic_prefix": "t."}, learner={"state_dir": str(tmp_path)},
        logging={"level": "warning"}, metrics={"enabled": False},
    )  # fmt: skip
    huge = "word " * 120_000  # 600 KB
    polls = [{
        UNKNOWNS: [consumed(TOPICS.unknowns, 0, 0, unknown("ok", 32)),
                   consumed(TOPICS.unknowns, 0, 1, unknown("bad", 16))],
        FEEDBACK: [consumed(TOPICS.feedback, 0, 5, encode(Feedback(text=huge, label="big"))),
                   consumed(TOPICS.feedback, 0, 6, encode(Feedback(text=huge, label="big"))),
                   consumed(TOPICS.feedback, 0, 7, encode(Feedback(text="python", label="py")))],
    }]  # fmt: skip
    publisher = FakePublisher(TOPICS)
    learner = Learner(
        settings, embedder=HashEmbedder(dim=32), consumer=FakeConsumer({FEEDBACK, UNKNOWNS},
        polls=polls), publisher=publisher, changelog=FakeChangelog(),
    )  # fmt: skip
    assert learner.ready()
    assert learner.step() == 5
    dead = sorted(
        (h["error.reason"], h["source.topic"], int(h["source.offset"]))
        for h in ({k: v.decode() for k, v in r[3]} for r in publisher.on("dlq"))
    )
    assert dead == [
        ("bad_vector", "t.unknowns", 1), ("oversized", "t.feedback", 5),
        ("oversized", "t.feedback", 6),
    ]  # fmt: skip
    events = [decode(r[2], ClassEvent) for r in publisher.on("classes")]
    assert [e.class_id for e in events] == ["py"]
    assert learner.stats()["buffered"] == 1  # the good unknown
    assert learner.step() == 0  # still alive


def test_a_learner_writes_one_epoch_above_the_changelogs(tmp_path: Path) -> None:
    """Its class events carry learner.epoch = the highest on the changelog + 1: readers
    then ignore a stale learner that still writes with the older epoch."""
    settings = load_runtime_settings(
        None, kafka={"topic_prefix": "t."}, learner={"state_dir": str(tmp_path)},
        logging={"level": "warning"}, metrics={"enabled": False},
    )  # fmt: skip
    polls = [{FEEDBACK: [consumed(TOPICS.feedback, 0, 0, encode(Feedback(text="py", label="py")))]}]
    publisher = FakePublisher(TOPICS)
    learner = Learner(
        settings, embedder=HashEmbedder(dim=32), consumer=FakeConsumer({FEEDBACK}, polls=polls),
        publisher=publisher, changelog=FakeChangelog(epoch=4),
    )  # fmt: skip
    assert learner.ready()
    learner.step()
    (event,) = publisher.on("classes")
    assert dict(event[3])["learner.epoch"] == b"5"
