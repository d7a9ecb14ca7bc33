"""Kafka clients (kafka-python): built lazily, published with delivery checks.

The delivery rule of the whole system lives here: :meth:`Publisher.publish`
sends a batch's outputs, :meth:`Publisher.flush` waits for every delivery and
raises :class:`~streamlabel.errors.PublishError` if any failed, and only then
does a caller commit its input offsets (:func:`commit_batch`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from streamlabel.errors import BrokerError, SettingsError
from streamlabel.kafka.protocols import Consumer
from streamlabel.kafka.topics import Topics
from streamlabel.pipeline.inputs import RawRecord
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import DeadLetter, SourceRef, encode
from streamlabel.settings.kafka import KafkaSettings, TopicFormats

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.consumer.fetcher import ConsumerRecord

OutRecord = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]
"""One record to publish: topic, key, value, headers."""
DEFAULT_FORMATS = TopicFormats()
"""msgpack on every topic (the settings' defaults)."""

__all__ = [
    "OutRecord",
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
    label_path: bool = False,
) -> KafkaConsumer:
    """A consumer with manual commits (``enable_auto_commit=False``).

    With ``topics`` it subscribes (group management); without, the caller assigns.
    ``offset_reset`` is where a group without a committed offset starts.
    ``label_path``: a stream worker's consumer of items, whose fetches wait at most
    ``kafka.fetch_max_wait_ms``; every other consumer waits up to
    ``kafka.background_fetch_max_wait_ms`` (cheaper while idle).
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
            fetch_max_wait_ms=(
                settings.fetch_max_wait_ms if label_path else settings.background_fetch_max_wait_ms
            ),
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
    topics: Topics,
    out: EngineOutput,
    event_headers: Sequence[tuple[str, bytes]] = (),
    formats: TopicFormats = DEFAULT_FORMATS,
) -> list[OutRecord]:
    """Every record of ``out`` as (topic, key, value, headers), in publishing order,
    each encoded in its topic's format (``kafka.format.<topic>``)."""
    t, f = topics, formats
    recs: list[OutRecord] = []
    recs.extend((t.labels, r.item_id.encode(), encode(r, format=f.labels), []) for r in out.labels)
    recs.extend(
        (t.unknowns, u.item_id.encode(), encode(u, format=f.unknowns), []) for u in out.unknowns
    )
    recs.extend(
        (t.classes, e.class_id.encode(), encode(e, format=f.classes), list(event_headers))
        for e in out.class_events
    )
    recs.extend(  # an incident's updates share its key; an alert of none, its kind's
        (t.alerts, (a.incident_id or a.kind).encode(), encode(a, format=f.alerts), [])
        for a in out.alerts
    )
    recs.extend((t.dlq, _dlq_key(d), d.value, dead_letter_headers(d)) for d in out.dead_letters)
    recs.extend(
        (t.command_results, r.command_id.encode(), encode(r, format=f.command_results), [])
        for r in out.command_results
    )
    return recs


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


def lag(consumer: Consumer, ends: Mapping[Any, int] | None = None) -> dict[str, int]:
    """Records behind the high watermark, per assigned partition (``topic:partition``).

    ``ends``: end offsets known otherwise (asked of the broker), used where they are
    ahead of the consumer's watermark (which goes stale for a partition it has not
    fetched lately).
    """
    out: dict[str, int] = {}
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if ends is not None and tp in ends:
            high = max(high or 0, ends[tp])
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
