"""The stream worker's recovery logic on fake Kafka clients (no broker, no Ray).

* a batch that outlived ``kafka.max_poll_interval_ms`` is fenced: dropped, and the
  partitions this worker still owns are rewound to the batch's first offsets;
* an empty poll checks for partitions recreated under the worker; a requested
  broker reset re-reads the changelog and resumes each partition at its commit;
* a commit refused by a rebalance: the partition given back skips what was delivered;
* the pipelined step: the model embeds a batch while the batch before is settled
  (delivered, committed) and the next is prefetched; a rebalance during the
  prefetch drops the batch and rewinds; a failed send is delivered again before
  the commit; a stopped loop settles its batch in flight.

The worker is built with the fakes of ``streamlabel.testing.kafka`` as its
consumer, publisher and changelog, and a settable clock where a step has to
take "too long"; ``ready()`` wires them in (the offset bookkeeping itself is
tested in ``tests/unit/kafka/test_offsets.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.structs import TopicPartition

from streamlabel.kafka.topics import Topics
from streamlabel.schemas import Item, encode
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import HashEmbedder, ManualClock
from streamlabel.testing.kafka import FakeChangelog, FakeConsumer, FakePublisher, consumed
from streamlabel.workers.polling import END_OFFSETS_EVERY_S
from streamlabel.workers.stream_worker import StreamWorker

ITEMS = "t.items"
P0, P1, P2, P3 = (TopicPartition(ITEMS, p) for p in range(4))
LIMIT_MS = 2000
TOPICS = Topics("t.")


def msg(partition: int, offset: int, text: str = "python list dict") -> Any:
    """A consumed record of ``items``."""
    item_id = f"i-{partition}-{offset}"
    return consumed(ITEMS, partition, offset, encode(Item(id=item_id, text=text)), item_id.encode())


class Rig:
    """A worker over fakes; :meth:`start` makes it ready (model, changelog, consumer)."""

    def __init__(
        self,
        consumer: FakeConsumer,
        publisher: FakePublisher | None = None,
        embedder: HashEmbedder | None = None,
        *,
        clock: ManualClock | None = None,
        **worker: Any,
    ) -> None:
        settings = load_runtime_settings(
            None,
            kafka={"topic_prefix": "t.", "max_poll_interval_ms": LIMIT_MS},
            worker={"batch_size": 16, "overlap": True, "batch_wait_ms": 0, **worker},
            logging={"level": "warning"},
            metrics={"enabled": False},
        )
        self.consumer = consumer
        self.publisher = publisher or FakePublisher(TOPICS)
        self.changelog = FakeChangelog()
        self.clock = clock or ManualClock(10_000.0)
        self.worker = StreamWorker(
            settings,
            "worker-t",
            embedder=embedder or HashEmbedder(dim=32),
            consumer=consumer,
            publisher=self.publisher,
            changelog=self.changelog,
            clock=self.clock,
        )

    def start(self) -> StreamWorker:
        assert self.worker.ready()
        assert self.consumer.subscribed == [ITEMS]
        return self.worker


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    """Rigs whose workers are closed (embed thread shut down) when the test ends."""
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.worker.close()


@pytest.fixture
def rig(rigs: list[Rig]) -> Any:
    def make(*args: Any, **kwargs: Any) -> Rig:
        r = Rig(*args, **kwargs)
        rigs.append(r)
        return r

    return make


class SlowEmbedder(HashEmbedder):
    """A model that takes ``delay_s`` of the fake clock per batch (a stall)."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(dim=32)
        self.clock = clock
        self.delay_s = 0.0

    def embed(self, texts: Any) -> Any:
        self.clock.advance(self.delay_s)
        return super().embed(texts)


def batch_poll() -> dict[TopicPartition, list[Any]]:
    return {P0: [msg(0, 20), msg(0, 21), msg(0, 22)], P1: [msg(1, 5, "sql join table")]}


def second_poll() -> dict[TopicPartition, list[Any]]:
    return {P0: [msg(0, 23), msg(0, 24)], P1: [msg(1, 6, "sql join table")]}


# ------------------------------------------------------------ whole steps
def test_a_step_in_time_publishes_then_commits_the_next_offsets(rig: Any) -> None:
    consumer = FakeConsumer(
        {P0, P1}, highwater={P0: 23, P1: 6}, positions={P0: 23, P1: 6}, polls=[batch_poll()]
    )
    r = rig(consumer)
    worker = r.start()
    assert worker.step() == 4
    assert len(r.publisher.sent) == 1
    assert len(r.publisher.labels()) == 4
    assert consumer.commits == []  # sent; the next step settles it
    assert worker.stats()["items"] == 0
    assert worker.step() == 0
    assert r.publisher.events == ["send", "flush"]
    assert consumer.commit_history() == [{P0: 23, P1: 6}]
    stats = worker.stats()
    assert (stats["items"], stats["commits"], stats["fenced_batches"]) == (4, 1, 0)


def test_a_batch_stalled_past_the_limit_is_dropped_before_publishing(rig: Any) -> None:
    clock = ManualClock(10_000.0)
    embedder = SlowEmbedder(clock)
    consumer = FakeConsumer({P0, P1}, polls=[batch_poll()])
    r = rig(consumer, embedder=embedder, clock=clock)
    worker = r.start()
    embedder.delay_s = LIMIT_MS / 1e3 + 1  # the model hangs longer than max_poll_interval
    assert worker.step() == 0
    assert r.publisher.sent == []
    assert consumer.commits == []
    assert consumer.seeks == {P0: 20, P1: 5}
    stats = worker.stats()
    assert (stats["fenced_batches"], stats["items"], stats["commits"]) == (1, 0, 0)


def test_a_batch_fenced_during_its_flush_is_delivered_but_not_committed(rig: Any) -> None:
    clock = ManualClock(10_000.0)

    def slow_flush() -> None:
        clock.advance(LIMIT_MS / 1e3 + 1)

    consumer = FakeConsumer({P0, P1}, polls=[batch_poll()])
    publisher = FakePublisher(TOPICS, on_flush=slow_flush)
    r = rig(consumer, publisher, SlowEmbedder(clock), clock=clock)
    worker = r.start()
    assert worker.step() == 4  # sent
    consumer.assigned = {P1}  # P0 was revoked meanwhile
    assert worker.step() == 0  # its settling flush outlives the limit
    assert len(publisher.sent) == 1
    assert publisher.flushes == 1
    assert consumer.commits == []  # the new owner labels it again: a bounded duplicate
    assert consumer.seeks == {P1: 5}
    assert worker.stats()["fenced_batches"] == 1


def test_an_empty_poll_checks_for_recreated_partitions(rig: Any) -> None:
    consumer = FakeConsumer({P0, P1}, highwater={P0: 0, P1: 9}, positions={P0: 64, P1: 9})
    worker = rig(consumer).start()
    assert worker.step() == 0
    assert consumer.rewound == [P0]
    assert worker.stats()["partition_resets"] == 1


def test_a_requested_broker_reset_is_applied_once_at_the_next_step(rig: Any) -> None:
    consumer = FakeConsumer(
        {P0}, highwater={P0: 3}, committed={P0: 90}, positions={P0: 0}, polls=[{}, {}]
    )
    r = rig(consumer)
    worker = r.start()
    worker.broker_reset()
    assert worker.stats()["broker_resets"] == 0  # only requested: the loop's thread applies it
    worker.step()
    worker.step()
    assert consumer.rewound == [P0]  # the commit at 90 is gone (the log ends at 3)
    assert r.changelog.resets == 1
    assert worker.stats()["broker_resets"] == 1


def test_a_partition_given_back_after_a_refused_commit_skips_what_was_delivered(
    rig: Any,
) -> None:
    class GivingBack(FakeConsumer):
        """The second poll runs a rebalance that gives P0 back (P1 goes elsewhere)."""

        def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
            if len(self.asked) == 1:
                self.rebalance(revoked={P0, P1}, assigned={P0, P2})
            return super().poll(timeout_ms, max_records)

    delivered = {P0: [msg(0, 10), msg(0, 11)], P1: [msg(1, 20)]}
    # the next poll starts again at the last commit (10): 10 and 11 are not labelled again
    again = {P0: [msg(0, 10), msg(0, 11), msg(0, 12)], P2: [msg(2, 5)]}
    consumer = GivingBack(
        {P0, P1}, committed={P0: 10, P1: 20}, polls=[delivered, again], refuse_commits=1
    )
    r = rig(consumer, overlap=False)
    worker = r.start()
    assert worker.step() == 3  # delivered, commit refused
    assert worker.stats()["commit_failures"] == 1
    assert worker.step() == 2
    assert [x.item_id for x in r.publisher.labels()][3:] == ["i-0-12", "i-2-5"]
    assert consumer.commit_history() == [{P0: 12}, {P0: 13, TopicPartition(ITEMS, 2): 6}]
    stats = worker.stats()
    assert (stats["recommits"], stats["rebalances"]) == (1, 1)


# --------------------------------------------------------------- pipelining
def test_the_batch_before_is_committed_while_the_model_embeds_the_next(rig: Any) -> None:
    committed = threading.Event()

    class CommitSignallingConsumer(FakeConsumer):
        def commit(self, offsets: Any) -> None:
            super().commit(offsets)
            committed.set()

    class WaitingEmbedder(HashEmbedder):
        """Its second batch finishes only once the first was committed: without the
        overlap the step would wait for it and the commit would come after."""

        def __init__(self) -> None:
            super().__init__(dim=32)
            self.batches = 0
            self.saw_commit_while_embedding: bool | None = None

        def embed(self, texts: Any) -> Any:
            self.batches += 1
            if self.batches == 2:
                self.saw_commit_while_embedding = committed.wait(timeout=5)
            return super().embed(texts)

    consumer = CommitSignallingConsumer({P0, P1}, polls=[batch_poll(), second_poll()])
    embedder = WaitingEmbedder()
    r = rig(consumer, embedder=embedder)
    worker = r.start()  # overlap: the model runs on the worker's embed thread
    assert worker.step() == 4
    assert worker.step() == 3
    assert embedder.saw_commit_while_embedding is True
    assert consumer.commit_history() == [{P0: 23, P1: 6}]
    assert r.publisher.events == ["send", "flush", "send"]


def test_the_next_batch_is_prefetched_while_the_model_runs(rig: Any) -> None:
    consumer = FakeConsumer({P0, P1}, polls=[batch_poll(), second_poll()])
    r = rig(consumer)
    worker = r.start()
    assert worker.step() == 4  # polls the first batch, prefetches the second
    assert consumer.polls == []
    assert worker.step() == 3  # the prefetched batch: settles the first on the way
    assert consumer.commit_history() == [{P0: 23, P1: 6}]
    assert worker.step() == 0
    assert consumer.commit_history() == [{P0: 23, P1: 6}, {P0: 25, P1: 7}]
    labelled = [x.item_id for x in r.publisher.labels()]
    assert labelled == ["i-0-20", "i-0-21", "i-0-22", "i-1-5", "i-0-23", "i-0-24", "i-1-6"]


def test_without_overlap_a_step_commits_its_own_batch(rig: Any) -> None:
    consumer = FakeConsumer({P0, P1}, polls=[batch_poll(), second_poll()])
    worker = rig(consumer, overlap=False).start()
    assert worker.overlap is False
    assert worker.step() == 4
    assert consumer.commit_history() == [{P0: 23, P1: 6}]
    assert len(consumer.polls) == 1  # nothing prefetched
    assert worker.step() == 3
    assert consumer.commit_history() == [{P0: 23, P1: 6}, {P0: 25, P1: 7}]


def test_a_rebalance_in_the_prefetch_drops_the_batch_and_reads_it_again(rig: Any) -> None:
    class RebalancingConsumer(FakeConsumer):
        """The second poll runs a rebalance that takes P1 away, then returns records."""

        rebalanced = False

        def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
            if len(self.polls) == 1 and not self.rebalanced:
                self.rebalanced = True
                self.rebalance(revoked={P0, P1}, assigned={P0})
                return {P0: [msg(0, 23), msg(0, 24)]}
            return super().poll(timeout_ms, max_records)

    consumer = RebalancingConsumer({P0, P1}, polls=[batch_poll(), {}])
    r = rig(consumer)
    worker = r.start()
    assert worker.step() == 0
    assert r.publisher.sent == []  # P1 is another worker's now: nothing sent
    assert consumer.seeks == {P0: 20}  # the owned partition is read again from the batch
    assert consumer.commits == []
    stats = worker.stats()
    assert (stats["rebalanced_batches"], stats["fenced_batches"]) == (1, 0)
    # read again from the rewound position (the prefetch was dropped too): first
    # labels (revision 0), as if never seen
    consumer.polls = [{P0: [msg(0, 20), msg(0, 21), msg(0, 22)]}]
    assert worker.step() == 3
    assert [(x.item_id, x.revision) for x in r.publisher.labels()] == [
        ("i-0-20", 0),
        ("i-0-21", 0),
        ("i-0-22", 0),
    ]


def test_the_join_inside_the_poll_that_returns_a_batch_does_not_drop_it(rig: Any) -> None:
    """The first poll joins the group, then fetches: its records are the new assignment's."""

    class JoiningConsumer(FakeConsumer):
        def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
            if not self.asked:
                self.rebalance(assigned={P0, P1})
            return super().poll(timeout_ms, max_records)

    consumer = JoiningConsumer({P0, P1}, polls=[batch_poll()])
    worker = rig(consumer).start()
    assert worker.step() == 4
    assert worker.step() == 0
    assert consumer.commit_history() == [{P0: 23, P1: 6}]
    stats = worker.stats()
    assert (stats["rebalances"], stats["rebalanced_batches"]) == (1, 0)


def test_a_failed_send_is_delivered_again_before_the_commit(rig: Any) -> None:
    consumer = FakeConsumer({P0, P1}, polls=[batch_poll()])
    r = rig(consumer, FakePublisher(TOPICS, failing_sends=1))
    worker = r.start()
    assert worker.step() == 4
    assert r.publisher.sent == []
    assert worker.step() == 0
    assert r.publisher.events == ["deliver"]  # re-sent with retries, then committed
    assert consumer.commit_history() == [{P0: 23, P1: 6}]
    assert worker.stats()["publish_retries"] == 1


def test_a_stopped_loop_settles_the_batch_in_flight_before_it_returns(rig: Any) -> None:
    class StoppingConsumer(FakeConsumer):
        """Stops the worker once its polls are spent (inside the second step)."""

        def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
            if not self.polls:
                r.worker.stop()
            return super().poll(timeout_ms, max_records)

    consumer = StoppingConsumer({P0, P1}, polls=[batch_poll(), second_poll()])
    r = rig(consumer)
    stats = r.worker.run()
    assert consumer.commit_history() == [{P0: 23, P1: 6}, {P0: 25, P1: 7}]
    assert (stats["items"], stats["commits"]) == (7, 2)
    assert consumer.closed
    assert (r.changelog.closed, r.publisher.closed) == (1, 1)


def test_with_a_latency_target_the_worker_polls_fewer_records_after_a_slow_batch(
    rig: Any,
) -> None:
    class SleepyEmbedder(HashEmbedder):
        def embed(self, texts: Any) -> Any:
            time.sleep(0.01 * len(texts))  # 10 ms per item: 5 items fit in 50 ms
            return super().embed(texts)

    consumer = FakeConsumer({P0, P1}, polls=[batch_poll(), {}])
    r = rig(
        consumer, embedder=SleepyEmbedder(dim=32),
        batch_size=256, batch_target_ms=50, min_batch_size=2,
    )  # fmt: skip
    w = r.start()
    assert w.stats()["batch_size"] == 256
    assert w.step() == 4
    assert w.step() == 0
    assert consumer.asked[0] == 256
    assert 2 <= consumer.asked[-1] <= 128  # the poll after the slow batch asks for less
    assert w.stats()["batch_size"] == consumer.asked[-1]


def test_with_a_backlog_waiting_the_worker_polls_full_batches_despite_the_latency_target(
    rig: Any,
) -> None:
    """Latency-bounded polls while the stream keeps up; ``worker.batch_size`` while more
    than BACKLOG_BATCHES of them wait (the bound is lost to the queue, full batches embed
    faster); back to the bound once the backlog is gone."""

    class SleepyEmbedder(HashEmbedder):
        def embed(self, texts: Any) -> Any:
            time.sleep(0.01 * len(texts))  # 10 ms per item: 5 items fit in 50 ms
            return super().embed(texts)

    consumer = FakeConsumer(
        {P0, P1}, polls=[batch_poll(), batch_poll(), {}],
        highwater={P0: 10, P1: 10}, positions={P0: 10, P1: 10},
    )  # fmt: skip
    r = rig(
        consumer, embedder=SleepyEmbedder(dim=32),
        batch_size=256, batch_target_ms=50, min_batch_size=2,
    )  # fmt: skip
    w = r.start()
    w.step()  # the first poll asks for worker.batch_size; its cost sets the bound
    w.step()  # no backlog: the next poll keeps to the bound
    assert 2 <= consumer.asked[-1] <= 128
    consumer.high = {P0: 5_000, P1: 5_000}  # thousands behind
    w.step()
    assert consumer.asked[-1] == 256
    consumer.high = {P0: 10, P1: 10}
    w.step()
    assert consumer.asked[-1] < 256


def test_a_backlog_behind_a_stale_high_watermark_is_seen_through_the_end_offsets(
    rig: Any,
) -> None:
    """kafka-python fetches no partition while a cut-short poll leaves records
    buffered, so a partition's high watermark can be far behind the broker. While
    records flow and the watermarks show no backlog, the worker asks the broker's end
    offsets, at most once a second; an idle worker asks nothing."""

    class SleepyEmbedder(HashEmbedder):
        def embed(self, texts: Any) -> Any:
            time.sleep(0.01 * len(texts))  # 10 ms per item: 5 items fit in 50 ms
            return super().embed(texts)

    class FullPolls(FakeConsumer):
        """Every poll returns as many records as asked for (a backlog), from P1."""

        def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
            self.asked.append(max_records)
            if self.idle:
                return {}
            start = self.positions[P1]
            n = self.short or max_records or 1
            self.positions[P1] = start + n
            return {P1: [msg(1, start + k) for k in range(n)]}

    consumer = FullPolls({P0, P1}, highwater={P0: 10, P1: 10}, positions={P0: 10, P1: 0})
    consumer.short = 0  # type: ignore[attr-defined]
    consumer.idle = False  # type: ignore[attr-defined]
    r = rig(
        consumer, embedder=SleepyEmbedder(dim=32),
        batch_size=64, batch_target_ms=50, min_batch_size=2,
    )  # fmt: skip
    consumer.ends = {P0: 10, P1: 5_000}  # the broker holds thousands; the mark says 10
    w = r.start()
    for _ in range(4):
        w.step()
    assert consumer.asked[0] == 64  # the first poll: worker.batch_size; its cost sets the bound
    assert set(consumer.asked[1:]) == {64}  # the end offsets showed the backlog
    assert consumer.end_offset_asks >= 1
    assert consumer.end_offset_asks == 1  # once a second at most (the clock stood still)
    consumer.positions[P1] = consumer.high[P1] = 5_000  # the backlog is read
    consumer.short = 1  # type: ignore[attr-defined]  # a trickle now
    r.clock.advance(END_OFFSETS_EVERY_S)
    for _ in range(4):
        w.step()
    assert consumer.asked[-1] < 64  # no backlog: back to the bound
    assert consumer.end_offset_asks == 2
    consumer.idle = True  # type: ignore[attr-defined]
    for _ in range(2):  # the first idle poll still follows one that returned records
        r.clock.advance(5 * END_OFFSETS_EVERY_S)
        w.step()
    asks = consumer.end_offset_asks
    for _ in range(3):
        r.clock.advance(5 * END_OFFSETS_EVERY_S)
        w.step()
    assert consumer.end_offset_asks == asks  # an idle worker asks nothing


def test_overlap_is_off_unless_asked_for() -> None:
    def overlap(**worker: Any) -> bool:
        settings = load_runtime_settings(
            None, kafka={"topic_prefix": "t."}, logging={"level": "warning"}, worker=worker
        )
        return StreamWorker(settings, "worker-o").overlap

    assert overlap() is False
    assert overlap(overlap=True) is True


def test_a_worker_does_not_connect_until_it_is_made_ready() -> None:
    """No network in the constructor: the consumer, publisher and changelog are built
    (or the given ones used) by ``ready``."""
    consumer = FakeConsumer({P0})
    r = Rig(consumer)
    assert consumer.subscribed == []
    assert consumer.asked == []
    r.start()
    r.worker.close()
    assert consumer.closed
