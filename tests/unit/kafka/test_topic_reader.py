"""TopicReader: what ``streamlabel tail`` and the tests read a topic with."""

from __future__ import annotations

import json

from streamlabel.kafka.client import TopicReader
from streamlabel.kafka.topics import Topics
from streamlabel.schemas import Item, LabelRecord, encode
from streamlabel.settings.kafka import KafkaSettings
from streamlabel.testing.broker import MemoryBroker
from streamlabel.testing.records import label


def _settings(**overrides: object) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers="127.0.0.1:9092", topic_prefix="t.", **overrides)


def test_a_foreign_items_topic_reads_through_the_items_mapping() -> None:
    """``tail items`` shows a foreign JSON topic as the workers read it, ids included."""
    settings = _settings(items_mapping={"id_field": "ticket_id", "text_field": "body"})
    topics = Topics.of(settings)
    broker = MemoryBroker.deployment(topics, partitions=1)
    broker.append(
        topics.items, None, json.dumps({"ticket_id": 17, "body": "printer on fire"}).encode()
    )
    broker.append(topics.items, None, json.dumps({"body": "no id here"}).encode())
    broker.append(topics.items, b"i-1", encode(Item(id="i-1", text="an envelope")))
    broker.append(topics.items, None, b"\xff not a record")
    reader = TopicReader(settings, "items", consumer=broker.consumer(settings))
    items = reader.records()
    assert [(i.id, i.text) for i in items if isinstance(i, Item)] == [
        ("17", "printer on fire"),
        (f"{topics.items}:0:1", "no id here"),
        ("i-1", "an envelope"),
    ]


def test_other_topics_decode_their_own_record_type() -> None:
    settings = _settings()
    topics = Topics.of(settings)
    broker = MemoryBroker.deployment(topics, partitions=1)
    record = label("i-1", "billing")
    broker.append(topics.labels, b"i-1", encode(record))
    [got] = TopicReader(settings, "labels", consumer=broker.consumer(settings)).records()
    assert isinstance(got, LabelRecord)
    assert got == record
