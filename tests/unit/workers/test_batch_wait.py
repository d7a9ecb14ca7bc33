"""A small batch waits to fill (``worker.batch_wait_ms``), on a fake consumer.

* a poll that returns fewer records than the poll size polls again, with what is
  left of the bound as its timeout, until the batch is full, a poll comes back
  empty (kafka-python's poll returns empty only when its timeout ran out) or the
  bound is spent;
* the bound counts from the oldest record's Kafka timestamp: records that
  already waited that long go at once;
* a rebalance while the batch waits rewinds both polls' records (they are read
  again) and drops the batch;
* 0 turns the wait off; a full first poll never waits.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from kafka.structs import TopicPartition

from streamlabel.kafka.offsets import OffsetTracker
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import ManualClock
from streamlabel.testing.kafka import FakeConsumer, consumed
from streamlabel.workers.polling import Batch, Poller
from streamlabel.workers.stats import WorkerStats

ITEMS = "t.items"
P0, P1 = TopicPartition(ITEMS, 0), TopicPartition(ITEMS, 1)


def rec(partition: int, offset: int, age_ms: float | None = None) -> Any:
    """A record of ``items``, produced ``age_ms`` ago (None: without a timestamp)."""
    stamp = -1 if age_ms is None else int(time.time() * 1e3 - age_ms)
    return consumed(ITEMS, partition, offset, b"{}", timestamp=stamp)


def poller(consumer: FakeConsumer, clock: ManualClock | None = None, **worker: Any) -> Poller:
    settings = load_runtime_settings(
        None, kafka={"topic_prefix": "t."}, worker={"batch_size": 8, **worker},
        logging={"level": "warning"}, metrics={"enabled": False},
    )  # fmt: skip
    clock = clock or ManualClock(1_000.0)
    tracker = OffsetTracker(consumer, max_poll_interval_s=300.0, clock=clock)
    p = Poller(consumer, tracker, settings, WorkerStats("w"), sizer=None, clock=clock,
               log=structlog.get_logger())  # fmt: skip
    consumer.subscribe([ITEMS], listener=p)
    return p


def offsets(batch: Batch | None) -> list[tuple[int, int]]:
    assert batch is not None
    return [(m.partition, m.offset) for m in batch.messages]


def test_a_small_batch_polls_again_for_the_rest_of_the_bound() -> None:
    consumer = FakeConsumer({P0, P1}, polls=[{P0: [rec(0, 0)]}, {P1: [rec(1, 0), rec(1, 1)]}])
    batch = poller(consumer, batch_wait_ms=50).poll_filled()
    assert offsets(batch) == [(0, 0), (1, 0), (1, 1)]
    # the first poll is the worker's blocking poll; the next ask for what is left
    assert consumer.asked == [8, 7, 5]
    assert consumer.timeouts[1:] == [50, 50]  # the clock stood still: all of the bound
    assert consumer.polls == []  # the third poll came back empty: the wait ended


def test_the_bound_counts_from_the_oldest_records_timestamp() -> None:
    consumer = FakeConsumer({P0}, polls=[{P0: [rec(0, 0, age_ms=30), rec(0, 1, age_ms=5)]}])
    poller(consumer, batch_wait_ms=50).poll_filled()
    assert len(consumer.timeouts) == 2
    assert 15 <= consumer.timeouts[1] <= 20  # 50 ms less the 30 the first one waited


def test_records_that_already_waited_the_bound_go_at_once() -> None:
    consumer = FakeConsumer({P0}, polls=[{P0: [rec(0, 0, age_ms=400)]}, {P0: [rec(0, 1)]}])
    batch = poller(consumer, batch_wait_ms=50).poll_filled()
    assert offsets(batch) == [(0, 0)]
    assert len(consumer.asked) == 1  # no second poll: (0, 1) waits for the next batch


def test_the_wait_ends_when_the_bound_is_spent() -> None:
    clock = ManualClock(1_000.0)

    class SlowConsumer(FakeConsumer):
        def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
            clock.advance(0.03)  # each poll returns after 30 ms
            return super().poll(timeout_ms, max_records)

    polls = [{P0: [rec(0, i)]} for i in range(6)]
    consumer = SlowConsumer({P0}, polls=polls)
    batch = poller(consumer, clock, batch_wait_ms=50).poll_filled()
    assert offsets(batch) == [(0, 0), (0, 1), (0, 2)]  # polled at 0, 30 and 60 ms
    assert consumer.timeouts[1:] == [50, 20]


def test_a_full_poll_and_a_bound_of_zero_never_wait() -> None:
    full = FakeConsumer({P0}, polls=[{P0: [rec(0, i) for i in range(8)]}, {P0: [rec(0, 8)]}])
    assert len(offsets(poller(full, batch_wait_ms=50).poll_filled())) == 8
    off = FakeConsumer({P0}, polls=[{P0: [rec(0, 0)]}, {P0: [rec(0, 1)]}])
    assert offsets(poller(off, batch_wait_ms=0).poll_filled()) == [(0, 0)]
    assert (len(full.asked), len(off.asked)) == (1, 1)


def test_a_rebalance_while_the_batch_waits_rewinds_both_polls() -> None:
    class RebalancingConsumer(FakeConsumer):
        def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
            if len(self.asked) == 1:  # the wait's poll: P1 goes to another worker
                self.rebalance(revoked={P0, P1}, assigned={P0})
            return super().poll(timeout_ms, max_records)

    consumer = RebalancingConsumer(
        {P0, P1}, polls=[{P0: [rec(0, 4)], P1: [rec(1, 9)]}, {P0: [rec(0, 5)]}],
        positions={P0: 6, P1: 10},
    )  # fmt: skip
    assert poller(consumer, batch_wait_ms=50).poll_filled() is None
    assert consumer.seeks == {P0: 4}  # the partition still owned is read again
