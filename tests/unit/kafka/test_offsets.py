"""The offset tracker on a fake consumer (no broker).

* a batch that outlived ``kafka.max_poll_interval_ms`` is fenced;
* a rewind seeks each partition still owned to the batch's first offset;
* a partition whose position is past its high watermark was recreated: back to its start;
* after a broker reset each partition resumes at its commit where that still exists;
* a commit refused by a rebalance is kept: if the partition comes back and the
  group's commit is still below it, the records already delivered are skipped.
"""

from __future__ import annotations

from typing import Any

from streamlabel.kafka.offsets import OffsetTracker, offset_ranges
from streamlabel.schemas import Item, encode
from streamlabel.testing import ManualClock
from streamlabel.testing.kafka import FakeConsumer, consumed

from kafka.structs import TopicPartition  # isort: skip  (after the fakes: warnings filtered)

ITEMS = "t.items"
P0, P1, P2, P3 = (TopicPartition(ITEMS, p) for p in range(4))
LIMIT_S = 2.0


def msg(partition: int, offset: int) -> Any:
    item_id = f"i-{partition}-{offset}"
    return consumed(ITEMS, partition, offset, encode(Item(id=item_id, text="x")), item_id.encode())


def tracker(consumer: FakeConsumer, clock: ManualClock | None = None) -> OffsetTracker:
    return OffsetTracker(consumer, max_poll_interval_s=LIMIT_S, clock=clock or ManualClock(100.0))


# ------------------------------------------------------------------ fenced
def test_a_batch_is_fenced_only_once_it_outlived_max_poll_interval() -> None:
    clock = ManualClock(10_000.0)
    t = tracker(FakeConsumer(), clock)
    assert not t.fenced(clock.now)
    assert not t.fenced(clock.now - LIMIT_S / 2)
    assert t.fenced(clock.now - LIMIT_S - 0.5)
    assert t.fenced(clock.now - 3600)


def test_rewind_seeks_each_owned_partition_to_the_batchs_first_offset() -> None:
    consumer = FakeConsumer({P0, P1, P3}, positions={P0: 108, P1: 15, P3: 7})
    batch = [msg(0, 100), msg(1, 12), msg(0, 101), msg(1, 13), msg(0, 107), msg(1, 14)]
    tracker(consumer).rewind(batch)
    assert consumer.seeks == {P0: 100, P1: 12}
    assert consumer.positions[P3] == 7  # not in the batch: untouched
    assert consumer.rewound == []


def test_rewind_skips_partitions_no_longer_assigned() -> None:
    consumer = FakeConsumer({P1})  # P0 and P2 went to another worker in the rebalance
    t = tracker(consumer)
    t.rewind([msg(0, 40), msg(0, 41), msg(1, 9), msg(2, 500)])
    assert consumer.seeks == {P1: 9}
    t.rewind([msg(0, 42)])  # nothing of it is owned
    assert consumer.seeks == {P1: 9}


# ------------------------------------------------------------------ resets
def test_a_position_past_the_high_watermark_rewinds_that_partition_only() -> None:
    consumer = FakeConsumer(
        {P0, P1, P2, P3},
        highwater={P0: 10, P1: 250, P3: 0},  # P2: no watermark known yet
        positions={P0: 240, P1: 250, P3: 31},  # P0, P3 recreated; P1 caught up
    )
    assert tracker(consumer).detect_resets() == 2
    assert sorted(consumer.rewound) == [P0, P3]
    assert consumer.seeks == {}


def test_no_reset_while_every_position_is_within_its_watermark() -> None:
    consumer = FakeConsumer({P0, P1}, highwater={P0: 10, P1: 250}, positions={P0: 3, P1: 250})
    assert tracker(consumer).detect_resets() == 0
    assert consumer.rewound == []


def test_after_a_broker_reset_partitions_resume_at_a_commit_that_still_exists() -> None:
    consumer = FakeConsumer(
        {P0, P1, P2, P3},
        highwater={P0: 80, P1: 10, P2: 5},  # P3: watermark unknown
        committed={P0: 50, P1: 120, P3: 7},  # P1's commit is past the new log; P2 has none
        positions={P0: 80, P1: 10, P2: 5, P3: 7},
    )
    resumed = tracker(consumer).resume_after_broker_reset()
    assert consumer.seeks == {P0: 50, P3: 7}
    assert sorted(consumer.rewound) == [P1, P2]
    assert resumed == [f"{ITEMS}:{p}" for p in range(4)]


def test_a_commit_equal_to_the_high_watermark_is_kept() -> None:
    consumer = FakeConsumer({P0}, highwater={P0: 80}, committed={P0: 80})
    tracker(consumer).resume_after_broker_reset()
    assert consumer.seeks == {P0: 80}
    assert consumer.rewound == []


# ------------------------------------------------- refused commits kept for later
def test_a_partition_given_back_after_a_refused_commit_skips_what_was_delivered() -> None:
    consumer = FakeConsumer({P0, P1}, committed={P0: 10, P1: 20}, refuse_commits=1)
    t = tracker(consumer)
    assert t.commit([msg(0, 10), msg(0, 11), msg(1, 20)]) == "refused"  # delivered
    assert consumer.commits == []
    consumer.assigned = {P0, P2}  # the rebalance gives P0 back, P1 went elsewhere
    t.keep_refused([P0, P2])
    # the next poll starts again at the last commit (10): 10 and 11 are not labelled again
    polled = [msg(0, 10), msg(0, 11), msg(0, 12), msg(2, 5)]
    kept, recommitted = t.apply_kept(polled)
    assert [(m.partition, m.offset) for m in kept] == [(0, 12), (2, 5)]
    assert consumer.commit_history() == [{P0: 12}]
    assert recommitted == 1
    assert t.apply_kept(polled) == (polled, 0)  # applied once only


def test_a_later_successful_commit_supersedes_a_refused_one() -> None:
    consumer = FakeConsumer({P0}, committed={P0: 10}, refuse_commits=1)
    t = tracker(consumer)
    assert t.commit([msg(0, 10)]) == "refused"
    assert t.commit([msg(0, 11)]) == "committed"  # nothing is kept any more
    t.keep_refused([P0])
    polled = [msg(0, 12)]
    assert t.apply_kept(polled) == (polled, 0)
    assert consumer.commit_history() == [{P0: 12}]  # the accepted commit only


def test_nothing_is_skipped_once_the_groups_offsets_are_gone() -> None:
    consumer = FakeConsumer({P0}, refuse_commits=1)  # no committed offset: a broker lost its data
    t = tracker(consumer)
    t.commit([msg(0, 10)])
    t.keep_refused([P0])
    polled = [msg(0, 0), msg(0, 1)]
    assert t.apply_kept(polled) == (polled, 0)
    assert consumer.commits == []


def test_nothing_is_skipped_when_the_group_committed_further() -> None:
    consumer = FakeConsumer({P0}, committed={P0: 40}, refuse_commits=1)  # another owner went on
    t = tracker(consumer)
    t.commit([msg(0, 10)])
    t.keep_refused([P0])
    polled = [msg(0, 40)]
    assert t.apply_kept(polled) == (polled, 0)
    assert consumer.commits == []


def test_lost_membership_forgets_refused_offsets() -> None:
    consumer = FakeConsumer({P0}, committed={P0: 10}, refuse_commits=1)
    t = tracker(consumer)
    t.commit([msg(0, 10), msg(0, 11)])
    t.forget()  # session expired or the broker went away
    t.keep_refused([P0])
    polled = [msg(0, 10), msg(0, 11)]
    assert t.apply_kept(polled) == (polled, 0)
    assert consumer.commits == []


def test_a_failed_commit_is_neither_kept_nor_fatal() -> None:
    from kafka.errors import KafkaError

    class Failing(FakeConsumer):
        def commit(self, offsets: Any) -> None:
            raise KafkaError("the coordinator is away")

    consumer = Failing({P0}, committed={P0: 10})
    t = tracker(consumer)
    assert t.commit([msg(0, 10)]) == "failed"
    t.keep_refused([P0])
    polled = [msg(0, 10)]
    assert t.apply_kept(polled) == (polled, 0)


def test_offset_ranges_give_first_and_last_offset_per_partition() -> None:
    assert offset_ranges([msg(0, 5), msg(1, 2), msg(0, 3), msg(0, 9)]) == {
        f"{ITEMS}:0": [3, 9],
        f"{ITEMS}:1": [2, 2],
    }


# ------------------------------------------------------------------ catching up
def test_catching_up_ends_at_the_marks_even_when_polls_never_come_back_empty() -> None:
    from streamlabel.kafka.offsets import CatchUp

    tp = TopicPartition("t.feedback", 0)
    consumer = FakeConsumer({tp}, highwater={tp: 10})
    catch_up = CatchUp()
    assert not catch_up.reached(consumer, {"t.feedback:0": 3}, polled=True, lag=7)
    consumer.high[tp] = 50  # the stream keeps flowing: the mark stays where it was
    assert not catch_up.reached(consumer, {"t.feedback:0": 9}, polled=True, lag=41)
    assert catch_up.reached(consumer, {"t.feedback:0": 10}, polled=True, lag=40)


def test_an_empty_poll_at_no_lag_means_caught_up() -> None:
    from streamlabel.kafka.offsets import CatchUp

    assert CatchUp().reached(FakeConsumer(), {}, polled=False, lag=0)
