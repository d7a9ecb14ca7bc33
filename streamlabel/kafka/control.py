"""A client of a running deployment: feed it, steer it, read what it learned.

:class:`Client` produces items and feedback, sends a person's commands to the
learner (on ``commands``, keyed by the class they concern) and waits for each
answer on ``command_results``, and reads back the classes (the latest state of
each on ``classes``, and its history), the labels (each item's highest
revision) and a sample of what is still unknown. It needs only Kafka: no model,
no Ray, no FAISS.

Example:
    >>> from streamlabel.schemas import Item
    >>> with Client(bootstrap_servers="127.0.0.1:9092") as client:  # doctest: +SKIP
    ...     client.produce_items([Item(id="q1", text="how do I sort a dict?")])
    ...     result = client.rename("novel-70e0933de5", "linq")
    ...     print(result.status, result.reason)
    ...     for label in client.labels():
    ...         print(label.item_id, label.class_name or label.label, label.revision)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from streamlabel.errors import PublishError, SettingsError
from streamlabel.kafka.changelog import keep_latest
from streamlabel.kafka.client import LabelCollector, produce_feedback, produce_items
from streamlabel.kafka.control_views import (
    CommandTimeoutError,
    HistoryEntry,
    UnknownSample,
    build_command,
    current_unknowns,
    os_user,
)
from streamlabel.kafka.protocols import Clock, Producer
from streamlabel.kafka.publisher import Publisher
from streamlabel.kafka.topic_scan import TopicConsumer, TopicScan, class_events, group_less_consumer
from streamlabel.kafka.topics import Topics
from streamlabel.schemas import (
    ClassEvent,
    ClassState,
    Feedback,
    Item,
    LabelRecord,
    UnknownRecord,
    encode,
)
from streamlabel.schemas.commands import Command, CommandKind, CommandResult
from streamlabel.settings.kafka import KafkaSettings

__all__ = ["Client"]


class Client:
    """A deployment's Kafka side, from outside: produce, command, read back.

    Nothing connects until first used; the producer is kept until :meth:`close`
    (or the ``with`` block's end), each read uses a consumer of its own.

    Args:
        bootstrap_servers: ``host:port[,host:port]`` (overrides the settings' own).
        settings: the deployment's Kafka settings, or loaded runtime settings (their
            ``kafka`` section): topic names, security, timeouts.
        topic_prefix: the deployment's topic prefix (overrides the settings' own).
        issued_by: who the commands come from (default: the OS user).
        command_timeout_s: how long :meth:`send` waits for an answer by default.
        read_timeout_s: how long a read may go without progress before it fails.
        consumers: builds a consumer without a group (default: kafka-python's).
        producers: builds the producer (default: kafka-python's).
        clock: monotonic seconds, for the deadlines.

    Raises:
        SettingsError: no bootstrap servers, or an invalid setting.

    Example (an in-memory broker whose "learner" applies every command):
        >>> from streamlabel.kafka.topics import Topics
        >>> from streamlabel.testing.broker import CommandResponder, MemoryBroker
        >>> broker = MemoryBroker.deployment(Topics("sl."))
        >>> learner = CommandResponder(broker, Topics("sl."))
        >>> with Client("127.0.0.1:9092", issued_by="ana", consumers=broker.consumer,
        ...             producers=broker.producer) as client:
        ...     result = client.rename("d-3", "billing")
        >>> result.status, learner.commands[0].name, learner.keys[0]
        ('applied', 'billing', b'd-3')
    """

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        *,
        settings: KafkaSettings | Any = None,
        topic_prefix: str | None = None,
        issued_by: str | None = None,
        command_timeout_s: float = 30.0,
        read_timeout_s: float = 30.0,
        consumers: Callable[[KafkaSettings], TopicConsumer] | None = None,
        producers: Callable[[KafkaSettings], Producer] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        kafka = _kafka_settings(settings, bootstrap_servers, topic_prefix)
        if kafka.bootstrap_servers is None:
            raise SettingsError(
                "kafka.bootstrap_servers is not set: pass --bootstrap-servers or "
                "STREAMLABEL_KAFKA__BOOTSTRAP_SERVERS"
            )
        self.kafka = kafka
        self.topics = Topics.of(kafka)
        self.issued_by = issued_by or os_user()
        self.command_timeout_s = command_timeout_s
        self.read_timeout_s = read_timeout_s
        self._consumers = consumers or group_less_consumer
        self._clock = clock
        self._publisher = Publisher(kafka, self.topics, make=producers)

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Flushes what is queued and closes the producer."""
        self._publisher.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- produce
    def produce_items(self, items: Iterable[Item]) -> int:
        """Sends items to ``items`` (keyed by id), checking every delivery; returns how many.

        Raises:
            PublishError: a record was not delivered.
        """
        return produce_items(self.kafka, items, publisher=self._publisher)

    def produce_feedback(self, feedback: Iterable[Feedback]) -> int:
        """Sends labelled examples to ``feedback``, checking every delivery; returns how many.

        The learner reads them in bulk and answers none (:meth:`teach` is answered).

        Raises:
            PublishError: a record was not delivered.
        """
        return produce_feedback(self.kafka, feedback, publisher=self._publisher)

    def feedback(
        self, label: str, *, item_id: str | None = None, text: str | None = None
    ) -> Feedback:
        """Sends one example of ``label`` to ``feedback``: an item seen (by id) or a text.

        Returns:
            The feedback record sent (its ``source`` is :attr:`issued_by`).

        Raises:
            ValueError: neither an item id nor a text, or a reserved/empty label.
        """
        record = Feedback(item_id=item_id, text=text, label=label, source=self.issued_by)
        self.produce_feedback([record])
        return record

    # ------------------------------------------------------------- commands
    def send(self, command: Command, *, timeout: float | None = None) -> CommandResult:
        """Sends a command and waits for the learner's answer (applied or rejected).

        Raises:
            CommandTimeoutError: no answer within ``timeout`` seconds
                (default :attr:`command_timeout_s`).
            PublishError: the command was not delivered.
        """
        return self.send_many([command], timeout=timeout)[0]

    def send_many(
        self, commands: Sequence[Command], *, timeout: float | None = None
    ) -> list[CommandResult]:
        """Sends commands (in order) and waits for every answer; results in the same order.

        ``command_results`` is read from its end as it was before the first send,
        so no answer is missed; the learner answers a command id it answered
        before with its first answer, so a repeated command still returns.

        Raises:
            CommandTimeoutError: some answers missing after ``timeout`` seconds
                (those that came are in its ``answered``).
            PublishError: a command was not delivered (or can never be: too large).
        """
        if not commands:
            return []
        timeout = self.command_timeout_s if timeout is None else timeout
        with self._scan("command_results", from_beginning=False) as results:  # before sending
            diverted = self._publisher.unpublishable
            for command in commands:
                value = encode(command, format=self.kafka.format.commands)
                self._publisher.send(self.topics.commands, command.key.encode(), value)
            self._publisher.flush()
            if self._publisher.unpublishable > diverted:  # a dead letter went in its place
                raise PublishError(
                    f"{self._publisher.unpublishable - diverted} command(s) could not be "
                    f"published to {self.topics.commands!r} (too large, or refused)"
                )
            return self._await(results, commands, timeout)

    def _await(
        self, results: TopicScan, commands: Sequence[Command], timeout: float
    ) -> list[CommandResult]:
        wanted = {c.command_id for c in commands}
        answered: dict[str, CommandResult] = {}
        deadline = self._clock() + timeout
        while True:
            for r in results.records(timeout_ms=_wait_ms(deadline - self._clock())):
                if isinstance(r, CommandResult) and r.command_id in wanted:
                    answered.setdefault(r.command_id, r)
            if len(answered) == len(wanted):
                return [answered[c.command_id] for c in commands]
            if self._clock() >= deadline:
                break
        missing = [c.command_id for c in commands if c.command_id not in answered]
        what = (f"command {commands[0].kind} {missing[0]}" if len(commands) == 1
                else f"{len(missing)} of {len(commands)} commands")  # fmt: skip
        raise CommandTimeoutError(
            f"no answer to {what} on {self.topics.command_results!r} within {timeout:g}s: "
            f"is the learner running and reading {self.topics.commands!r}?",
            missing,
            answered.values(),
        )

    def command(self, kind: CommandKind, **fields: Any) -> Command:
        """A command from this client (a fresh id, :attr:`issued_by`, now); not sent.

        Raises:
            InvalidCommandError: a field the kind needs is missing or invalid.
        """
        return build_command(kind, issued_by=self.issued_by, **fields)

    def rename(self, class_id: str, name: str, *, timeout: float | None = None) -> CommandResult:
        """Renames a class (its id stays; the old name becomes an alias)."""
        return self.send(self.command("rename", class_id=class_id, name=name), timeout=timeout)

    def merge(self, source: str, target: str, *, timeout: float | None = None) -> CommandResult:
        """Folds ``source`` into ``target`` (the source's id and names become aliases)."""
        return self.send(self.command("merge", class_id=source, target=target), timeout=timeout)

    def retire(self, class_id: str, *, timeout: float | None = None) -> CommandResult:
        """Stops predicting a class (a later example of it revives it)."""
        return self.send(self.command("retire", class_id=class_id), timeout=timeout)

    def add_class(
        self, name: str, description: str, *, timeout: float | None = None
    ) -> CommandResult:
        """Adds a zero-shot class from a name and a description (embedded by the model)."""
        command = self.command("add_class", name=name, description=description)
        return self.send(command, timeout=timeout)

    def teach(
        self,
        label: str,
        *,
        item_id: str | None = None,
        text: str | None = None,
        item_ids: Sequence[str] = (),
        timeout: float | None = None,
    ) -> CommandResult:
        """Teaches ``label`` (a class's name or id; a new name creates a class) examples:
        items already seen (by id) and/or a text. Answered, unlike :meth:`feedback`."""
        ids = (*item_ids, item_id) if item_id is not None else tuple(item_ids)
        command = self.command("teach", label=label, text=text, item_ids=ids)
        return self.send(command, timeout=timeout)

    def split_off(
        self, class_id: str, item_ids: Sequence[str], name: str, *, timeout: float | None = None
    ) -> CommandResult:
        """Moves the given items of a class to a new class named ``name``."""
        command = self.command("split_off", class_id=class_id, item_ids=tuple(item_ids), name=name)
        return self.send(command, timeout=timeout)

    def set_threshold(
        self, class_id: str, value: float, *, timeout: float | None = None
    ) -> CommandResult:
        """Fixes a class's open-set threshold (a similarity in [-1, 1])."""
        command = self.command("set_threshold", class_id=class_id, threshold=value)
        return self.send(command, timeout=timeout)

    # ------------------------------------------------------------ read back
    def classes(self) -> dict[str, ClassState]:
        """The latest state of every class on ``classes`` (retired and merged ones too),
        by id, in order of creation.

        Events of a fenced learner (a writer epoch below one already read) are
        skipped, as every replica skips them.
        """
        latest: dict[str, ClassEvent] = {}
        for event in self._class_events():
            keep_latest(latest, event)
        states = sorted((e.state for e in latest.values()),
                        key=lambda s: (s.created_version, s.class_id))  # fmt: skip
        return {s.class_id: s for s in states}

    def class_history(self, class_id: str) -> list[HistoryEntry]:
        """The changes of a class on ``classes``, oldest first: its own events and those
        that involved it (a merge into it names it in ``related``)."""
        return [
            HistoryEntry.of(e)
            for e in self._class_events()
            if e.class_id == class_id or class_id in e.related
        ]

    def labels(
        self, *, follow: bool = False, stop: Callable[[], bool] = lambda: False
    ) -> Iterator[LabelRecord]:
        """Each item's current label: its highest revision (of equal ones, the later).

        Reads ``labels`` to its current end and yields one record per item; with
        ``follow``, then yields every record that becomes its item's current label
        (a new item, or a revision) as it arrives, until ``stop()`` is true.
        """
        collector = LabelCollector(self.kafka)
        with self._scan("labels") as scan:
            for batch in scan.to_end():
                for r in batch:
                    if isinstance(r, LabelRecord):
                        collector.take(r)
            yield from list(collector.final.values())
            while follow and not stop():
                for r in scan.records(timeout_ms=500):
                    if isinstance(r, LabelRecord) and collector.take(r):
                        yield r

    def unknowns_sample(self, n: int = 20) -> list[UnknownSample]:
        """The ``n`` items most recently labelled whose current label is still ``unknown``,
        newest first, each with its text (from ``unknowns``) and nearest classes by name.

        Reads ``labels``, then ``unknowns`` and ``classes``, to their current ends.
        """
        collector = LabelCollector(self.kafka)
        with self._scan("labels") as scan:
            for batch in scan.to_end():
                for r in batch:
                    if isinstance(r, LabelRecord):
                        collector.take(r)
        chosen = current_unknowns(collector.final.values(), n)
        if not chosen:
            return []
        texts: dict[str, tuple[int, str | None]] = {r.item_id: (-1, None) for r in chosen}
        with self._scan("unknowns") as scan:
            for batch in scan.to_end():
                for u in batch:
                    kept = texts.get(u.item_id) if isinstance(u, UnknownRecord) else None
                    if kept is not None and u.text is not None and u.revision >= kept[0]:
                        texts[u.item_id] = (u.revision, u.text)
        names = {cid: st.name for cid, st in self.classes().items()}
        return [UnknownSample.of(r, texts[r.item_id][1], names) for r in chosen]

    # -------------------------------------------------------------- reading
    def _scan(self, kind: str, *, from_beginning: bool = True) -> TopicScan:
        return TopicScan(self.kafka, kind, self._consumers(self.kafka),
                         from_beginning=from_beginning, stall_timeout_s=self.read_timeout_s,
                         clock=self._clock)  # fmt: skip

    def _class_events(self) -> Iterator[ClassEvent]:
        with self._scan("classes") as scan:
            yield from class_events(scan)


def _wait_ms(remaining_s: float) -> int:
    """A poll's timeout: up to 200 ms, never past the deadline (at least 1 ms)."""
    return max(1, min(200, int(remaining_s * 1000)))


def _kafka_settings(
    settings: KafkaSettings | Any, bootstrap_servers: str | None, topic_prefix: str | None
) -> KafkaSettings:
    """The Kafka settings of a client: given ones (or a runtime settings' ``kafka``),
    with the explicit bootstrap servers and topic prefix over theirs."""
    if settings is None:
        base: dict[str, Any] = {}
    elif isinstance(settings, KafkaSettings):
        base = settings.model_dump()
    elif isinstance(getattr(settings, "kafka", None), KafkaSettings):
        base = settings.kafka.model_dump()
    else:
        raise SettingsError(f"expected KafkaSettings or settings with a kafka section, got "
                            f"{type(settings).__name__}")  # fmt: skip
    if bootstrap_servers is not None:
        base["bootstrap_servers"] = bootstrap_servers
    if topic_prefix is not None:
        base["topic_prefix"] = topic_prefix
    try:
        return KafkaSettings.model_validate(base)
    except ValueError as exc:
        raise SettingsError(f"invalid Kafka settings: {exc}") from exc
