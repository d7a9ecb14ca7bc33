"""Broker-reset pieces without a broker: the topic-id watch, the learner's reset
generations, and a producer that cannot be built counting as a failed delivery."""

from __future__ import annotations

import os
from typing import Any

import pytest

from streamlabel.errors import PublishError
from streamlabel.kafka.broker_watch import BrokerWatch
from streamlabel.kafka.topics import Topics
from streamlabel.settings.runtime import KafkaSettings, load_runtime_settings
from streamlabel.workers.learner import Learner

TOPICS = Topics("t.")


class FakeAdmin:
    """list_topics/describe_topics over a dict name -> topic id; can be made to fail."""

    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = dict(ids)
        self.down = False

    def list_topics(self) -> list[str]:
        if self.down:
            raise ConnectionError("broker away")
        return list(self.ids)

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"name": n, "topic_id": self.ids[n], "error_code": 0} for n in names]

    def close(self) -> None:
        pass


def watch_with(admin: FakeAdmin) -> BrokerWatch:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", bootstrap_timeout_ms=1000)
    watch = BrokerWatch(kafka, TOPICS)
    watch._admin = admin
    return watch


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


def test_a_failed_baseline_never_makes_healthy_topics_look_recreated() -> None:
    admin = FakeAdmin(ids("1"))
    watch = watch_with(admin)
    admin.down = True
    assert watch.baseline() == {}
    watch._admin = admin  # the watch drops its client after a failure; give it back
    assert watch.changed() is None  # cannot ask: no verdict
    admin.down = False
    watch._admin = admin
    assert watch.changed() == []  # the first answer becomes the baseline
    assert watch.changed() == []


def test_topics_without_a_real_id_are_not_watched() -> None:
    zero = dict.fromkeys(TOPICS.all(), "00000000-0000-0000-0000-000000000000")
    admin = FakeAdmin(zero)
    watch = watch_with(admin)
    assert watch.baseline() == {}
    admin.ids = ids("2")
    assert watch.changed() == []  # the first usable ids become the baseline


@pytest.fixture
def learner(monkeypatch: pytest.MonkeyPatch) -> Learner:
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)
    import structlog

    saved = structlog.get_config()
    learner = Learner(load_runtime_settings(), broker_generation=1)
    structlog.configure(**saved)
    return learner


def test_a_reset_generation_is_handled_once(learner: Learner) -> None:
    learner.broker_reset(1)  # the reset this learner was created after
    assert not learner._reset_requested.is_set()
    learner.broker_reset(2)
    assert learner._reset_requested.is_set()
    learner._reset_requested.clear()
    learner.broker_reset(2)  # told twice: the inputs are not read from the start again
    assert not learner._reset_requested.is_set()


def test_a_producer_that_cannot_be_built_is_a_failed_delivery() -> None:
    from streamlabel.kafka.io import Publisher

    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", bootstrap_timeout_ms=1000)
    publisher = Publisher(settings, TOPICS)
    with pytest.raises(PublishError, match="no producer"):
        publisher.send(TOPICS.labels, b"k", b"v")
