"""A stream worker reads its items topic through ``kafka.items_mapping``.

The worker hands the mapping from its settings to its labeler: a foreign record
(a JSON object with its own field names) is labelled under its own id, and one
without an id under its position; fake Kafka clients, no broker, no Ray.
"""

from __future__ import annotations

import json

from kafka.structs import TopicPartition

from streamlabel.kafka.topics import Topics
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import HashEmbedder, ManualClock
from streamlabel.testing.kafka import FakeChangelog, FakeConsumer, FakePublisher, consumed
from streamlabel.workers.stream_worker import StreamWorker

ITEMS = "t.items"
P0 = TopicPartition(ITEMS, 0)


def test_a_worker_labels_foreign_records_through_the_configured_mapping() -> None:
    records = [
        {"ticket_id": 17, "body": "printer on fire", "customer": "acme"},
        {"body": "a ticket without an id"},
        {"ticket_id": 18, "subject": "no body"},
    ]
    messages = [
        consumed(ITEMS, 0, 40 + i, json.dumps(r).encode(), None) for i, r in enumerate(records)
    ]
    consumer = FakeConsumer({P0}, highwater={P0: 43}, positions={P0: 43}, polls=[{P0: messages}])
    publisher = FakePublisher(Topics("t."))
    settings = load_runtime_settings(
        None,
        kafka={"topic_prefix": "t.", "format": {"items": "json"},
               "items_mapping": {"id_field": "ticket_id", "text_field": "body"}},
        worker={"batch_size": 16},
        logging={"level": "warning"},
        metrics={"enabled": False},
    )  # fmt: skip
    worker = StreamWorker(
        settings, "worker-t", embedder=HashEmbedder(dim=32), consumer=consumer,
        publisher=publisher, changelog=FakeChangelog(), clock=ManualClock(10_000.0),
    )  # fmt: skip
    try:
        assert worker.ready()
        assert worker.step() == 3
        assert sorted(r.item_id for r in publisher.labels()) == ["17", "t.items:0:41"]
        (letter,) = [r for batch in publisher.sent for r in batch if r[0] == "t.dlq"]
        assert letter[1] == b"t.items:0:42"
        assert ("error.reason", b"invalid") in letter[3]
    finally:
        worker.close()
