"""The ``classes`` changelog reader: a read replica of the learner's store.

Every stream worker tails the changelog into its Engine's store; a restarting
learner reads it to compare with its snapshot, or to rebuild the store when the
snapshot is gone (the last event's ``learner.offsets`` header says where its
inputs resume). Both keep only the latest event of each class while they read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from streamlabel.errors import ChangelogError, DecodeError
from streamlabel.kafka.io import make_consumer, past_end
from streamlabel.kafka.protocols import Consumer
from streamlabel.kafka.topics import Topics
from streamlabel.schemas import ClassEvent, decode
from streamlabel.settings.runtime import RuntimeSettings

__all__ = [
    "CATCH_UP_BATCH",
    "LEARNER_EPOCH_HEADER",
    "LEARNER_OFFSETS_HEADER",
    "ClassTail",
    "keep_latest",
]

LEARNER_OFFSETS_HEADER = "learner.offsets"
"""Header of class events: the learner's consumed offsets when it published them."""

LEARNER_EPOCH_HEADER = "learner.epoch"
"""Header of class events: the writer epoch of the learner that published them. Each
learner takes one more than the highest on the changelog when it starts; a reader
ignores events of an epoch lower than one it has seen (a stale learner, fenced)."""

CATCH_UP_BATCH = 500
"""Records per poll while catching up (a full class event is ~100 KB on the wire)."""


def _epoch(value: bytes | None) -> int:
    """A writer epoch header's value (0 for none or a malformed one)."""
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


def keep_latest(latest: dict[str, ClassEvent], event: ClassEvent) -> None:
    """Keeps ``event`` in ``latest`` (by class) unless it holds a newer state of its class.

    Of two events with the same ``state.updated_version`` the later one is kept,
    as a store applying both in order would keep it.
    """
    kept = latest.get(event.class_id)
    if kept is None or event.state.updated_version >= kept.state.updated_version:
        latest[event.class_id] = event


class ClassTail:
    """Tails the ``classes`` changelog into an Engine's store (a read replica).

    Uses its own consumer without a group (every replica reads everything),
    built on first use unless one is given. A record that does not decode is
    skipped, logged and counted (:attr:`skipped`); an event of a writer epoch
    below the highest seen is skipped and counted (:attr:`fenced`).
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
        self.skipped = 0
        """Records that were not class events (skipped and logged)."""
        self.fenced = 0
        """Events of a stale learner (an epoch below :attr:`epoch`), skipped."""
        self.epoch = 0
        """The highest writer epoch seen on the changelog (0: none)."""
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

        A record that is not a class event (a tombstone, garbage) is skipped,
        logged and counted in :attr:`skipped`: one bad record must not stop every
        replica; the learner re-asserts its classes on its own.
        """
        return list(self._read(timeout_ms, max_records=10_000))

    def _read(self, timeout_ms: int, *, max_records: int) -> Iterator[ClassEvent]:
        """The events of one poll, decoded one at a time (``learner_offsets`` follows them)."""
        consumer = self._open()
        self._detect_reset(consumer)
        for messages in consumer.poll(timeout_ms=timeout_ms, max_records=max_records).values():
            for m in messages:
                try:
                    event = decode(m.value, ClassEvent, max_bytes=64 * 1024 * 1024)
                except DecodeError as exc:
                    self.skipped += 1
                    self._log.error("changelog_record_skipped", topic=self._topic,
                                    offset=m.offset, reason=exc.reason, error=str(exc))  # fmt: skip
                    continue
                headers = dict(m.headers or [])
                epoch = _epoch(headers.get(LEARNER_EPOCH_HEADER))
                if epoch < self.epoch:
                    self.fenced += 1
                    self._log.warning("changelog_event_fenced", offset=m.offset, epoch=epoch,
                                      current=self.epoch, class_id=event.class_id)  # fmt: skip
                    continue
                self.epoch = epoch
                if LEARNER_OFFSETS_HEADER in headers:
                    self._read_offsets(headers[LEARNER_OFFSETS_HEADER], m.offset)
                yield event

    def _read_offsets(self, value: bytes, offset: int) -> None:
        """Takes the learner's input offsets from a header (a malformed one is skipped)."""
        try:
            offsets = {str(k): int(v) for k, v in json.loads(value).items()}
        except (ValueError, TypeError, AttributeError) as exc:
            self._log.error("changelog_header_skipped", topic=self._topic, offset=offset,
                            header=LEARNER_OFFSETS_HEADER, error=str(exc))  # fmt: skip
            return
        self.learner_offsets = offsets

    def catch_up(self, stall_timeout_s: float = 30.0) -> list[ClassEvent]:
        """The latest event of every class, reading the changelog to its current end.

        The changelog is reduced as it is read (batches of ``CATCH_UP_BATCH``
        records), keeping per class the event with the highest
        ``state.updated_version`` (of equal ones, the later): memory grows with
        the classes, not with the events (tansu never compacts the topic, Kafka
        not its active segment). Applying them gives the store that applying
        every event in order gives, since a store ignores an event older than
        its class's state; and an event's ``store_version`` is its state's
        ``updated_version`` (the store emits them so), so the highest one is
        among them. ``learner_offsets`` is the last event's, as after a poll.

        Raises:
            ChangelogError: no progress for ``stall_timeout_s`` before the end.
        """
        from kafka.structs import TopicPartition

        consumer = self._open()
        tp = TopicPartition(self._topic, 0)
        latest: dict[str, ClassEvent] = {}
        deadline = time.monotonic() + stall_timeout_s
        while time.monotonic() < deadline:
            read = 0
            for event in self._read(200, max_records=CATCH_UP_BATCH):
                read += 1
                keep_latest(latest, event)
            if read:
                deadline = time.monotonic() + stall_timeout_s  # progress: keep going
                continue
            high = consumer.highwater(tp)
            if high is not None and consumer.position(tp) >= high:
                return list(latest.values())
        raise ChangelogError(
            f"could not read {self._topic!r} to its end: no progress in {stall_timeout_s:.0f}s"
        )

    def reset(self) -> None:
        """Reads the changelog again from its beginning (after the broker lost it)."""
        from kafka.structs import TopicPartition

        self.epoch = 0  # a new changelog: its writers start over
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
            self.epoch = 0  # a new changelog: its writers start over
            self.resets += 1

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
