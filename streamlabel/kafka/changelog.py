"""The ``classes`` changelog reader: a read replica of the learner's store.

Every stream worker tails the changelog into its Engine's store; a restarting
learner reads it to compare with its snapshot, or to rebuild the store when the
snapshot is gone (the last event's ``learner.offsets`` header says where its
inputs resume).
"""

from __future__ import annotations

import json
import time
from typing import Any

from streamlabel.errors import ChangelogError, DecodeError
from streamlabel.kafka.io import make_consumer, past_end
from streamlabel.kafka.protocols import Consumer
from streamlabel.kafka.topics import Topics
from streamlabel.schemas import ClassEvent, decode
from streamlabel.settings.runtime import RuntimeSettings

__all__ = ["LEARNER_OFFSETS_HEADER", "ClassTail"]

LEARNER_OFFSETS_HEADER = "learner.offsets"
"""Header of class events: the learner's consumed offsets when it published them."""


class ClassTail:
    """Tails the ``classes`` changelog into an Engine's store (a read replica).

    Uses its own consumer without a group (every replica reads everything),
    built on first use unless one is given. A record that does not decode stops
    the replica (:class:`ChangelogError`): skipping it would let the replica
    diverge silently.
    """

    def __init__(
        self,
        settings: RuntimeSettings,
        topics: Topics,
        log: Any,
        *,
        consumer: Consumer | None = None,
    ) -> None:
        self._settings = settings
        self._topic = topics.classes
        self._given = consumer
        self._consumer: Consumer | None = None
        self._log = log
        self.resets = 0
        self.learner_offsets: dict[str, int] | None = None
        """The learner's consumed offsets carried by the last event (``learner.offsets``)."""

    def _open(self) -> Consumer:
        from kafka.structs import TopicPartition

        if self._consumer is None:
            consumer = self._given or make_consumer(self._settings.kafka, group_id=None)
            tp = TopicPartition(self._topic, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            self._consumer = consumer
        return self._consumer

    def poll(self, timeout_ms: int = 0) -> list[ClassEvent]:
        """New class events (possibly none).

        Raises:
            ChangelogError: a record is not a class event.
        """
        consumer = self._open()
        self._detect_reset(consumer)
        events: list[ClassEvent] = []
        for messages in consumer.poll(timeout_ms=timeout_ms, max_records=10_000).values():
            for m in messages:
                try:
                    events.append(decode(m.value, ClassEvent, max_bytes=64 * 1024 * 1024))
                except DecodeError as exc:
                    raise ChangelogError(
                        f"{self._topic!r} offset {m.offset} is not a class event ({exc}); "
                        "replicas cannot apply it"
                    ) from exc
                for name, value in m.headers or []:
                    if name == LEARNER_OFFSETS_HEADER:
                        self.learner_offsets = {
                            str(k): int(v) for k, v in json.loads(value).items()
                        }
        return events

    def catch_up(self, stall_timeout_s: float = 30.0) -> list[ClassEvent]:
        """Every event up to the current end of the changelog.

        Raises:
            ChangelogError: no progress for ``stall_timeout_s`` before the end.
        """
        from kafka.structs import TopicPartition

        consumer = self._open()
        tp = TopicPartition(self._topic, 0)
        events: list[ClassEvent] = []
        deadline = time.monotonic() + stall_timeout_s
        while time.monotonic() < deadline:
            got = self.poll(timeout_ms=200)
            if got:
                events.extend(got)
                deadline = time.monotonic() + stall_timeout_s  # progress: keep going
                continue
            high = consumer.highwater(tp)
            if high is not None and consumer.position(tp) >= high:
                return events
        raise ChangelogError(
            f"could not read {self._topic!r} to its end: no progress in {stall_timeout_s:.0f}s"
        )

    def reset(self) -> None:
        """Reads the changelog again from its beginning (after the broker lost it)."""
        from kafka.structs import TopicPartition

        if self._consumer is not None:
            self._consumer.seek_to_beginning(TopicPartition(self._topic, 0))

    def _detect_reset(self, consumer: Consumer) -> None:
        """A position past the high watermark means the topic was recreated: start over.

        Applying the changelog again is safe: events older than a class's state
        are ignored, and a recovering learner re-asserts every class.
        """
        from kafka.structs import TopicPartition

        tp = TopicPartition(self._topic, 0)
        high = past_end(consumer, tp)
        if high is not None:
            self._log.warning("changelog_reset", topic=self._topic, position=consumer.position(tp),
                              high_watermark=high)  # fmt: skip
            consumer.seek_to_beginning(tp)
            self.resets += 1

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
