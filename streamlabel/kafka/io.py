"""Kafka clients (kafka-python): built lazily, published with delivery checks.

The delivery rule of the whole system lives here: :meth:`Publisher.publish`
sends a batch's outputs, :meth:`Publisher.flush` waits for every delivery and
raises :class:`~streamlabel.errors.PublishError` if any failed, and only then
does a caller commit its input offsets (:func:`commit_batch`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from streamlabel.errors import BrokerError, PublishError, SettingsError
from streamlabel.kafka.protocols import Consumer, Producer
from streamlabel.kafka.topics import Topics
from streamlabel.pipeline.inputs import RawRecord
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import DeadLetter, SourceRef, encode
from streamlabel.settings.kafka import KafkaSettings

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.consumer.fetcher import ConsumerRecord

OutRecord = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]
"""One record to publish: topic, key, value, headers."""

__all__ = [
    "OutRecord",
    "Publisher",
    "client_errors",
    "commit_batch",
    "commit_offsets",
    "dead_letter_headers",
    "lag",
    "make_consumer",
    "make_producer",
    "next_offsets",
    "out_records",
    "past_end",
    "to_raw",
]

log = structlog.get_logger(__name__)

MAX_RECORD_BYTES = 1_000_000
"""The largest record the publisher sends (value, key and headers): under kafka-python's
``max_request_size`` and Kafka's default ``message.max.bytes`` (both about 1 MiB)."""


@contextlib.contextmanager
def client_errors(settings: KafkaSettings) -> Iterator[None]:
    """Turns a Kafka client's construction errors into errors that name the setting.

    Raises:
        SettingsError: the client rejected its configuration (``kafka.*``).
        BrokerError: the brokers at ``kafka.bootstrap_servers`` cannot be reached.
    """
    from kafka.errors import KafkaConfigurationError, KafkaError

    try:
        yield
    except KafkaConfigurationError as exc:
        raise SettingsError(f"invalid Kafka client configuration (kafka.*): {exc}") from exc
    except KafkaError as exc:
        raise BrokerError(
            f"cannot reach Kafka at {settings.bootstrap_servers!r} (kafka.bootstrap_servers): {exc}"
        ) from exc


def make_consumer(
    settings: KafkaSettings,
    *,
    group_id: str | None,
    topics: Sequence[str] = (),
    max_poll_records: int = 500,
    listener: Any = None,
    offset_reset: str = "earliest",
) -> KafkaConsumer:
    """A consumer with manual commits (``enable_auto_commit=False``).

    With ``topics`` it subscribes (group management); without, the caller assigns.
    ``offset_reset`` is where a group without a committed offset starts.
    """
    from kafka import KafkaConsumer

    with client_errors(settings):
        consumer = KafkaConsumer(
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=offset_reset,
            max_poll_records=max_poll_records,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            # topics are created by ensure_topics with their partitions and configs; a
            # broker that lost them must not get them back from a metadata request
            allow_auto_create_topics=False,
            **settings.client_kwargs(),
        )
    if topics:
        consumer.subscribe(list(topics), listener=listener)
    return consumer


def make_producer(settings: KafkaSettings) -> KafkaProducer:
    """A producer that waits for all in-sync replicas (``acks=all``)."""
    from kafka import KafkaProducer

    with client_errors(settings):
        return KafkaProducer(
            acks="all",
            linger_ms=settings.linger_ms,
            retries=5,
            max_request_size=8 * 1024 * 1024,
            # a missing topic or a dead broker fails a send within the delivery deadline
            # (the default blocks for 60 s)
            max_block_ms=int(settings.delivery_timeout_s * 1000),
            allow_auto_create_topics=False,
            **settings.client_kwargs(),
        )


def to_raw(message: ConsumerRecord) -> RawRecord:
    """A consumed message as the Engine's input."""
    return RawRecord(
        value=message.value,
        source=SourceRef(topic=message.topic, partition=message.partition, offset=message.offset),
        key=message.key,
    )


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The DLQ headers: source topic, partition, offset, reason and error."""
    src = letter.source
    return [
        ("source.topic", (src.topic if src else "").encode()),
        ("source.partition", str(src.partition if src else -1).encode()),
        ("source.offset", str(src.offset if src else -1).encode()),
        ("error.reason", letter.reason.encode()),
        ("error.message", letter.error[:4000].encode()),
    ]


def _dlq_key(letter: DeadLetter) -> bytes:
    src = letter.source
    if src is None:
        return letter.key or b""
    return f"{src.topic}:{src.partition}:{src.offset}".encode()


def out_records(
    topics: Topics, out: EngineOutput, event_headers: Sequence[tuple[str, bytes]] = ()
) -> list[OutRecord]:
    """Every record of ``out`` as (topic, key, value, headers), in publishing order."""
    t = topics
    recs: list[OutRecord] = []
    recs.extend((t.labels, r.item_id.encode(), encode(r), []) for r in out.labels)
    recs.extend((t.unknowns, u.item_id.encode(), encode(u), []) for u in out.unknowns)
    recs.extend(
        (t.classes, e.class_id.encode(), encode(e), list(event_headers)) for e in out.class_events
    )
    recs.extend((t.alerts, a.kind.encode(), encode(a), []) for a in out.alerts)
    recs.extend((t.dlq, _dlq_key(d), d.value, dead_letter_headers(d)) for d in out.dead_letters)
    return recs


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
        """Every record of ``out`` as (topic, key, value, headers), in publishing order."""
        return out_records(self._topics, out, event_headers)

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


def next_offsets(messages: Iterable[ConsumerRecord]) -> dict[Any, int]:
    """The offset after the last message of each partition (what a commit stores)."""
    from kafka.structs import TopicPartition

    nxt: dict[TopicPartition, int] = {}
    for m in messages:
        tp = TopicPartition(m.topic, m.partition)
        nxt[tp] = max(nxt.get(tp, 0), m.offset + 1)
    return nxt


def commit_offsets(consumer: Consumer, offsets: Mapping[Any, int]) -> None:
    """Commits ``{TopicPartition: next offset}`` synchronously."""
    from kafka.structs import OffsetAndMetadata

    if offsets:
        consumer.commit({tp: OffsetAndMetadata(o, None, -1) for tp, o in offsets.items()})


def commit_batch(consumer: Consumer, messages: Iterable[ConsumerRecord]) -> dict[Any, int]:
    """Commits the offset after the last message of each partition; returns the offsets."""
    nxt = next_offsets(messages)
    commit_offsets(consumer, nxt)
    return nxt


def past_end(consumer: Consumer, tp: Any) -> int | None:
    """The high watermark of ``tp`` when the consumer's position is past it (the topic
    was recreated under it), else None."""
    high = consumer.highwater(tp)
    if high is not None and consumer.position(tp) > high:
        return int(high)
    return None


def lag(consumer: Consumer) -> dict[str, int]:
    """Records behind the high watermark, per assigned partition (``topic:partition``)."""
    out: dict[str, int] = {}
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        try:
            pos = consumer.position(tp)
        except Exception:
            continue
        out[f"{tp.topic}:{tp.partition}"] = max(0, high - pos)
    return out


def positions(consumer: Consumer) -> Mapping[str, int]:
    """Next offset to read per assigned partition (``topic:partition``)."""
    return {f"{tp.topic}:{tp.partition}": consumer.position(tp) for tp in consumer.assignment()}
