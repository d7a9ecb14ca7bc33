"""How a stream worker reads ``items``: batches polled from the group, and its rebalances.

A :class:`Batch` is one poll's records on their way through a step; it
remembers when it was polled (against ``kafka.max_poll_interval_ms``) and in
which rebalance epoch, so a step can tell a batch whose partitions may have
moved since. The :class:`Poller` is also the consumer's rebalance listener:
it counts rebalances, and hands the offsets a refused commit left to the
:class:`~streamlabel.kafka.offsets.OffsetTracker`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kafka import ConsumerRebalanceListener

from streamlabel.core.batching import BatchSizer
from streamlabel.kafka.io import lag
from streamlabel.kafka.offsets import OffsetTracker
from streamlabel.kafka.protocols import Clock, Consumer
from streamlabel.pipeline.output import EngineOutput
from streamlabel.settings.runtime import RuntimeSettings
from streamlabel.workers.stats import WorkerStats

__all__ = ["BACKLOG_BATCHES", "END_OFFSETS_EVERY_S", "Batch", "Poller", "batch_sizer", "waited_s"]

BACKLOG_BATCHES = 16
"""A backlog of more adaptive batches than this makes a worker poll full batches. 16,
not 4: once stale watermarks no longer hid backlogs, 4 turned a passing queue at half
capacity into a full poll (p99 at half rate, medians of 4-6 runs: 371 ms with 16, 738
with 4; throughput unchanged)."""

END_OFFSETS_EVERY_S = 1.0
"""How often, at most, a worker whose watermarks show no backlog asks the broker."""


@dataclass
class Batch:
    """One poll's records on their way through a step."""

    messages: list[Any]
    polled_at: float  # monotonic: the max.poll.interval clock
    epoch: int  # rebalances seen when it was polled
    poll_s: float
    out: EngineOutput | None = None
    records: list[Any] = field(default_factory=list)
    sent: bool = False
    stage_s: dict[str, float] = field(default_factory=dict)
    busy_s: float = 0.0


def batch_sizer(settings: RuntimeSettings) -> BatchSizer | None:
    """The adaptive batch size (``worker.batch_target_ms``), or None when off."""
    rt = settings.worker
    if rt.batch_target_ms is None:
        return None
    return BatchSizer(
        target_s=rt.batch_target_ms / 1e3,
        max_size=rt.batch_size,
        min_size=min(rt.min_batch_size, rt.batch_size),
    )


def waited_s(messages: list[Any], bound_s: float, now: float) -> float:
    """Seconds the oldest of ``messages`` has waited since it was produced, within
    ``[0, bound_s]`` (0 for records without a timestamp, or stamped ahead of ``now``).

    Example:
        >>> from types import SimpleNamespace as R
        >>> waited_s([R(timestamp=99_970), R(timestamp=99_990)], 0.05, 100.0)
        0.03
        >>> waited_s([R(timestamp=90_000)], 0.05, 100.0), waited_s([R(timestamp=-1)], 0.05, 100.0)
        (0.05, 0.0)
    """
    stamps = [t for m in messages if (t := getattr(m, "timestamp", None)) is not None and t > 0]
    if not stamps:
        return 0.0
    return round(min(max(now - min(stamps) / 1e3, 0.0), bound_s), 6)


class Poller(ConsumerRebalanceListener):
    """Polls batches of ``items`` for one stream worker; listens to its rebalances.

    Args:
        consumer: the worker's consumer (subscribed with this poller as listener).
        tracker: the worker's offset bookkeeping.
        settings: validated runtime settings.
        stats: the worker's counters (poll time, recommits, resets, lag, rebalances).
        sizer: the adaptive batch size, or None.
        clock: monotonic seconds.
        log: the worker's bound logger.
        wall: wall-clock seconds (the records' timestamps' clock).
    """

    def __init__(
        self,
        consumer: Consumer,
        tracker: OffsetTracker,
        settings: RuntimeSettings,
        stats: WorkerStats,
        *,
        sizer: BatchSizer | None,
        clock: Clock,
        log: Any,
        wall: Clock = time.time,
    ) -> None:
        self._consumer = consumer
        self._tracker = tracker
        self._settings = settings
        self._stats = stats
        self._sizer = sizer
        self._clock = clock
        self._wall = wall
        self._log = log
        self.epoch = 0  # rebalances seen: a batch polled in another epoch is checked
        self._revoked_at: float | None = None
        self._flowing = False  # the last poll returned records
        self._ends_at = -END_OFFSETS_EVERY_S  # when the end offsets were last asked for
        self._ends: dict[Any, int] = {}  # end offsets asked of the broker, this assignment

    def poll(
        self, *, block: bool, size: int | None = None, timeout_ms: int | None = None
    ) -> Batch | None:
        """Polls up to ``worker.batch_size`` records (the adaptive size, if set).

        ``block``: wait up to ``worker.poll_timeout_ms`` for the first records;
        otherwise take only what the consumer's network thread already fetched
        (the prefetch while the model runs: one short call, so this thread does
        not compete with the model for the cores and the GIL; polling in slices
        until the model was done made batches 35% slower to embed and p50
        latency 3x worse on 2 cores). ``timeout_ms`` replaces the blocking wait.
        """
        if size is None:
            size = self.size()
        t0 = time.perf_counter()
        polled_at = self._clock()  # kafka-python's max-poll timer restarts inside poll
        if timeout_ms is None:
            timeout_ms = self._settings.worker.poll_timeout_ms
        polled = self._consumer.poll(timeout_ms=timeout_ms if block else 0, max_records=size)
        self._flowing = any(polled.values())
        # A rebalance inside this poll came before the fetch of what it returned.
        epoch = self.epoch
        messages, recommits = self._tracker.apply_kept([m for b in polled.values() for m in b])
        self._stats.recommits += recommits
        poll_s = time.perf_counter() - t0
        self._stats.stage_s["poll"] = self._stats.stage_s.get("poll", 0.0) + poll_s
        if not messages:
            return None
        return Batch(messages, polled_at, epoch, poll_s)

    def size(self) -> int:
        """Records per poll: the adaptive size, else ``worker.batch_size``.

        With a backlog of more than :data:`BACKLOG_BATCHES` adaptive batches waiting
        on this worker's partitions, the latency bound is already lost to the queue:
        the poll asks for ``worker.batch_size``, whose larger batches embed faster,
        until the backlog is gone.
        """
        full = self._settings.worker.batch_size
        if self._sizer is None:
            return full
        size = self._sizer.size
        if size < full and self.waiting(BACKLOG_BATCHES * size) > BACKLOG_BATCHES * size:
            return full
        return size

    def waiting(self, enough: int) -> int:
        """Records waiting on this worker's partitions (a lower bound).

        The consumer's high watermarks go stale: kafka-python fetches no partition
        while a poll cut short by ``max_records`` leaves records buffered, so a
        partition not fetched since the backlog arrived still reports its old mark
        (on 2 partitions, the second's thousand items were invisible until the
        first's ran dry, and batches shrank to the bound meanwhile). When that
        count is at most ``enough`` while records flow (the last poll returned
        some), the broker's end offsets are asked for, with a short timeout, at
        most every :data:`END_OFFSETS_EVERY_S` and kept until the next rebalance;
        on tansu they lag by up to one producer batch, still a lower bound.
        """
        total = self._behind()
        now = self._clock()
        if total > enough or not self._flowing or now - self._ends_at < END_OFFSETS_EVERY_S:
            return total
        self._ends_at = now
        try:
            ends = self._consumer.end_offsets(
                list(self._consumer.assignment()), timeout_ms=self._settings.worker.poll_timeout_ms
            )
        except Exception:  # a slow or lost broker: the watermarks are all there is
            return total
        self._ends = {tp: end for tp, end in ends.items() if end is not None}
        return self._behind()

    def _behind(self) -> int:
        """Records behind the newest end known (high watermark or end offset)."""
        return sum(lag(self._consumer, self._ends).values())

    def top_up(self, batch: Batch) -> Batch | None:
        """Adds to a prefetched batch what arrived while the model ran (a prefetch
        taken early in a slow stream would otherwise hold back the records that
        came after it by a whole step). A rebalance in this poll discards both:
        their partitions are rewound and the next poll reads them again."""
        size = self.size()
        if len(batch.messages) >= size:
            return batch
        more = self.poll(block=False, size=size - len(batch.messages))
        return batch if more is None else self._extend(batch, more)

    def poll_filled(self) -> Batch | None:
        """A blocking :meth:`poll` whose batch then waits to fill (:meth:`fill`)."""
        size = self.size()
        batch = self.poll(block=True, size=size)
        return None if batch is None else self.fill(batch, size)

    def fill(self, batch: Batch, size: int) -> Batch | None:
        """Waits for a small batch to fill (``worker.batch_wait_ms``).

        Polls again until the batch has ``size`` records or its oldest record has
        waited ``worker.batch_wait_ms`` since it was produced (its Kafka
        timestamp; a record without one, or stamped in the future by a skewed
        clock, counts from now). Records that already waited that long (a
        backlog, a busy worker) go at once; a trickle is labelled in batches of
        what arrives meanwhile rather than one fetch at a time, whose fixed costs
        would take the cores. A poll that comes back empty ends the wait (it
        waited out the rest of the bound); a rebalance discards the batch as in
        :meth:`top_up`.
        """
        wait_s = self._settings.worker.batch_wait_ms / 1e3
        if wait_s <= 0 or len(batch.messages) >= size:
            return batch
        deadline = self._clock() + wait_s - waited_s(batch.messages, wait_s, self._wall())
        while len(batch.messages) < size:
            left_ms = round((deadline - self._clock()) * 1e3)
            if left_ms <= 0:
                return batch
            more = self.poll(block=True, size=size - len(batch.messages), timeout_ms=left_ms)
            if more is None:
                return batch
            if self._extend(batch, more) is None:
                return None
        return batch

    def _extend(self, batch: Batch, more: Batch) -> Batch | None:
        """``batch`` with ``more``'s records; None (both rewound) if a rebalance came between."""
        if more.epoch != batch.epoch:
            self._tracker.rewind(batch.messages + more.messages)
            return None
        batch.messages.extend(more.messages)
        batch.poll_s += more.poll_s
        return batch

    def rebalanced_since(self, batch: Batch) -> bool:
        """True when the group rebalanced after the batch was polled (by a prefetch,
        or while it was prefetched). Its partitions may have moved, or (after a lost
        membership) been reset to their committed offsets."""
        return self.epoch != batch.epoch

    def after_idle_poll(self) -> None:
        """An empty poll: checks for recreated partitions, updates the lag."""
        resets = self._tracker.detect_resets()
        if resets:
            self._ends = {}  # a recreated partition starts its offsets again
        self._stats.partition_resets += resets
        self._stats.lag = lag(self._consumer)

    # ----------------------------------------------------- rebalance listener
    def on_partitions_revoked(self, revoked: Any) -> None:
        # Nothing is ever sent and uncommitted here: a step settles its batch in
        # flight before it polls. A batch being embedded is checked by its epoch.
        self.epoch += 1
        self._revoked_at = self._clock()
        self._log.info(
            "partitions_revoked", partitions=sorted(f"{t.topic}:{t.partition}" for t in revoked)
        )

    def on_partitions_lost(self, lost: Any) -> None:
        """Membership was lost (session expired, broker gone): nothing refused is kept."""
        self._ends = {}
        self._tracker.forget()
        self.epoch += 1
        self._revoked_at = self._clock()
        self._log.warning(
            "partitions_lost", partitions=sorted(f"{t.topic}:{t.partition}" for t in lost)
        )

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._ends = {}
        self.epoch += 1
        if self._revoked_at is not None:  # revoke -> assign: the time this worker was idle
            self._stats.last_rebalance_s = self._clock() - self._revoked_at
            self._revoked_at = None
        self._tracker.keep_refused(assigned)
        self._stats.rebalances += 1
        self._stats.assigned = sorted(f"{t.topic}:{t.partition}" for t in assigned)
        self._log.info("partitions_assigned", partitions=self._stats.assigned)
