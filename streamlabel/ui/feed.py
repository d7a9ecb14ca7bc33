"""The console's feed: one consumer without a group that reads the deployment's
output topics from their beginning into :class:`~streamlabel.ui.views.ConsoleViews`.

It reads ``labels``, ``unknowns``, ``classes``, ``alerts``, ``command_results`` and
``dlq`` (nothing the stream workers read), in a background thread
(:meth:`ConsoleFeed.start`) or once to the topics' current ends
(:meth:`ConsoleFeed.read_to_end`, for ``streamlabel report``). The consumer is
built on first use; a broker error closes it and the thread opens a new one
after a pause. Events of a fenced learner on ``classes`` are skipped as every
replica skips them.

Example (an in-memory broker):
    >>> from streamlabel.kafka.topics import Topics
    >>> from streamlabel.schemas import encode
    >>> from streamlabel.settings.kafka import KafkaSettings
    >>> from streamlabel.testing.broker import MemoryBroker
    >>> from streamlabel.testing.records import event
    >>> broker = MemoryBroker.deployment(Topics("sl."))
    >>> _ = broker.append("sl.classes", b"c1", encode(event("c1", name="billing")))
    >>> feed = ConsoleFeed(KafkaSettings(), consumers=broker.consumer)
    >>> [c.state.name for c in feed.read_to_end().classes()]
    ['billing']
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from streamlabel.errors import BrokerError, DecodeError
from streamlabel.kafka.changelog import LEARNER_EPOCH_HEADER
from streamlabel.kafka.client import RECORD_TYPES
from streamlabel.kafka.topic_scan import TopicConsumer, group_less_consumer
from streamlabel.kafka.topics import Topics
from streamlabel.schemas import decode
from streamlabel.settings.kafka import KafkaSettings
from streamlabel.ui.views import ConsoleViews

__all__ = ["FEED_TOPICS", "ConsoleFeed"]

log = structlog.get_logger(__name__)

FEED_TOPICS = ("labels", "unknowns", "classes", "alerts", "command_results", "dlq")
"""The topic kinds the console reads (its outputs and answers; never ``items``)."""

_MAX_BYTES = 64 * 1024 * 1024


class ConsoleFeed:
    """Reads the deployment's output topics into views.

    Args:
        kafka: the deployment's Kafka settings (bootstrap servers, topic names).
        views: where the records go (a new :class:`ConsoleViews` by default).
        consumers: builds a consumer without a group (default: kafka-python's).
        poll_ms: how long one poll waits for records.
        retry_s: the pause before a new consumer after a broker error.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        views: ConsoleViews | None = None,
        *,
        consumers: Callable[[KafkaSettings], TopicConsumer] = group_less_consumer,
        poll_ms: int = 500,
        retry_s: float = 5.0,
    ) -> None:
        self.kafka = kafka
        self.views = views or ConsoleViews()
        self._consumers = consumers
        self.poll_ms = poll_ms
        self.retry_s = retry_s
        topics = Topics.of(kafka)
        self._kinds = {topics.name(k): k for k in FEED_TOPICS}
        self._consumer: TopicConsumer | None = None
        self._epoch = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.records = 0
        """Messages read so far."""
        self.errors = 0
        """Broker errors met (each closed the consumer)."""

    # ------------------------------------------------------------ lifecycle
    def start(self) -> ConsoleFeed:
        """Follows the topics in a daemon thread until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="console-feed", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stops the thread and closes the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --------------------------------------------------------------- reading
    def read_to_end(self, stall_timeout_s: float = 30.0) -> ConsoleViews:
        """Reads every topic up to the end offsets it has now; returns the views.

        Raises:
            BrokerError: a topic is missing, or no progress for ``stall_timeout_s``.
        """
        consumer = self._open()
        try:
            ends = consumer.end_offsets(list(consumer.assignment()))
            deadline = time.monotonic() + stall_timeout_s
            while any(consumer.position(tp) < end for tp, end in ends.items()):
                if self.poll_once():
                    deadline = time.monotonic() + stall_timeout_s
                elif time.monotonic() > deadline:
                    raise BrokerError(
                        f"could not read the console's topics to their end: no progress in "
                        f"{stall_timeout_s:g}s"
                    )
        finally:
            self._close()
        return self.views

    def poll_once(self) -> int:
        """One poll of every topic into the views; returns how many messages came."""
        consumer = self._open()
        polled = consumer.poll(timeout_ms=self.poll_ms, max_records=5000)
        n = 0
        for batch in polled.values():
            for m in batch:
                self._take(m)
                n += 1
        self.records += n
        return n

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # a broker down or restarting: try again later
                self.errors += 1
                log.warning("console_feed_error", error=str(exc)[:300])
                self._close()
                self._stop.wait(self.retry_s)

    def _open(self) -> TopicConsumer:
        if self._consumer is not None:
            return self._consumer
        from kafka.structs import TopicPartition

        consumer = self._consumers(self.kafka)
        tps = []
        for topic in self._kinds:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                consumer.close()
                raise BrokerError(f"topic {topic!r} does not exist (has streamlabel run "
                                  "created its topics? is kafka.topic_prefix right?)")  # fmt: skip
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        self._consumer = consumer
        return consumer

    def _close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                consumer.close()
            except Exception:  # closing a consumer of a dead broker
                log.debug("console_feed_close_failed")

    def _take(self, m: Any) -> None:
        kind = self._kinds.get(m.topic)
        if kind is None:
            return
        if kind == "dlq":
            self.views.dead_letter()
            return
        try:
            record = decode(m.value, RECORD_TYPES[kind], max_bytes=_MAX_BYTES)
        except DecodeError:
            return
        if kind == "classes":
            header = dict(m.headers or []).get(LEARNER_EPOCH_HEADER)
            written = int(header) if header and header.isdigit() else 0
            if written < self._epoch:
                return  # a fenced learner's event
            self._epoch = written
        self.views.take(kind, record)
