"""Reading a whole topic to its current end, for a client outside the deployment.

A :class:`TopicScan` is a :class:`~streamlabel.kafka.client.TopicReader` on a
consumer it is given (without a group), that can read up to the end offsets
the topic had when asked (:meth:`TopicScan.to_end`) and then keep following it.
:func:`class_events` reads the ``classes`` changelog in order, skipping the
events of a fenced learner as every replica does.

Example:
    >>> from streamlabel.settings.kafka import KafkaSettings
    >>> from streamlabel.testing.broker import MemoryBroker
    >>> broker = MemoryBroker({"sl.alerts": 1})
    >>> for i in range(3):
    ...     _ = broker.append("sl.alerts", None, b"not a record")
    >>> with TopicScan(KafkaSettings(), "alerts", broker.consumer()) as scan:
    ...     [len(batch) for batch in scan.to_end(raw=True)]
    [3]
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from streamlabel.errors import BrokerError, DecodeError
from streamlabel.kafka.changelog import LEARNER_EPOCH_HEADER
from streamlabel.kafka.client import TopicReader
from streamlabel.kafka.io import make_consumer
from streamlabel.kafka.protocols import Clock
from streamlabel.schemas import ClassEvent, Record, decode
from streamlabel.settings.kafka import KafkaSettings

__all__ = ["TopicConsumer", "TopicScan", "class_events", "group_less_consumer"]

_MAX_EVENT_BYTES = 64 * 1024 * 1024


class TopicConsumer(Protocol):
    """The part of kafka-python's ``KafkaConsumer`` (without a group) a scan reads with."""

    def partitions_for_topic(self, topic: str) -> set[int] | None: ...

    def assign(self, partitions: Sequence[Any]) -> None: ...

    def assignment(self) -> set[Any]: ...

    def seek_to_beginning(self, *partitions: Any) -> None: ...

    def seek_to_end(self, *partitions: Any) -> None: ...

    def end_offsets(self, partitions: Any) -> dict[Any, int]: ...

    def position(self, partition: Any) -> int: ...

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Any: ...

    def close(self, autocommit: bool = True) -> None: ...


def group_less_consumer(settings: KafkaSettings) -> TopicConsumer:
    """A kafka-python consumer without a group (the default of a scan's owner)."""
    consumer: TopicConsumer = make_consumer(settings, group_id=None, max_poll_records=5000)
    return consumer


class TopicScan:
    """Reads one topic of a deployment through a given consumer; closes it at the end.

    Args:
        settings: Kafka settings (topic names).
        kind: the topic kind (``labels``, ``classes``, ``command_results``...).
        consumer: a consumer without a group (closed with the scan).
        from_beginning: False starts at the topic's end (what arrives from now on),
            resolved before the constructor returns.
        stall_timeout_s: how long :meth:`to_end` may go without progress.
        clock: monotonic seconds.

    Raises:
        BrokerError: the topic does not exist.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        kind: str,
        consumer: TopicConsumer,
        *,
        from_beginning: bool = True,
        stall_timeout_s: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.reader = TopicReader(settings, kind, from_beginning=from_beginning, consumer=consumer)
        self.consumer = consumer
        self.stall_timeout_s = stall_timeout_s
        self._clock = clock
        for tp in consumer.assignment():  # kafka-python seeks lazily: resolve it now
            consumer.position(tp)

    @property
    def topic(self) -> str:
        return self.reader.topic

    def poll(self, timeout_ms: int = 200) -> list[Any]:
        """New raw messages (with their headers)."""
        return self.reader.poll(timeout_ms)

    def records(self, timeout_ms: int = 200) -> list[Record]:
        """New decoded records (undecodable ones are skipped)."""
        return self.reader.records(timeout_ms)

    def to_end(self, *, raw: bool = False) -> Iterator[list[Any]]:
        """Batches of records (decoded, or raw messages with ``raw``) up to the end
        offsets the topic had when called.

        Raises:
            BrokerError: no progress for ``stall_timeout_s`` before the end.
        """
        consumer = self.consumer
        ends = consumer.end_offsets(list(consumer.assignment()))
        deadline = self._clock() + self.stall_timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            batch = self.poll() if raw else self.records()
            if batch:
                deadline = self._clock() + self.stall_timeout_s
                yield batch
            elif self._clock() >= deadline:
                raise BrokerError(
                    f"could not read {self.topic!r} to its end: no progress in "
                    f"{self.stall_timeout_s:g}s"
                )

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> TopicScan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def class_events(scan: TopicScan) -> Iterator[ClassEvent]:
    """The class events of a ``classes`` scan to its end, in order, without those of a
    fenced learner (a writer epoch below one already read) and records that do not decode.
    """
    epoch = 0
    for batch in scan.to_end(raw=True):
        for m in batch:
            try:
                event = decode(m.value, ClassEvent, max_bytes=_MAX_EVENT_BYTES)
            except DecodeError:
                continue
            header = dict(m.headers or []).get(LEARNER_EPOCH_HEADER)
            written = int(header) if header and header.isdigit() else 0
            if written < epoch:
                continue
            epoch = written
            yield event
