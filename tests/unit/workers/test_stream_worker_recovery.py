"""The stream worker's recovery logic on a fake consumer (no broker, no Ray).

* a batch that outlived ``kafka.max_poll_interval_ms`` is fenced: dropped, and the
  partitions this worker still owns are rewound to the batch's first offsets;
* a partition whose position is past its high watermark was recreated: back to its start;
* after a broker reset each partition resumes at its commit where that still exists;
* the pipelined step: the model embeds a batch while the batch before is settled
  (delivered, committed) and the next is prefetched; a rebalance during the
  prefetch drops the batch and rewinds; a failed send is delivered again before
  the commit; a stopped loop settles its batch in flight.

``StreamWorker(settings, id)`` does not connect; the tests put fakes in its
``_consumer``/``_tail``/``_publisher`` slots, and a fake clock in place of
``time.monotonic`` where a step has to take "too long".
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
import structlog

from streamlabel.errors import PublishError
from streamlabel.pipeline import Engine, load_settings
from streamlabel.schemas import Item, encode
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import HashEmbedder, ManualClock
from streamlabel.workers import stream_worker
from streamlabel.workers.stream_worker import StreamWorker

with warnings.catch_warnings():  # kafka-python loads its protocol files with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.structs import OffsetAndMetadata, TopicPartition

ITEMS = "t.items"
P0, P1, P2, P3 = (TopicPartition(ITEMS, p) for p in range(4))
LIMIT_MS = 2000


class FakeConsumer:
    """The parts of a KafkaConsumer the worker uses; records seeks and commits."""

    def __init__(
        self,
        assigned: set[TopicPartition],
        *,
        highwater: dict[TopicPartition, int] | None = None,
        positions: dict[TopicPartition, int] | None = None,
        committed: dict[TopicPartition, int] | None = None,
        polls: list[dict[TopicPartition, list[Any]]] | None = None,
    ) -> None:
        self.assigned = set(assigned)
        self.high = dict(highwater or {})
        self.positions = dict(positions or {})
        self.committed_offsets = dict(committed or {})
        self.polls = list(polls or [])
        self.seeks: dict[TopicPartition, int] = {}
        self.rewound: list[TopicPartition] = []
        self.commits: list[dict[TopicPartition, OffsetAndMetadata]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.high.get(tp)

    def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]  # KeyError: the worker asked about a partition it should not

    def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offsets.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        assert tp in self.assigned, f"seek on unassigned {tp}"
        self.seeks[tp] = offset
        self.positions[tp] = offset

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            assert tp in self.assigned, f"seek_to_beginning on unassigned {tp}"
            self.rewound.append(tp)
            self.positions[tp] = 0

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        return self.polls.pop(0) if self.polls else {}

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.commits.append(offsets)


class FakeTail:
    """The class changelog replica: no new events; counts resets."""

    def __init__(self) -> None:
        self.resets = 0

    def poll(self, timeout_ms: int = 0) -> list[Any]:
        return []

    def reset(self) -> None:
        self.resets += 1


class FakePublisher:
    """Records what was sent and flushed; ``on_flush`` runs inside the flush."""

    def __init__(self, on_flush: Any = None, *, failing_sends: int = 0) -> None:
        self.published: list[Any] = []
        self.flushes = 0
        self.redelivered = 0
        self.events: list[str] = []
        self._on_flush = on_flush
        self._failing_sends = failing_sends

    def records(self, out: Any) -> list[Any]:
        return [out]  # the whole output stands for its records

    def send_all(self, records: list[Any]) -> int:
        if self._failing_sends:
            self._failing_sends -= 1
            raise PublishError("cannot send: the broker is away")
        self.published.extend(records)
        self.events.append("send")
        return len(records)

    def flush(self) -> int:
        self.flushes += 1
        self.events.append("flush")
        if self._on_flush is not None:
            self._on_flush()
        return 1

    def deliver(
        self, records: list[Any], *, retry_s: float, on_failure: Any, after_first_send: Any = None
    ) -> None:
        self.published.extend(records)
        self.redelivered += 1
        self.events.append("deliver")
        if after_first_send is not None:
            after_first_send()
        self.flushes += 1
        if self._on_flush is not None:
            self._on_flush()


def msg(partition: int, offset: int, text: str = "python list dict") -> SimpleNamespace:
    """A consumed record of ``items``."""
    item_id = f"i-{partition}-{offset}"
    return SimpleNamespace(
        topic=ITEMS,
        partition=partition,
        offset=offset,
        key=item_id.encode(),
        value=encode(Item(id=item_id, text=text)),
        headers=[],
    )


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch):
    """No STREAMLABEL_* variable leaks in; the worker's logging setup does not leak out."""
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def worker() -> StreamWorker:
    settings = load_runtime_settings(
        None,
        kafka={"topic_prefix": "t.", "max_poll_interval_ms": LIMIT_MS},
        runtime={"batch_size": 16, "log_level": "warning", "overlap": True},
    )
    w = StreamWorker(settings, "worker-t")
    w._tail = FakeTail()  # type: ignore[assignment]
    return w


# ------------------------------------------------------------------ fenced
def test_a_batch_is_fenced_only_once_it_outlived_max_poll_interval(worker: StreamWorker) -> None:
    def polled(ago_s: float) -> Any:
        return stream_worker._Batch([], time.monotonic() - ago_s, epoch=0, poll_s=0.0)

    assert not worker._fenced(polled(0))
    assert not worker._fenced(polled(LIMIT_MS / 1e3 / 2))
    assert worker._fenced(polled(LIMIT_MS / 1e3 + 0.5))
    assert worker._fenced(polled(3600))


def test_drop_rewinds_each_owned_partition_to_the_batchs_first_offset(
    worker: StreamWorker,
) -> None:
    consumer = FakeConsumer({P0, P1, P3}, positions={P0: 108, P1: 15, P3: 7})
    worker._consumer = consumer  # type: ignore[assignment]
    batch = [msg(0, 100), msg(1, 12), msg(0, 101), msg(1, 13), msg(0, 107), msg(1, 14)]
    worker._drop(batch, "before_publish")
    assert consumer.seeks == {P0: 100, P1: 12}
    assert consumer.positions[P3] == 7  # not in the batch: untouched
    assert consumer.rewound == []
    assert worker.stats()["fenced_batches"] == 1


def test_drop_skips_partitions_no_longer_assigned(worker: StreamWorker) -> None:
    consumer = FakeConsumer({P1})  # P0 and P2 went to another worker in the rebalance
    worker._consumer = consumer  # type: ignore[assignment]
    worker._drop([msg(0, 40), msg(0, 41), msg(1, 9), msg(2, 500)], "before_commit")
    assert consumer.seeks == {P1: 9}
    worker._drop([msg(0, 42)], "before_commit")  # nothing of it is owned: only counted
    assert consumer.seeks == {P1: 9}
    assert worker.stats()["fenced_batches"] == 2


# ------------------------------------------------------------------ resets
def test_a_position_past_the_high_watermark_rewinds_that_partition_only(
    worker: StreamWorker,
) -> None:
    consumer = FakeConsumer(
        {P0, P1, P2, P3},
        highwater={P0: 10, P1: 250, P3: 0},  # P2: no watermark known yet
        positions={P0: 240, P1: 250, P3: 31},  # P0, P3 recreated; P1 caught up
    )
    worker._consumer = consumer  # type: ignore[assignment]
    worker._detect_resets()
    assert sorted(consumer.rewound) == [P0, P3]
    assert consumer.seeks == {}
    assert worker.stats()["partition_resets"] == 2


def test_no_reset_while_every_position_is_within_its_watermark(worker: StreamWorker) -> None:
    consumer = FakeConsumer({P0, P1}, highwater={P0: 10, P1: 250}, positions={P0: 3, P1: 250})
    worker._consumer = consumer  # type: ignore[assignment]
    worker._detect_resets()
    assert consumer.rewound == []
    assert worker.stats()["partition_resets"] == 0


def test_after_a_broker_reset_partitions_resume_at_a_commit_that_still_exists(
    worker: StreamWorker,
) -> None:
    consumer = FakeConsumer(
        {P0, P1, P2, P3},
        highwater={P0: 80, P1: 10, P2: 5},  # P3: watermark unknown
        committed={P0: 50, P1: 120, P3: 7},  # P1's commit is past the new log; P2 has none
        positions={P0: 80, P1: 10, P2: 5, P3: 7},
    )
    worker._consumer = consumer  # type: ignore[assignment]
    tail = worker._tail
    worker._after_broker_reset()
    assert consumer.seeks == {P0: 50, P3: 7}
    assert sorted(consumer.rewound) == [P1, P2]
    assert tail.resets == 1  # type: ignore[union-attr]
    assert worker.stats()["broker_resets"] == 1


def test_a_commit_equal_to_the_high_watermark_is_kept(worker: StreamWorker) -> None:
    consumer = FakeConsumer({P0}, highwater={P0: 80}, committed={P0: 80})
    worker._consumer = consumer  # type: ignore[assignment]
    worker._after_broker_reset()
    assert consumer.seeks == {P0: 80}
    assert consumer.rewound == []


# ------------------------------------------------------------ whole steps
class FakeTime:
    """``time`` for the worker's module: a settable monotonic clock, real everything else."""

    def __init__(self) -> None:
        self.now = 10_000.0
        self.perf_counter = time.perf_counter
        self.time = time.time
        self.sleep = time.sleep

    def monotonic(self) -> float:
        return self.now


class SlowEmbedder(HashEmbedder):
    """A model that takes ``delay_s`` of the fake clock per batch (a stall)."""

    def __init__(self, clock: FakeTime) -> None:
        super().__init__(dim=32)
        self.clock = clock
        self.delay_s = 0.0

    def embed(self, texts: Any) -> Any:
        self.clock.now += self.delay_s
        return super().embed(texts)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    clock = FakeTime()
    monkeypatch.setattr(stream_worker, "time", clock)
    return clock


def ready(
    worker: StreamWorker, consumer: FakeConsumer, embedder: HashEmbedder, publisher: FakePublisher
) -> None:
    """Wires the fakes in where ``_open`` would have connected."""
    worker._engine = Engine(
        load_settings(drift={"enabled": False}), embedder, clock=ManualClock(1_000.0)
    )
    worker._consumer = consumer  # type: ignore[assignment]
    worker._publisher = publisher  # type: ignore[assignment]


def batch_poll() -> dict[TopicPartition, list[Any]]:
    return {P0: [msg(0, 20), msg(0, 21), msg(0, 22)], P1: [msg(1, 5, "sql join table")]}


def test_a_step_in_time_publishes_then_commits_the_next_offsets(
    worker: StreamWorker, fake_time: FakeTime
) -> None:
    consumer = FakeConsumer(
        {P0, P1}, highwater={P0: 23, P1: 6}, positions={P0: 23, P1: 6}, polls=[batch_poll()]
    )
    publisher = FakePublisher()
    ready(worker, consumer, SlowEmbedder(fake_time), publisher)
    assert worker.step() == 4
    assert len(publisher.published) == 1
    assert len(publisher.published[0].labels) == 4
    assert consumer.commits == []  # sent; the next step settles it
    assert worker.stats()["items"] == 0
    assert worker.step() == 0
    assert publisher.events == ["send", "flush"]
    assert [{tp: o.offset for tp, o in c.items()} for c in consumer.commits] == [{P0: 23, P1: 6}]
    stats = worker.stats()
    assert (stats["items"], stats["commits"], stats["fenced_batches"]) == (4, 1, 0)


def test_a_batch_stalled_past_the_limit_is_dropped_before_publishing(
    worker: StreamWorker, fake_time: FakeTime
) -> None:
    embedder = SlowEmbedder(fake_time)
    consumer = FakeConsumer({P0, P1}, polls=[batch_poll()])
    publisher = FakePublisher()
    ready(worker, consumer, embedder, publisher)
    embedder.delay_s = LIMIT_MS / 1e3 + 1  # the model hangs longer than max_poll_interval
    assert worker.step() == 0
    assert publisher.published == []
    assert consumer.commits == []
    assert consumer.seeks == {P0: 20, P1: 5}
    stats = worker.stats()
    assert (stats["fenced_batches"], stats["items"], stats["commits"]) == (1, 0, 0)


def test_a_batch_fenced_during_its_flush_is_delivered_but_not_committed(
    worker: StreamWorker, fake_time: FakeTime
) -> None:
    def slow_flush() -> None:
        fake_time.now += LIMIT_MS / 1e3 + 1

    consumer = FakeConsumer({P0, P1}, polls=[batch_poll()])
    publisher = FakePublisher(on_flush=slow_flush)
    ready(worker, consumer, SlowEmbedder(fake_time), publisher)
    assert worker.step() == 4  # sent
    consumer.assigned = {P1}  # P0 was revoked meanwhile
    assert worker.step() == 0  # its settling flush outlives the limit
    assert len(publisher.published) == 1
    assert publisher.flushes == 1
    assert consumer.commits == []  # the new owner labels it again: a bounded duplicate
    assert consumer.seeks == {P1: 5}
    assert worker.stats()["fenced_batches"] == 1


def test_an_empty_poll_checks_for_recreated_partitions(
    worker: StreamWorker, fake_time: FakeTime
) -> None:
    consumer = FakeConsumer({P0, P1}, highwater={P0: 0, P1: 9}, positions={P0: 64, P1: 9})
    ready(worker, consumer, SlowEmbedder(fake_time), FakePublisher())
    assert worker.step() == 0
    assert consumer.rewound == [P0]
    assert worker.stats()["partition_resets"] == 1


def test_a_requested_broker_reset_is_applied_once_at_the_next_step(
    worker: StreamWorker, fake_time: FakeTime
) -> None:
    consumer = FakeConsumer(
        {P0}, highwater={P0: 3}, committed={P0: 90}, positions={P0: 0}, polls=[{}, {}]
    )
    ready(worker, consumer, SlowEmbedder(fake_time), FakePublisher())
    worker.broker_reset()
    assert worker.stats()["broker_resets"] == 0  # only requested: the loop's thread applies it
    worker.step()
    worker.step()
    assert consumer.rewound == [P0]  # the commit at 90 is gone (the log ends at 3)
    assert worker._tail.resets == 1  # type: ignore[union-attr]
    assert worker.stats()["broker_resets"] == 1


# ------------------------------------------------- refused commits kept for later
class RefusingConsumer(FakeConsumer):
    """Refuses the next commit as a rebalance would."""

    def __init__(self, *args: Any, refuse: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refuse = refuse

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        from kafka.errors import CommitFailedError

        if self.refuse:
            self.refuse -= 1
            raise CommitFailedError("the group is rebalancing")
        super().commit(offsets)


def test_a_partition_given_back_after_a_refused_commit_skips_what_was_delivered(
    worker: StreamWorker,
) -> None:
    consumer = RefusingConsumer({P0, P1}, committed={P0: 10, P1: 20})
    worker._consumer = consumer
    worker._commit([msg(0, 10), msg(0, 11), msg(1, 20)])  # delivered, commit refused
    assert worker.stats()["commit_failures"] == 1
    assert consumer.commits == []
    consumer.assigned = {P0, P2}  # the rebalance gives P0 back, P1 went elsewhere
    worker._on_assigned([P0, P2])
    # the next poll starts again at the last commit (10): 10 and 11 are not labelled again
    polled = [msg(0, 10), msg(0, 11), msg(0, 12), msg(2, 5)]
    kept = worker._apply_kept(polled)
    assert [(m.partition, m.offset) for m in kept] == [(0, 12), (2, 5)]
    assert [{tp: o.offset for tp, o in c.items()} for c in consumer.commits] == [{P0: 12}]
    assert worker.stats()["recommits"] == 1
    assert worker._apply_kept(polled) == polled  # applied once only


def test_a_later_successful_commit_supersedes_a_refused_one(worker: StreamWorker) -> None:
    consumer = RefusingConsumer({P0}, committed={P0: 10})
    worker._consumer = consumer
    worker._commit([msg(0, 10)])  # refused
    worker._commit([msg(0, 11)])  # accepted: nothing is kept any more
    worker._on_assigned([P0])
    assert worker._kept == {}


def test_nothing_is_skipped_once_the_groups_offsets_are_gone(worker: StreamWorker) -> None:
    consumer = RefusingConsumer({P0})  # no committed offset: a broker that lost its data
    worker._consumer = consumer
    worker._commit([msg(0, 10)])
    worker._on_assigned([P0])
    polled = [msg(0, 0), msg(0, 1)]
    assert worker._apply_kept(polled) == polled
    assert consumer.commits == []


def test_nothing_is_skipped_when_the_group_committed_further(worker: StreamWorker) -> None:
    consumer = RefusingConsumer({P0}, committed={P0: 40})  # another owner went on meanwhile
    worker._consumer = consumer
    worker._commit([msg(0, 10)])
    worker._on_assigned([P0])
    polled = [msg(0, 40)]
    assert worker._apply_kept(polled) == polled
    assert consumer.commits == []


def test_lost_membership_forgets_refused_offsets(worker: StreamWorker) -> None:
    consumer = RefusingConsumer({P0}, committed={P0: 10})
    worker._consumer = consumer
    worker._commit([msg(0, 10), msg(0, 11)])
    worker._on_lost([P0])  # session expired or the broker went away
    worker._on_assigned([P0])
    polled = [msg(0, 10), msg(0, 11)]
    assert worker._apply_kept(polled) == polled
    assert consumer.commits == []


# --------------------------------------------------------------- pipelining
def second_poll() -> dict[TopicPartition, list[Any]]:
    return {P0: [msg(0, 23), msg(0, 24)], P1: [msg(1, 6, "sql join table")]}


def committed_offsets(consumer: FakeConsumer) -> list[dict[TopicPartition, int]]:
    return [{tp: o.offset for tp, o in c.items()} for c in consumer.commits]


def test_the_batch_before_is_committed_while_the_model_embeds_the_next(
    worker: StreamWorker,
) -> None:
    committed = threading.Event()

    class CommitSignallingConsumer(FakeConsumer):
        def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
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
    publisher = FakePublisher()
    ready(worker, consumer, embedder, publisher)
    worker._embed_thread = ThreadPoolExecutor(1)
    try:
        assert worker.step() == 4
        assert worker.step() == 3
    finally:
        worker._embed_thread.shutdown()
    assert embedder.saw_commit_while_embedding is True
    assert committed_offsets(consumer) == [{P0: 23, P1: 6}]
    assert publisher.events == ["send", "flush", "send"]


def test_the_next_batch_is_prefetched_while_the_model_runs(worker: StreamWorker) -> None:
    consumer = FakeConsumer({P0, P1}, polls=[batch_poll(), second_poll()])
    publisher = FakePublisher()
    ready(worker, consumer, HashEmbedder(dim=32), publisher)
    assert worker.step() == 4  # polls the first batch, prefetches the second
    assert consumer.polls == []
    assert worker.step() == 3  # the prefetched batch: settles the first on the way
    assert committed_offsets(consumer) == [{P0: 23, P1: 6}]
    assert worker.step() == 0
    assert committed_offsets(consumer) == [{P0: 23, P1: 6}, {P0: 25, P1: 7}]
    labelled = [r.item_id for out in publisher.published for r in out.labels]
    assert labelled == ["i-0-20", "i-0-21", "i-0-22", "i-1-5", "i-0-23", "i-0-24", "i-1-6"]


def test_without_overlap_a_step_commits_its_own_batch(worker: StreamWorker) -> None:
    worker.overlap = False
    consumer = FakeConsumer({P0, P1}, polls=[batch_poll(), second_poll()])
    publisher = FakePublisher()
    ready(worker, consumer, HashEmbedder(dim=32), publisher)
    assert worker.step() == 4
    assert committed_offsets(consumer) == [{P0: 23, P1: 6}]
    assert len(consumer.polls) == 1  # nothing prefetched
    assert worker.step() == 3
    assert committed_offsets(consumer) == [{P0: 23, P1: 6}, {P0: 25, P1: 7}]


def test_a_rebalance_in_the_prefetch_drops_the_batch_and_reads_it_again(
    worker: StreamWorker,
) -> None:
    class RebalancingConsumer(FakeConsumer):
        """The second poll runs a rebalance that takes P1 away, then returns records."""

        rebalanced = False

        def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
            if len(self.polls) == 1 and not self.rebalanced:
                self.rebalanced = True
                worker._on_revoked({P0, P1})
                self.assigned = {P0}
                worker._on_assigned([P0])
                return {P0: [msg(0, 23), msg(0, 24)]}
            return super().poll(timeout_ms, max_records)

    consumer = RebalancingConsumer({P0, P1}, polls=[batch_poll(), {}])
    publisher = FakePublisher()
    ready(worker, consumer, HashEmbedder(dim=32), publisher)
    assert worker.step() == 0
    assert publisher.published == []  # P1 is another worker's now: nothing sent
    assert consumer.seeks == {P0: 20}  # the owned partition is read again from the batch
    assert consumer.commits == []
    assert worker._next is None
    stats = worker.stats()
    assert (stats["rebalanced_batches"], stats["fenced_batches"]) == (1, 0)
    # read again from the rewound position: first labels (revision 0), as if never seen
    consumer.polls = [{P0: [msg(0, 20), msg(0, 21), msg(0, 22)]}]
    assert worker.step() == 3
    assert [(r.item_id, r.revision) for r in publisher.published[0].labels] == [
        ("i-0-20", 0),
        ("i-0-21", 0),
        ("i-0-22", 0),
    ]


def test_the_join_inside_the_poll_that_returns_a_batch_does_not_drop_it(
    worker: StreamWorker,
) -> None:
    """The first poll joins the group, then fetches: its records are the new assignment's."""

    class JoiningConsumer(FakeConsumer):
        def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
            if not worker._stats.rebalances:
                worker._on_assigned([P0, P1])
            return super().poll(timeout_ms, max_records)

    consumer = JoiningConsumer({P0, P1}, polls=[batch_poll()])
    publisher = FakePublisher()
    ready(worker, consumer, HashEmbedder(dim=32), publisher)
    assert worker.step() == 4
    assert worker.step() == 0
    assert committed_offsets(consumer) == [{P0: 23, P1: 6}]
    assert worker.stats()["rebalanced_batches"] == 0


def test_a_failed_send_is_delivered_again_before_the_commit(worker: StreamWorker) -> None:
    consumer = FakeConsumer({P0, P1}, polls=[batch_poll()])
    publisher = FakePublisher(failing_sends=1)
    ready(worker, consumer, HashEmbedder(dim=32), publisher)
    assert worker.step() == 4
    assert publisher.published == []
    assert worker.step() == 0
    assert publisher.events == ["deliver"]  # re-sent with retries, then committed
    assert committed_offsets(consumer) == [{P0: 23, P1: 6}]
    assert worker.stats()["publish_retries"] == 1


def test_a_stopped_loop_settles_the_batch_in_flight_before_it_returns(
    worker: StreamWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = FakeConsumer({P0, P1}, polls=[batch_poll(), second_poll()])
    publisher = FakePublisher()
    ready(worker, consumer, HashEmbedder(dim=32), publisher)
    monkeypatch.setattr(worker, "serve", lambda: None)
    monkeypatch.setattr(worker, "_close", lambda: None)
    steps = 0
    step = worker.step

    def step_then_stop() -> int:
        nonlocal steps
        steps += 1
        n = step()
        if steps == 2:
            worker.stop()
        return n

    monkeypatch.setattr(worker, "step", step_then_stop)
    stats = worker.run()
    assert committed_offsets(consumer) == [{P0: 23, P1: 6}, {P0: 25, P1: 7}]
    assert (stats["items"], stats["commits"]) == (7, 2)


def test_with_a_latency_target_the_worker_polls_fewer_records_after_a_slow_batch(
    fake_time: FakeTime,
) -> None:
    settings = load_runtime_settings(
        None,
        kafka={"topic_prefix": "t."},
        runtime={"batch_size": 256, "batch_target_ms": 50, "min_batch_size": 2,
                 "log_level": "warning", "overlap": True},
    )  # fmt: skip

    class CountingConsumer(FakeConsumer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.asked: list[int | None] = []

        def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
            self.asked.append(max_records)
            return super().poll(timeout_ms, max_records)

    class SleepyEmbedder(HashEmbedder):
        def embed(self, texts: Any) -> Any:
            time.sleep(0.01 * len(texts))  # 10 ms per item: 5 items fit in 50 ms
            return super().embed(texts)

    w = StreamWorker(settings, "worker-b")
    w._tail = FakeTail()  # type: ignore[assignment]
    consumer = CountingConsumer({P0, P1}, polls=[batch_poll(), {}])
    ready(w, consumer, SleepyEmbedder(dim=32), FakePublisher())
    assert w.stats()["batch_size"] == 256
    assert w.step() == 4
    assert w.step() == 0
    assert consumer.asked[0] == 256
    assert 2 <= consumer.asked[-1] <= 128  # the poll after the slow batch asks for less
    assert w.stats()["batch_size"] == consumer.asked[-1]


def test_overlap_is_off_unless_asked_for() -> None:
    def overlap(**runtime: Any) -> bool:
        settings = load_runtime_settings(
            None, kafka={"topic_prefix": "t."}, runtime={"log_level": "warning", **runtime}
        )
        return StreamWorker(settings, "worker-o").overlap

    assert overlap() is False
    assert overlap(overlap=True) is True
