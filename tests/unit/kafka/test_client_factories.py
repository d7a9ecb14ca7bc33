"""The consumer factory: what every streamlabel consumer is built with."""

from __future__ import annotations

from typing import Any, ClassVar

import kafka
import pytest

from streamlabel.kafka.io import make_consumer
from streamlabel.settings.kafka import KafkaSettings


class _Recorder:
    built: ClassVar[dict[str, Any]] = {}

    def __init__(self, **kwargs: Any) -> None:
        _Recorder.built = kwargs

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.topics = topics


def test_a_consumer_waits_at_the_broker_only_as_long_as_the_setting_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kafka-python's 500 ms fetch wait is a latency floor on the embedded broker: the
    consumer on the item-to-label path waits 25 ms; the others, off that path, wait
    longer (an idle consumer fetching 40 times a second costs the cores)."""
    monkeypatch.setattr(kafka, "KafkaConsumer", _Recorder)
    make_consumer(KafkaSettings(bootstrap_servers="127.0.0.1:9092"), group_id="g", label_path=True)
    assert _Recorder.built["fetch_max_wait_ms"] == 25
    make_consumer(KafkaSettings(bootstrap_servers="127.0.0.1:9092"), group_id="g")
    assert _Recorder.built["fetch_max_wait_ms"] == 250
    settings = KafkaSettings(
        bootstrap_servers="127.0.0.1:9092", fetch_max_wait_ms=200, background_fetch_max_wait_ms=900
    )
    make_consumer(settings, group_id=None, topics=["t"], label_path=True)
    assert _Recorder.built["fetch_max_wait_ms"] == 200
    make_consumer(settings, group_id=None, topics=["t"])
    assert _Recorder.built["fetch_max_wait_ms"] == 900
    assert _Recorder.built["enable_auto_commit"] is False
    assert _Recorder.built["allow_auto_create_topics"] is False
