"""Kafka collaborators in memory, for unit tests of the actors and the publisher.

Each implements a protocol of :mod:`streamlabel.kafka.protocols` (mypy checks
it): :class:`FakeConsumer` a group consumer whose polls, watermarks and
commits the test sets and reads, and which runs its listener's callbacks on
:meth:`FakeConsumer.rebalance` like kafka-python does inside ``poll``;
:class:`FakePublisher` a publisher that encodes records like the real one and
keeps them; :class:`FakeChangelog` the ``classes`` reader; :class:`FakeProducer`
and :class:`FakeFuture` the producer under a real
:class:`~streamlabel.kafka.publisher.Publisher`; :class:`FakeAdmin` the admin client
under a :class:`~streamlabel.kafka.broker_watch.BrokerWatch`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from streamlabel.errors import PublishError
from streamlabel.kafka.changelog import keep_latest
from streamlabel.kafka.io import OutRecord, out_records
from streamlabel.kafka.protocols import (
    ChangelogReader,
    Consumer,
    DeliveryFuture,
    Producer,
    RecordPublisher,
)
from streamlabel.kafka.topics import Topics
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import ClassEvent, LabelRecord, decode

with warnings.catch_warnings():  # kafka-python loads its protocol files with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.errors import CommitFailedError
    from kafka.structs import OffsetAndMetadata, TopicPartition

__all__ = [
    "FakeAdmin",
    "FakeChangelog",
    "FakeConsumer",
    "FakeFuture",
    "FakeProducer",
    "FakePublisher",
    "committed",
    "consumed",
]

Polled = dict[TopicPartition, list[Any]]


def consumed(
    topic: str,
    partition: int,
    offset: int,
    value: bytes | None,
    key: bytes | None = None,
    headers: Sequence[tuple[str, bytes]] = (),
    timestamp: int = -1,
) -> Any:
    """A consumed record, as a consumer's poll returns it (``ConsumerRecord``'s fields;
    ``timestamp`` in epoch ms, -1 = none)."""
    return SimpleNamespace(
        topic=topic, partition=partition, offset=offset, key=key, value=value,
        headers=list(headers), timestamp=timestamp,
    )  # fmt: skip


class FakeConsumer:
    """A group consumer in memory; records seeks, rewinds and commits.

    Args:
        assigned: the partitions it owns.
        highwater: high watermark per partition (missing: not known yet).
        positions: next offset per partition (asking for another raises KeyError).
        committed: the group's committed offset per partition.
        polls: what each poll returns, in order (then nothing).
        refuse_commits: how many commits to refuse as a rebalance would.
    """

    def __init__(
        self,
        assigned: Iterable[TopicPartition] = (),
        *,
        highwater: Mapping[TopicPartition, int] | None = None,
        positions: Mapping[TopicPartition, int] | None = None,
        committed: Mapping[TopicPartition, int] | None = None,
        polls: Iterable[Polled] = (),
        refuse_commits: int = 0,
    ) -> None:
        self.assigned = set(assigned)
        self.high = dict(highwater or {})
        self.positions = dict(positions or {})
        self.committed_offsets = dict(committed or {})
        self.polls = list(polls)
        self.refuse_commits = refuse_commits
        self.seeks: dict[TopicPartition, int] = {}
        self.rewound: list[TopicPartition] = []
        self.commits: list[dict[TopicPartition, Any]] = []
        self.asked: list[int | None] = []  # max_records of each poll
        self.timeouts: list[int] = []  # timeout_ms of each poll
        self.ends: dict[TopicPartition, int] = {}  # end offsets the broker knows, if ahead
        self.end_offset_asks = 0
        self.subscribed: list[str] = []
        self.listener: Any = None
        self.closed = False

    def subscribe(self, topics: Sequence[str], listener: Any = None) -> None:
        self.subscribed = list(topics)
        self.listener = listener

    def assign(self, partitions: Sequence[Any]) -> None:
        self.assigned = set(partitions)

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    def highwater(self, partition: Any) -> int | None:
        return self.high.get(partition)

    def end_offsets(
        self, partitions: Sequence[Any], timeout_ms: int | None = None
    ) -> dict[Any, int | None]:
        """The broker's end offsets: ``ends`` where set, else the high watermark."""
        self.end_offset_asks += 1
        return {tp: self.ends.get(tp, self.high.get(tp)) for tp in partitions}

    def position(self, partition: Any) -> int:
        return self.positions[partition]  # KeyError: asked about a partition it should not

    def committed(self, partition: Any) -> int | None:
        return self.committed_offsets.get(partition)

    def seek(self, partition: Any, offset: int) -> None:
        assert partition in self.assigned, f"seek on unassigned {partition}"
        self.seeks[partition] = offset
        self.positions[partition] = offset

    def seek_to_beginning(self, *partitions: Any) -> None:
        for tp in partitions:
            assert tp in self.assigned, f"seek_to_beginning on unassigned {tp}"
            self.rewound.append(tp)
            self.positions[tp] = 0

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Mapping[Any, list[Any]]:
        self.asked.append(max_records)
        self.timeouts.append(timeout_ms)
        return self.polls.pop(0) if self.polls else {}

    def commit(self, offsets: Mapping[Any, Any]) -> None:
        if self.refuse_commits:
            self.refuse_commits -= 1
            raise CommitFailedError("the group is rebalancing")
        self.commits.append(dict(offsets))
        for tp, meta in offsets.items():
            self.committed_offsets[tp] = meta.offset

    def close(self, autocommit: bool = True) -> None:
        self.closed = True

    def rebalance(
        self,
        *,
        revoked: Iterable[TopicPartition] | None = None,
        assigned: Iterable[TopicPartition] | None = None,
        lost: Iterable[TopicPartition] | None = None,
    ) -> None:
        """Runs the subscribed listener's callbacks (kafka-python calls them inside a
        poll): ``lost`` or ``revoked`` first, then the new assignment."""
        if lost is not None:
            self.listener.on_partitions_lost(set(lost))
        if revoked is not None:
            self.listener.on_partitions_revoked(set(revoked))
        if assigned is not None:
            self.assigned = set(assigned)
            self.listener.on_partitions_assigned(sorted(self.assigned))

    def commit_history(self) -> list[dict[TopicPartition, int]]:
        """The offsets of every commit, in order."""
        return [{tp: meta.offset for tp, meta in c.items()} for c in self.commits]


def committed(offset: int) -> OffsetAndMetadata:
    """What kafka-python's commit takes for one partition."""
    return OffsetAndMetadata(offset, None, -1)


class FakePublisher:
    """A publisher in memory: encodes records like the real one and keeps them.

    Args:
        topics: the deployment's topics (where each record goes).
        failing_sends: how many ``send_all`` calls fail (then they succeed).
        on_flush: runs inside each flush and delivery (a slow broker, say).
    """

    def __init__(
        self,
        topics: Topics,
        *,
        failing_sends: int = 0,
        on_flush: Callable[[], None] | None = None,
    ) -> None:
        self.topics = topics
        self.sent: list[list[OutRecord]] = []  # each send_all's or deliver's records
        self.delivered: list[list[OutRecord]] = []  # each deliver's records
        self.events: list[str] = []  # "send", "flush", "deliver"
        self.flushes = 0
        self.closed = 0
        self._failing_sends = failing_sends
        self._on_flush = on_flush

    def records(
        self, out: EngineOutput, *, event_headers: Sequence[tuple[str, bytes]] = ()
    ) -> list[OutRecord]:
        return out_records(self.topics, out, event_headers)

    def send_all(self, records: Iterable[OutRecord]) -> int:
        if self._failing_sends:
            self._failing_sends -= 1
            raise PublishError("cannot send: the broker is away")
        batch = list(records)
        self.sent.append(batch)
        self.events.append("send")
        return len(batch)

    def flush(self, timeout: float | None = None) -> int:
        self.flushes += 1
        self.events.append("flush")
        if self._on_flush is not None:
            self._on_flush()
        return 1

    def deliver(
        self,
        records: Sequence[OutRecord],
        *,
        retry_s: float,
        on_failure: Callable[[int, PublishError], None],
        after_first_send: Callable[[], None] | None = None,
    ) -> None:
        self.sent.append(list(records))
        self.delivered.append(list(records))
        self.events.append("deliver")
        if after_first_send is not None:
            after_first_send()
        self.flushes += 1
        if self._on_flush is not None:
            self._on_flush()

    def close(self, timeout: float = 5.0) -> None:
        self.closed += 1

    def on(self, kind: str) -> list[OutRecord]:
        """Every record sent to the topic of ``kind`` (``labels``, ``classes``...)."""
        name = self.topics.name(kind)
        return [r for batch in self.sent for r in batch if r[0] == name]

    def labels(self) -> list[LabelRecord]:
        """Every label sent, decoded, in order."""
        return [decode(r[2], LabelRecord) for r in self.on("labels")]


class FakeChangelog:
    """The ``classes`` reader: ``events`` are read by ``catch_up`` (the latest of each
    class, like the real one), ``pending`` by ``poll``."""

    def __init__(
        self,
        events: Iterable[ClassEvent] = (),
        *,
        learner_offsets: dict[str, int] | None = None,
        epoch: int = 0,
    ) -> None:
        self.events = list(events)
        self.pending: list[ClassEvent] = []
        self.learner_offsets = learner_offsets
        self.epoch = epoch
        self.resets = 0
        self.closed = 0

    def poll(self, timeout_ms: int = 0) -> list[ClassEvent]:
        got, self.pending = self.pending, []
        return got

    def catch_up(self, stall_timeout_s: float = 30.0) -> list[ClassEvent]:
        latest: dict[str, ClassEvent] = {}
        for event in self.events:
            keep_latest(latest, event)
        return list(latest.values())

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        self.closed += 1


@dataclass
class FakeFuture:
    """The part of kafka-python's ``FutureRecordMetadata`` the publisher reads."""

    is_done: bool = True
    exception: Exception | None = None

    def failed(self) -> bool:
        return self.is_done and self.exception is not None


@dataclass
class FakeProducer:
    """Records sends; ``outcomes`` (consumed in order) decide each future, then success."""

    outcomes: list[FakeFuture] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    flushes: list[float | None] = field(default_factory=list)
    closed: list[float] = field(default_factory=list)

    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> FakeFuture:
        self.sent.append(
            {"topic": topic, "key": key, "value": value, "headers": headers, "partition": partition}
        )
        return self.outcomes.pop(0) if self.outcomes else FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        self.flushes.append(timeout)

    def close(self, timeout: float = 0) -> None:
        self.closed.append(timeout)

    def on(self, topic: str) -> list[dict[str, Any]]:
        """Every send to ``topic``."""
        return [s for s in self.sent if s["topic"] == topic]


class FakeAdmin:
    """``list_topics``/``describe_topics`` over a dict name -> topic id; can be made to fail."""

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


def _conforms(
    consumer: FakeConsumer,
    publisher: FakePublisher,
    changelog: FakeChangelog,
    producer: FakeProducer,
    future: FakeFuture,
) -> tuple[Consumer, RecordPublisher, ChangelogReader, Producer, DeliveryFuture]:
    """Never called: mypy checks here that each fake implements its protocol."""
    return consumer, publisher, changelog, producer, future
