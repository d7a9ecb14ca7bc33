"""The publisher: sends a step's records to their topics and checks every delivery.

A record that can never be published (too large, refused by the broker for good)
does not block the rest: a dead letter takes its place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import structlog

from streamlabel.errors import BrokerError, PublishError
from streamlabel.kafka.io import (
    OutRecord,
    _dlq_key,
    dead_letter_headers,
    make_producer,
    out_records,
)
from streamlabel.kafka.protocols import Producer
from streamlabel.kafka.topics import Topics
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import DeadLetter
from streamlabel.settings.kafka import KafkaSettings

__all__ = ["MAX_RECORD_BYTES", "Publisher"]

log = structlog.get_logger(__name__)

MAX_RECORD_BYTES = 1_000_000
"""The largest record the publisher sends (value, key and headers): under kafka-python's
``max_request_size`` and Kafka's default ``message.max.bytes`` (both about 1 MiB)."""


class Publisher:
    """Sends an :class:`EngineOutput` to its topics and checks every delivery.

    The producer is created on first use (by ``make``, :func:`make_producer`
    unless given); after a fatal producer error the next :meth:`publish`
    creates a new one (an idempotent or fenced producer cannot be reused).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Topics,
        *,
        make: Callable[[KafkaSettings], Producer] | None = None,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._make = make or make_producer
        self._producer: Producer | None = None
        self._pending: list[tuple[OutRecord, Any]] = []
        self._max_record_bytes = max_record_bytes
        self.recreated = 0
        self.unpublishable = 0
        """Records that could never be published (too large, refused by the broker for
        good): each went to the DLQ in its place, or was dropped if it was a dead letter."""

    @property
    def connected(self) -> bool:
        """Whether a producer is built (none before the first send, none after a failure)."""
        return self._producer is not None

    @property
    def producer(self) -> Producer:
        """The producer, built on first use.

        Raises:
            PublishError: the brokers cannot be reached right now (a caller's
                delivery retry treats it like any failed delivery).
        """
        if self._producer is None:
            try:
                self._producer = self._make(self._settings)
            except BrokerError as exc:
                raise PublishError(f"no producer: {exc}") from exc
        return self._producer

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Iterable[tuple[str, bytes]] | None = None,
        *,
        partition: int | None = None,
    ) -> None:
        """Queues one record; :meth:`flush` checks it was delivered.

        A record larger than ``max_record_bytes`` is not sent: a dead letter saying
        so takes its place (a dead letter that large is dropped and logged).
        """
        from kafka.errors import KafkaError

        record: OutRecord = (topic, key, value, list(headers or []))
        size = _record_bytes(record)
        if size > self._max_record_bytes:
            self._divert(record, f"{size} bytes, more than the {self._max_record_bytes} allowed")
            return
        try:
            future = self.producer.send(
                topic, key=key, value=value, headers=record[3], partition=partition
            )
        except KafkaError as exc:
            if _permanent(exc):  # this record, for good: the others go on
                self._divert(record, f"{type(exc).__name__}: {exc}")
                return
            self._reset()
            raise PublishError(f"cannot send to {topic!r}: {exc}") from exc
        self._pending.append((record, future))

    def records(
        self, out: EngineOutput, *, event_headers: Sequence[tuple[str, bytes]] = ()
    ) -> list[OutRecord]:
        """Every record of ``out`` as (topic, key, value, headers), in publishing order,
        each in its topic's format (``kafka.format.<topic>``)."""
        return out_records(self._topics, out, event_headers, self._settings.format)

    def send_all(self, records: Iterable[OutRecord]) -> int:
        """Queues records built by :meth:`records`; returns how many are pending."""
        classes = self._topics.classes
        for topic, key, value, headers in records:
            # the changelog has one partition; never let a keyed partitioner pick another
            self.send(topic, key, value, headers, partition=0 if topic == classes else None)
        return len(self._pending)

    def publish(self, out: EngineOutput) -> int:
        """Queues every record of ``out`` on its topic; returns how many."""
        return self.send_all(self.records(out))

    def flush(self, timeout: float | None = None) -> int:
        """Waits for every queued record; returns how many were delivered.

        Raises:
            PublishError: a record was not acknowledged in time; the caller must
                not commit the inputs these records came from.
        """
        from kafka.errors import KafkaError

        pending, self._pending = self._pending, []
        if not pending:
            return 0
        deadline = timeout if timeout is not None else self._settings.delivery_timeout_s
        try:
            self.producer.flush(timeout=deadline)
        except KafkaError as exc:
            self._reset()
            raise PublishError(f"flush failed: {exc}") from exc
        failed = [(r, f) for r, f in pending if not f.is_done or f.failed()]
        for_good = [(r, f) for r, f in failed if f.is_done and _permanent(f.exception)]
        if for_good and len(for_good) == len(failed):  # only records the broker never takes
            for record, future in for_good:
                self._divert(record, f"{type(future.exception).__name__}: {future.exception}")
            return len(pending) - len(for_good) + self.flush(timeout)
        if failed:
            record, first = failed[0]
            reason = first.exception if first.is_done else "not acknowledged in time"
            self._reset()
            raise PublishError(
                f"{len(failed)} of {len(pending)} records undelivered ({record[0]}: {reason})"
            )
        return len(pending)

    def deliver(
        self,
        records: Sequence[OutRecord],
        *,
        retry_s: float,
        on_failure: Callable[[int, PublishError], None],
        after_first_send: Callable[[], None] | None = None,
    ) -> None:
        """Sends and flushes ``records`` until every one is acknowledged.

        A failure (a broker that restarts, topics being recreated, a producer that
        cannot be built) is reported to ``on_failure(attempt, error)`` and retried
        on a fresh producer with backoff, for ``retry_s`` seconds.

        Raises:
            PublishError: still undelivered after ``retry_s``; the caller must not
                commit the inputs these records came from.
        """
        deadline = time.monotonic() + retry_s
        attempt = 0
        while True:
            attempt += 1
            try:
                self.send_all(records)
                if attempt == 1 and after_first_send is not None:
                    after_first_send()
                self.flush()
                return
            except PublishError as exc:
                on_failure(attempt, exc)
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(0.25 * 2**attempt, 5.0))

    def close(self, timeout: float = 5.0) -> None:
        """Flushes what is queued (best effort) and closes the producer."""
        if self._producer is not None:
            try:
                self._producer.close(timeout=timeout)
            except Exception:
                log.warning("producer_close_failed", exc_info=True)
            self._producer = None

    def _divert(self, record: OutRecord, why: str) -> None:
        """Puts a dead letter in the place of a record that can never be published.

        A dead letter too large to publish goes out again without its value (its
        headers keep the source offset, reason and error); one the broker refuses
        for another reason (no ACL on the DLQ) is dropped, logged and counted.
        """
        topic, key, value, headers = record
        self.unpublishable += 1
        log.error("record_unpublishable", topic=topic, key=key, error=why)
        if topic == self._topics.dlq:
            if value and _record_bytes(record) > self._max_record_bytes:
                note = ("value.omitted", f"{len(value)} bytes: {why}"[:4000].encode())
                self.send(topic, key, b"", [*headers, note])
            return
        letter = DeadLetter(
            source=None, key=f"{topic}:".encode() + (key or b""), value=b"",
            reason="unpublishable", error=f"a record for {topic!r} could not be published: {why}",
        )  # fmt: skip
        self.send(self._topics.dlq, _dlq_key(letter), letter.value, dead_letter_headers(letter))

    def _reset(self) -> None:
        """Drops the producer after a failure; the next send builds a new one."""
        producer, self._producer = self._producer, None
        self._pending = []
        self.recreated += 1
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:
                log.debug("producer_close_failed", exc_info=True)


def _record_bytes(record: OutRecord) -> int:
    _, key, value, headers = record
    return len(value) + len(key or b"") + sum(len(k) + len(v) for k, v in headers)


def _permanent(exc: BaseException | None) -> bool:
    """True for a broker error about the record itself that retrying cannot fix (too
    large, a topic it may not write). Anything else, a producer that failed for good
    included (an idempotent producer after a broker restart), is the producer's: it is
    replaced and the record retried."""
    import kafka.errors as ke

    record_errors = tuple(
        getattr(ke, name) for name in _RECORD_ERRORS if isinstance(getattr(ke, name, None), type)
    )
    return isinstance(exc, record_errors)


_RECORD_ERRORS = (
    "MessageSizeTooLargeError",
    "RecordListTooLargeError",
    "InvalidRecordError",
    "CorruptRecordError",
    "TopicAuthorizationFailedError",
    "InvalidTopicError",
    "PolicyViolationError",
)
