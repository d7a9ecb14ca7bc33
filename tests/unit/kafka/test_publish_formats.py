"""Everything streamlabel publishes goes out in its topic's ``kafka.format.<topic>``.

The publisher encodes a step's labels, unknowns, class events, alerts and
command results each in its topic's format; the client's ``produce_items`` and
``produce_feedback`` likewise; dead letters keep the failed message's own bytes.
A fake producer records the sends (no broker).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamlabel.kafka.client import produce_feedback, produce_items
from streamlabel.kafka.publisher import Publisher
from streamlabel.kafka.topics import Topics
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import (
    ClassEvent,
    ClassState,
    DeadLetter,
    DriftAlert,
    Feedback,
    Item,
    LabelRecord,
    Record,
    SourceRef,
    UnknownRecord,
    decode,
)
from streamlabel.schemas.commands import CommandResult
from streamlabel.settings.kafka import KafkaSettings
from streamlabel.testing.kafka import FakeProducer

TOPICS = Topics("t.")
PUBLISHED = ("labels", "unknowns", "classes", "alerts", "command_results")
"""The topics a step's output goes to, besides the dlq."""


def _output() -> EngineOutput:
    state = ClassState(
        class_id="c", name="c", status="known", origin="feedback", count=1, mean=(1.0, 0.0),
        created_version=1, updated_version=1, created_at=0.0, updated_at=0.0,
    )  # fmt: skip
    return EngineOutput(
        labels=[LabelRecord(item_id="a", label="c", score=0.9, margin=0.2, is_unknown=False,
                            store_version=1, model_id="m", emitted_at=1.0)],
        unknowns=[UnknownRecord(item_id="b", vector=(0.5, 0.5), score=0.1, store_version=1)],
        class_events=[ClassEvent(kind="created", class_id="c", state=state, store_version=1)],
        alerts=[DriftAlert(alert_id="a-1", kind="unknown_rate", statistic=3.0, threshold=2.0,
                           window=10, reference=20, at_item=30, severity="warning",
                           detail="up", store_version=1, emitted_at=2.0)],
        dead_letters=[DeadLetter(source=SourceRef(topic="t.items", partition=0, offset=4),
                                 key=b"k", value=b"\xc1 raw bytes", reason="not_msgpack",
                                 error="bad")],
        command_results=[CommandResult(command_id="cmd-1", kind="rename", status="applied",
                                       store_version=2, issued_by="alice", at=3.0)],
    )  # fmt: skip


def _settings(**formats: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers="127.0.0.1:9", format=formats)  # type: ignore[arg-type]


def _publish(settings: KafkaSettings, out: EngineOutput) -> FakeProducer:
    fake = FakeProducer()
    publisher = Publisher(settings, TOPICS, make=lambda s: fake)
    publisher.publish(out)
    publisher.flush()
    return fake


def _format_of(value: bytes) -> str:
    if value[:1] == b"{":
        json.loads(value)  # one whole JSON object
        return "json"
    return "msgpack" if value[0] in {*range(0x80, 0x90), 0xDE, 0xDF} else "other"


def _records(out: EngineOutput) -> dict[str, Record]:
    return {
        "labels": out.labels[0], "unknowns": out.unknowns[0], "classes": out.class_events[0],
        "alerts": out.alerts[0], "command_results": out.command_results[0],
    }  # fmt: skip


@pytest.mark.parametrize("kind", PUBLISHED)
def test_a_topic_set_to_json_gets_json_and_the_others_stay_msgpack(kind: str) -> None:
    out = _output()
    fake = _publish(_settings(**{kind: "json"}), out)
    expected = _records(out)
    for other in PUBLISHED:
        (sent,) = fake.on(TOPICS.name(other))
        assert _format_of(sent["value"]) == ("json" if other == kind else "msgpack"), other
        record = expected[other]
        assert decode(sent["value"], type(record)) == record  # a reader takes either
    envelope = json.loads(fake.on(TOPICS.name(kind))[0]["value"])
    assert envelope["v"] == 1
    assert set(envelope) == {"v", "t", "d"}


def test_every_topic_in_json_at_once() -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:9", format="json")  # type: ignore[arg-type]
    fake = _publish(settings, _output())
    assert {_format_of(fake.on(TOPICS.name(k))[0]["value"]) for k in PUBLISHED} == {"json"}


def test_by_default_every_topic_is_msgpack() -> None:
    fake = _publish(_settings(), _output())
    assert {_format_of(fake.on(TOPICS.name(k))[0]["value"]) for k in PUBLISHED} == {"msgpack"}


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_a_dead_letter_carries_the_failed_messages_own_bytes_whatever_the_formats(
    fmt: str,
) -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:9", format=fmt)  # type: ignore[arg-type]
    (sent,) = _publish(settings, _output()).on(TOPICS.dlq)
    assert sent["value"] == b"\xc1 raw bytes"


def _client_publisher(settings: KafkaSettings) -> tuple[Publisher, FakeProducer]:
    fake = FakeProducer()
    return Publisher(settings, Topics.of(settings), make=lambda s: fake), fake


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_produce_items_and_feedback_write_their_topics_formats(fmt: str) -> None:
    settings = KafkaSettings(
        bootstrap_servers="127.0.0.1:9", topic_prefix="t.",
        format={"items": fmt, "feedback": fmt},  # type: ignore[arg-type]
    )  # fmt: skip
    publisher, fake = _client_publisher(settings)
    item, fb = Item(id="i-1", text="printer on fire"), Feedback(item_id="i-1", label="hardware")
    assert produce_items(settings, [item], publisher=publisher) == 1
    assert produce_feedback(settings, [fb], publisher=publisher) == 1
    sent: dict[str, Any] = {s["topic"]: s for s in fake.sent}
    assert _format_of(sent["t.items"]["value"]) == fmt
    assert _format_of(sent["t.feedback"]["value"]) == fmt
    assert decode(sent["t.items"]["value"], Item) == item
    assert decode(sent["t.feedback"]["value"], Feedback) == fb
    assert sent["t.items"]["key"] == b"i-1"
