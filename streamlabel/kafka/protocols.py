"""What an actor needs from its Kafka collaborators, as small protocols.

The actors take their consumer, publisher, changelog reader and clock as
constructor arguments, typed by these protocols (the real clients are built
lazily when none is given). kafka-python's ``KafkaConsumer`` and
``KafkaProducer`` satisfy :class:`Consumer` and :class:`Producer`;
:class:`~streamlabel.kafka.publisher.Publisher` satisfies :class:`RecordPublisher`;
:class:`~streamlabel.kafka.changelog.ClassTail` satisfies
:class:`ChangelogReader`. The in-memory fakes of ``streamlabel.testing.kafka``
implement the same protocols, so mypy keeps them honest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from streamlabel.errors import PublishError
    from streamlabel.kafka.io import OutRecord
    from streamlabel.pipeline.output import EngineOutput
    from streamlabel.schemas import ClassEvent

__all__ = [
    "ChangelogReader",
    "Clock",
    "Consumer",
    "DeliveryFuture",
    "Producer",
    "RebalanceListener",
    "RecordPublisher",
]


class Clock(Protocol):
    """Monotonic seconds (``time.monotonic``; tests pass a settable one)."""

    def __call__(self) -> float: ...


class RebalanceListener(Protocol):
    """What a consumer calls inside ``poll`` when the group's assignment changes."""

    def on_partitions_revoked(self, revoked: Any) -> None: ...

    def on_partitions_assigned(self, assigned: Any) -> None: ...


class Consumer(Protocol):
    """The part of kafka-python's ``KafkaConsumer`` the actors use.

    Partitions are kafka-python ``TopicPartition``s; a poll returns
    ``{partition: [ConsumerRecord, ...]}``.
    """

    def subscribe(self, topics: Sequence[str], listener: Any = None) -> None: ...

    def assign(self, partitions: Sequence[Any]) -> None: ...

    def assignment(self) -> set[Any]: ...

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[Any, list[Any]]: ...

    def position(self, partition: Any) -> int: ...

    def highwater(self, partition: Any) -> int | None: ...

    def end_offsets(
        self, partitions: Sequence[Any], timeout_ms: int | None = None
    ) -> Mapping[Any, int | None]: ...

    def committed(self, partition: Any) -> int | None: ...

    def seek(self, partition: Any, offset: int) -> None: ...

    def seek_to_beginning(self, *partitions: Any) -> None: ...

    def commit(self, offsets: Mapping[Any, Any]) -> None: ...

    def close(self, autocommit: bool = True) -> None: ...


class DeliveryFuture(Protocol):
    """The part of kafka-python's ``FutureRecordMetadata`` the publisher reads."""

    @property
    def is_done(self) -> bool: ...

    @property
    def exception(self) -> Any: ...

    def failed(self) -> bool: ...


class Producer(Protocol):
    """The part of kafka-python's ``KafkaProducer`` the publisher uses."""

    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> DeliveryFuture: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float = 0) -> None: ...


class RecordPublisher(Protocol):
    """Sends an Engine's output and checks every delivery (see ``kafka.publisher.Publisher``)."""

    def records(
        self, out: EngineOutput, *, event_headers: Sequence[tuple[str, bytes]] = ()
    ) -> list[OutRecord]: ...

    def send_all(self, records: Iterable[OutRecord]) -> int: ...

    def flush(self, timeout: float | None = None) -> int: ...

    def deliver(
        self,
        records: Sequence[OutRecord],
        *,
        retry_s: float,
        on_failure: Callable[[int, PublishError], None],
        after_first_send: Callable[[], None] | None = None,
    ) -> None: ...

    def close(self, timeout: float = 5.0) -> None: ...


class ChangelogReader(Protocol):
    """Reads the ``classes`` changelog (see ``kafka.changelog.ClassTail``)."""

    @property
    def learner_offsets(self) -> dict[str, int] | None:
        """The learner's consumed offsets carried by the last event read."""

    @property
    def epoch(self) -> int:
        """The highest writer epoch seen (``learner.epoch`` header; 0: none)."""

    def poll(self, timeout_ms: int = 0) -> list[ClassEvent]: ...

    def catch_up(self, stall_timeout_s: float = 30.0) -> list[ClassEvent]:
        """The latest event of every class, read to the changelog's end."""
        ...

    def reset(self) -> None: ...

    def close(self) -> None: ...
