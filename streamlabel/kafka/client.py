"""Client-side helpers: produce items and feedback, read labels, alerts and classes back.

What a user's producer or a downstream consumer does, used by the CLI
(``produce``, ``tail``), the demo, the Kafka-mode benchmark and the tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from streamlabel.errors import BrokerError, DecodeError
from streamlabel.kafka.io import make_consumer
from streamlabel.kafka.publisher import Publisher
from streamlabel.kafka.topics import Topics
from streamlabel.schemas import (
    ClassEvent,
    DriftAlert,
    Feedback,
    Item,
    LabelRecord,
    Record,
    SourceRef,
    UnknownRecord,
    decode,
    encode,
)
from streamlabel.schemas.commands import Command, CommandResult
from streamlabel.schemas.mapping import decode_item
from streamlabel.settings.kafka import KafkaSettings

__all__ = ["RECORD_TYPES", "LabelCollector", "TopicReader", "produce_feedback", "produce_items"]

_MAX_BYTES = 64 * 1024 * 1024

RECORD_TYPES: dict[str, type[Record]] = {
    "items": Item,
    "labels": LabelRecord,
    "feedback": Feedback,
    "unknowns": UnknownRecord,
    "alerts": DriftAlert,
    "classes": ClassEvent,
    "commands": Command,
    "command_results": CommandResult,
}
"""The record type of each topic kind (``dlq`` holds raw bytes with headers instead)."""


def produce_items(
    settings: KafkaSettings,
    items: Iterable[Item],
    *,
    chunk: int = 1000,
    publisher: Publisher | None = None,
) -> int:
    """Sends items to ``items`` keyed by id, checking every delivery; returns the count.

    A ``publisher`` given is flushed, not closed (its owner closes it).
    """
    topics = Topics.of(settings)
    own = publisher is None
    publisher = publisher or Publisher(settings, topics)
    n = 0
    try:
        for item in items:
            value = encode(item, format=settings.format.items)
            publisher.send(topics.items, item.id.encode(), value)
            n += 1
            if n % chunk == 0:
                publisher.flush()
        publisher.flush()
    finally:
        if own:
            publisher.close()
    return n


def produce_feedback(
    settings: KafkaSettings, feedback: Iterable[Feedback], *, publisher: Publisher | None = None
) -> int:
    """Sends feedback to ``feedback`` (keyed by item id, or by label); returns the count.

    A ``publisher`` given is flushed, not closed (its owner closes it).
    """
    topics = Topics.of(settings)
    own = publisher is None
    publisher = publisher or Publisher(settings, topics)
    n = 0
    try:
        for fb in feedback:
            key = (fb.item_id or fb.label).encode()
            publisher.send(topics.feedback, key, encode(fb, format=settings.format.feedback))
            n += 1
        publisher.flush()
    finally:
        if own:
            publisher.close()
    return n


class TopicReader:
    """Reads a whole topic from the beginning (no group), decoding its records.

    Args:
        settings: Kafka settings.
        kind: ``labels``, ``alerts``, ``classes``, ``unknowns``, ``dlq``...
        from_beginning: False reads only what arrives from now on.
        consumer: the consumer to read with (without a group; it is closed with the
            reader); by default one from :func:`~streamlabel.kafka.io.make_consumer`.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        kind: str,
        *,
        from_beginning: bool = True,
        consumer: Any = None,
    ) -> None:
        from kafka.structs import TopicPartition

        topics = Topics.of(settings)
        self.topic = topics.name(kind)
        self.kind = kind
        self._mapping = settings.items_mapping.to_mapping()
        self._consumer = consumer or make_consumer(settings, group_id=None, max_poll_records=5000)
        parts = self._consumer.partitions_for_topic(self.topic)
        if not parts:
            self._consumer.close()
            raise BrokerError(
                f"topic {self.topic!r} does not exist (is kafka.topic_prefix right, and has "
                "streamlabel run created its topics?)"
            )
        self._tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(self._tps)
        if from_beginning:
            self._consumer.seek_to_beginning(*self._tps)
        else:
            self._consumer.seek_to_end(*self._tps)

    def poll(self, timeout_ms: int = 200) -> list[Any]:
        """New raw messages (kafka-python ConsumerRecords)."""
        polled = self._consumer.poll(timeout_ms=timeout_ms)
        return [m for batch in polled.values() for m in batch]

    def records(self, timeout_ms: int = 200) -> list[Record]:
        """New decoded records (undecodable ones are skipped)."""
        record_type = RECORD_TYPES[self.kind]
        out: list[Record] = []
        for m in self.poll(timeout_ms):
            try:
                if self.kind == "items":  # a foreign topic reads as the workers read it
                    source = SourceRef(topic=m.topic, partition=m.partition, offset=m.offset)
                    out.append(
                        decode_item(m.value, self._mapping, source=source, max_bytes=_MAX_BYTES)
                    )
                else:
                    out.append(decode(m.value, record_type, max_bytes=_MAX_BYTES))
            except DecodeError:
                continue
        return out

    def follow(self, stop: Callable[[], bool] = lambda: False) -> Iterator[Record]:
        """Yields records as they arrive until ``stop()`` is true."""
        while not stop():
            yield from self.records(timeout_ms=500)

    def close(self) -> None:
        self._consumer.close()


@dataclass
class LabelCollector:
    """Reads ``labels`` and keeps, per item, the first label and the latest revision."""

    settings: KafkaSettings
    first: dict[str, LabelRecord] = field(default_factory=dict)
    final: dict[str, LabelRecord] = field(default_factory=dict)
    first_counts: dict[str, int] = field(default_factory=dict)
    records: int = 0
    _reader: TopicReader | None = None

    def poll(self, timeout_ms: int = 200) -> int:
        """Reads what is new; returns how many label records arrived."""
        if self._reader is None:
            self._reader = TopicReader(self.settings, "labels")
        got = self._reader.records(timeout_ms)
        for r in got:
            if isinstance(r, LabelRecord):
                self.take(r)
        return len(got)

    def take(self, r: LabelRecord) -> bool:
        """Keeps one label record; True when it is now its item's current label (the
        highest revision; of equal revisions, the later)."""
        self.records += 1
        if r.revision == 0:
            self.first_counts[r.item_id] = self.first_counts.get(r.item_id, 0) + 1
        self.first.setdefault(r.item_id, r)
        if r.supersedes(self.final.get(r.item_id)):
            self.final[r.item_id] = r
            return True
        return False

    def wait_for(self, ids: set[str], timeout_s: float) -> bool:
        """Polls until every id has a label; returns False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if ids <= self.first.keys():
                return True
        return ids <= self.first.keys()

    def drain(self, quiet_s: float = 2.0, timeout_s: float = 60.0) -> None:
        """Polls until nothing new has arrived for ``quiet_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < quiet_s:
            if self.poll():
                last = time.monotonic()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
