"""A broker in memory: topics that producers append to and consumers read, for unit
tests of what reads whole topics (the :class:`~streamlabel.kafka.control.Client`).

:class:`MemoryBroker` holds the records of each partition; :meth:`~MemoryBroker.producer`
gives a producer (the :class:`~streamlabel.kafka.protocols.Producer` under a real
:class:`~streamlabel.kafka.publisher.Publisher`) and :meth:`~MemoryBroker.consumer`
a consumer without a group (assign, seek to either end, end offsets, poll).
Hooks run on every send (:attr:`~MemoryBroker.on_send`): :class:`CommandResponder`
answers the commands sent like a learner would. With a
:class:`~streamlabel.testing.ManualClock`, a poll that finds nothing moves the clock
by its timeout, as waiting would.

Example:
    >>> from streamlabel.kafka.topics import Topics
    >>> broker = MemoryBroker.deployment(Topics("t."))
    >>> _ = broker.producer().send("t.labels", key=b"i1", value=b"x", headers=[])
    >>> [m.value for m in broker.records("t.labels")]
    [b'x']
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from streamlabel.kafka.topics import TOPIC_KINDS, Topics
from streamlabel.schemas import decode, encode
from streamlabel.schemas.commands import Command, CommandResult
from streamlabel.testing.fakes import ManualClock
from streamlabel.testing.kafka import FakeFuture, consumed

with warnings.catch_warnings():  # kafka-python loads its protocol files with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.structs import TopicPartition

__all__ = [
    "CommandResponder",
    "MemoryBroker",
    "MemoryConsumer",
    "MemoryProducer",
    "applied",
    "rejected",
]

_ONE_PARTITION = frozenset({"classes", "alerts", "command_results"})

SendHook = Callable[[str, bytes | None, bytes], None]
"""Called with (topic, key, value) after each record is appended."""


class MemoryBroker:
    """Topics in memory, shared by the producers and consumers it makes.

    Args:
        partitions: topic name -> partition count (more with :meth:`create`).
        clock: moved forward by an empty poll's timeout (none: polls do not wait).
    """

    def __init__(
        self, partitions: Mapping[str, int] | None = None, *, clock: ManualClock | None = None
    ) -> None:
        self.log: dict[str, list[list[Any]]] = {}
        self.clock = clock
        self.on_send: list[SendHook] = []
        self.consumers: list[MemoryConsumer] = []
        self.producers: list[MemoryProducer] = []
        for topic, n in (partitions or {}).items():
            self.create(topic, n)

    @classmethod
    def deployment(
        cls, topics: Topics, *, partitions: int = 2, clock: ManualClock | None = None
    ) -> MemoryBroker:
        """Every topic of a deployment (``classes``, ``alerts`` and ``command_results``
        with one partition, as ``ensure_topics`` creates them)."""
        return cls(
            {topics.name(k): 1 if k in _ONE_PARTITION else partitions for k in TOPIC_KINDS},
            clock=clock,
        )

    def create(self, topic: str, partitions: int = 1) -> None:
        """Creates a topic (no-op when it exists)."""
        self.log.setdefault(topic, [[] for _ in range(partitions)])

    def append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        partition: int | None = None,
    ) -> Any:
        """Appends one record (keyed ones to a partition by a stable hash of the key)."""
        parts = self.log[topic]  # KeyError: a topic that does not exist
        if partition is None:
            partition = zlib.crc32(key) % len(parts) if key is not None else 0
        record = consumed(topic, partition, len(parts[partition]), value, key, headers)
        parts[partition].append(record)
        for hook in list(self.on_send):
            hook(topic, key, value)
        return record

    def records(self, topic: str) -> list[Any]:
        """Every record of a topic, partition by partition."""
        return [r for part in self.log[topic] for r in part]

    def producer(self, settings: Any = None) -> MemoryProducer:
        """A producer that appends to this broker (``settings`` is ignored)."""
        producer = MemoryProducer(self)
        self.producers.append(producer)
        return producer

    def consumer(self, settings: Any = None) -> MemoryConsumer:
        """A consumer without a group reading this broker (``settings`` is ignored)."""
        consumer = MemoryConsumer(self)
        self.consumers.append(consumer)
        return consumer


class MemoryProducer:
    """Appends every send to its broker at once; each future is already done."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.flushes = 0
        self.closed = False

    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> FakeFuture:
        self.broker.append(topic, key, value, headers, partition=partition)
        return FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1

    def close(self, timeout: float = 0) -> None:
        self.closed = True


class MemoryConsumer:
    """Reads its broker's partitions from where it seeks (like kafka-python without a group)."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.positions: dict[TopicPartition, int] = {}
        self.polls = 0
        self.closed = False

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        parts = self.broker.log.get(topic)
        return set(range(len(parts))) if parts is not None else None

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        self.positions = dict.fromkeys(partitions, 0)

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions or tuple(self.positions):
            self.positions[tp] = 0

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        for tp in partitions or tuple(self.positions):
            self.positions[tp] = self._end(tp)

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._end(tp) for tp in partitions}

    def highwater(self, partition: TopicPartition) -> int | None:
        return self._end(partition)

    def position(self, partition: TopicPartition) -> int:
        return self.positions[partition]

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        self.polls += 1
        out: dict[TopicPartition, list[Any]] = {}
        budget = max_records if max_records is not None else 500
        for tp in sorted(self.positions):
            if budget <= 0:
                break
            part = self.broker.log[tp.topic][tp.partition]
            got = part[self.positions[tp] : self.positions[tp] + budget]
            if got:
                out[tp] = got
                self.positions[tp] += len(got)
                budget -= len(got)
        if not out and self.broker.clock is not None:
            self.broker.clock.advance(timeout_ms / 1000)
        return out

    def close(self, autocommit: bool = True) -> None:
        self.closed = True

    def _end(self, tp: TopicPartition) -> int:
        return len(self.broker.log[tp.topic][tp.partition])


class CommandResponder:
    """Answers each command sent to a broker on ``command_results``, as the learner does.

    Args:
        broker: the broker to watch (its :attr:`~MemoryBroker.on_send` hook).
        topics: the deployment's topics.
        decide: the result of a command; None leaves it unanswered (default: applied).
    """

    def __init__(
        self,
        broker: MemoryBroker,
        topics: Topics,
        decide: Callable[[Command], CommandResult | None] | None = None,
    ) -> None:
        self.broker = broker
        self.topics = topics
        self.decide = decide or applied
        self.commands: list[Command] = []
        self.keys: list[bytes | None] = []
        broker.on_send.append(self._on_send)

    def _on_send(self, topic: str, key: bytes | None, value: bytes) -> None:
        if topic != self.topics.commands:
            return
        command = decode(value, Command)
        self.commands.append(command)
        self.keys.append(key)
        result = self.decide(command)
        if result is not None:
            self.broker.append(
                self.topics.command_results, result.command_id.encode(), encode(result)
            )


def applied(command: Command, *, reason: str | None = None) -> CommandResult:
    """An ``applied`` answer to a command."""
    return CommandResult(
        command_id=command.command_id, kind=command.kind, status="applied", reason=reason,
        store_version=1, issued_by=command.issued_by, at=command.issued_at,
    )  # fmt: skip


def rejected(command: Command, reason: str) -> CommandResult:
    """A ``rejected`` answer to a command, with its reason."""
    return CommandResult(
        command_id=command.command_id, kind=command.kind, status="rejected", reason=reason,
        store_version=1, issued_by=command.issued_by, at=command.issued_at,
    )  # fmt: skip
