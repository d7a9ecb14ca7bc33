"""Broker-reset pieces without a broker: the topic-id watch, who recovers from which
recreated topic, and a producer that cannot be built counting as a failed delivery
(the learner's reset generations: ``tests/unit/workers/test_learner_checkpoint.py``)."""

from __future__ import annotations

import pytest

from streamlabel.errors import PublishError
from streamlabel.kafka.broker_watch import BrokerWatch, ResetScope, reset_scope
from streamlabel.kafka.topics import Topics
from streamlabel.settings.kafka import KafkaSettings
from streamlabel.testing.kafka import FakeAdmin

TOPICS = Topics("t.")


def watch_with(admin: FakeAdmin) -> BrokerWatch:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", bootstrap_timeout_ms=1000)
    return BrokerWatch(kafka, TOPICS, make=lambda settings: admin)


def ids(suffix: str) -> dict[str, str]:
    return {name: f"{k:08x}-0000-7000-8000-{suffix:0>12}" for k, name in enumerate(TOPICS.all())}


def test_recreated_and_missing_topics_are_reported() -> None:
    admin = FakeAdmin(ids("1"))
    watch = watch_with(admin)
    watch.baseline()
    assert watch.changed() == []
    admin.ids[TOPICS.items] = "ffffffff-0000-7000-8000-000000000009"  # recreated
    del admin.ids[TOPICS.classes]  # gone
    assert watch.changed() == sorted([TOPICS.items, TOPICS.classes])


def test_only_a_recreated_input_or_changelog_is_recovered_from() -> None:
    t = TOPICS
    assert reset_scope(t, [t.dlq]) == ResetScope()  # a purged dlq: nothing replayed
    assert reset_scope(t, [t.labels, t.alerts]) == ResetScope()
    assert reset_scope(t, [t.feedback]) == ResetScope(learner=(t.feedback,))
    assert reset_scope(t, [t.unknowns, t.dlq]) == ResetScope(learner=(t.unknowns,))
    assert reset_scope(t, [t.items]) == ResetScope(workers=True)
    assert reset_scope(t, [t.classes]) == ResetScope(learner=(t.classes,), workers=True)
    whole = reset_scope(t, t.all())  # a broker that restarted empty
    assert whole == ResetScope(learner=(t.feedback, t.unknowns, t.classes), workers=True)


def test_a_failed_baseline_never_makes_healthy_topics_look_recreated() -> None:
    admin = FakeAdmin(ids("1"))
    watch = watch_with(admin)
    admin.down = True
    assert watch.baseline() == {}
    assert watch.changed() is None  # cannot ask: no verdict (the client is built again)
    admin.down = False
    assert watch.changed() == []  # the first answer becomes the baseline
    assert watch.changed() == []


def test_topics_without_a_real_id_are_not_watched() -> None:
    zero = dict.fromkeys(TOPICS.all(), "00000000-0000-0000-0000-000000000000")
    admin = FakeAdmin(zero)
    watch = watch_with(admin)
    assert watch.baseline() == {}
    admin.ids = ids("2")
    assert watch.changed() == []  # the first usable ids become the baseline


def test_a_producer_that_cannot_be_built_is_a_failed_delivery() -> None:
    from streamlabel.kafka.publisher import Publisher

    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", bootstrap_timeout_ms=1000)
    publisher = Publisher(settings, TOPICS)
    with pytest.raises(PublishError, match="no producer"):
        publisher.send(TOPICS.labels, b"k", b"v")
