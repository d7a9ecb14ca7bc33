"""What the stream workers labelled reaches the learner's item cache, however busy the stream.

Observations used to be sampled and dropped under load (a batch beyond
``worker.max_inflight_observations`` calls in flight, or beyond the learner's
queue), so feedback naming a dropped item was dead-lettered. Now every row
goes to the cache (a worker keeps the rows its learner has not taken, and sends
them again to a restarted one); only drift rows are best effort.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from streamlabel.pipeline.curator import Curator, load_settings
from streamlabel.pipeline.output import Observed
from streamlabel.schemas import UNKNOWN
from streamlabel.testing import HashEmbedder, ManualClock
from streamlabel.workers.observations import ObservationInbox, ObservationSender

DIM = 8


def batch(start: int, n: int) -> Observed:
    vectors = np.zeros((n, DIM), np.float32)
    vectors[:, 0] = 1.0
    return Observed(
        item_ids=[f"i{k}" for k in range(start, start + n)],
        vectors=vectors,
        texts=[f"text {k}" for k in range(start, start + n)],
        labels=[UNKNOWN] * n,
        revisions=[0] * n,
        scores=np.zeros(n, np.float32),
        is_unknown=np.ones(n, bool),
    )


@dataclass
class Call:
    observed: Observed
    done: bool = False
    result: bool = False

    def __hash__(self) -> int:
        return id(self)


class SlowLearner:
    """A learner actor handle whose calls return only when :meth:`deliver` runs them,
    into a learner inbox that its loop drains only when :meth:`drain` is called."""

    def __init__(self, max_rows: int, max_drift_rows: int = 1_000_000) -> None:
        self.inbox = ObservationInbox(max_rows=max_rows, max_drift_rows=max_drift_rows)
        self.calls: list[Call] = []
        self.curator = Curator(
            load_settings(drift={"enabled": False}), HashEmbedder(dim=DIM), clock=ManualClock()
        )
        self.drift_rows = 0
        self.observe = self  # ``handle.observe.remote(...)``

    def remote(self, observed: Observed) -> Call:
        call = Call(observed)
        self.calls.append(call)
        return call

    def deliver(self, n: int | None = None) -> None:
        """Runs the first ``n`` calls not yet run (all when None)."""
        waiting = [c for c in self.calls if not c.done][:n]
        for call in waiting:
            call.result, _ = self.inbox.offer(call.observed)
            call.done = True

    def drain(self) -> None:
        for observed in self.inbox.drain():
            self.drift_rows += observed.drift_rows
            self.curator.observe(observed)


def poll(refs: list[Any]) -> list[tuple[Any, bool]]:
    return [(r, r.result) for r in refs if r.done]


def sender(learner: Any, *, backlog: int = 100_000, sample: float = 1.0) -> ObservationSender:
    return ObservationSender(
        learner, max_inflight=2, sample=sample, seed=0, backlog=backlog, poll=poll
    )


def test_under_load_every_labelled_item_still_reaches_the_learners_cache() -> None:
    learner = SlowLearner(max_rows=50, max_drift_rows=40)
    worker = sender(learner)
    dropped = 0
    for k in range(100):  # 100 batches of 10, far faster than the learner takes them
        dropped += worker.send(batch(k * 10, 10))
        learner.deliver(1)  # one call returns per batch sent...
        if k % 20 == 0:  # ...and the learner's loop is slower still
            learner.drain()
    assert dropped == 0
    assert any(c.done and not c.result for c in learner.calls)  # refused, sent again
    while worker.waiting:  # the stream goes quiet: the learner catches up
        learner.deliver()
        learner.drain()
        worker.send(None)
    assert all(f"i{k}" in learner.curator.cache for k in range(1000))
    assert learner.drift_rows < 1000  # drift rows beyond the learner's bound were dropped


def test_a_restarted_learner_gets_again_every_row_its_predecessor_took() -> None:
    old = SlowLearner(max_rows=10_000)
    worker = sender(old, sample=0.5)
    for k in range(5):
        worker.send(batch(k * 10, 10))
        old.deliver()
        old.drain()
    worker.send(None)  # the worker sees the last call return
    assert worker.waiting == 0
    assert len(old.curator.cache) == 50

    new = SlowLearner(max_rows=10_000)  # its cache starts empty
    worker.retarget(new)
    for _ in range(5):
        worker.send(None)
        new.deliver()
        new.drain()
    assert len(new.curator.cache) == 50
    assert new.drift_rows == 0  # sent again for the cache only


def test_a_worker_keeps_at_most_its_backlog_and_counts_what_no_learner_took() -> None:
    worker = sender(None, backlog=30)  # no learner yet (or one that is down)
    dropped = sum(worker.send(batch(k * 10, 10)) for k in range(6))
    assert dropped == 30  # the 3 oldest batches
    assert worker.waiting == 30
    learner = SlowLearner(max_rows=10_000)
    worker.retarget(learner)
    for _ in range(2):
        worker.send(None)
        learner.deliver()
        learner.drain()
    assert sorted(learner.curator.cache.ids()) == sorted(f"i{k}" for k in range(30, 60))


def test_the_inbox_refuses_rows_beyond_its_bound_and_takes_drift_rows_only_up_to_theirs() -> None:
    inbox = ObservationInbox(max_rows=25, max_drift_rows=15)
    assert inbox.offer(batch(0, 10)) == (True, 0)
    assert inbox.offer(batch(10, 10)) == (True, 10)  # for the cache only
    assert inbox.offer(batch(20, 10)) == (False, 0)  # refused: the worker sends it again
    drained = inbox.drain()
    assert [(len(o), o.drift_rows) for o in drained] == [(10, 10), (10, 0)]
    assert inbox.empty()
    assert inbox.offer(batch(0, 40)) == (True, 40)  # an empty inbox takes any batch


def test_drift_marks_a_sample_of_rows_and_keeps_every_row() -> None:
    marked = batch(0, 1000).mark_drift(0.25, np.random.default_rng(0))
    assert len(marked) == 1000
    assert 200 < marked.drift_rows < 300
    assert len(marked.for_drift()) == marked.drift_rows
    assert batch(0, 5).mark_drift(1.0, np.random.default_rng(0)).drift is None


def test_batches_labelled_within_the_interval_go_to_the_learner_in_one_call() -> None:
    clock = ManualClock()
    learner = SlowLearner(max_rows=10_000)
    worker = ObservationSender(
        learner, max_inflight=2, sample=1.0, seed=0, backlog=100_000, poll=poll,
        min_interval_s=0.2, clock=clock,
    )  # fmt: skip
    worker.send(batch(0, 10))  # the first round goes at once
    for k in range(1, 5):  # a quiet stream: four more small batches by t = 0.15 s
        clock.advance(0.0375)
        worker.send(batch(k * 10, 10))
    assert [len(c.observed) for c in learner.calls] == [10]
    clock.advance(0.1)
    worker.send(None)  # the interval is up (an idle worker's step sends too)
    assert [len(c.observed) for c in learner.calls] == [10, 40]
    assert learner.calls[1].observed.item_ids == [f"i{k}" for k in range(10, 50)]
    learner.deliver()
    learner.drain()
    assert len(learner.curator.cache) == 50


def test_a_merged_call_carries_at_most_merge_rows() -> None:
    from streamlabel.workers.observations import MERGE_ROWS

    worker = sender(None)
    for k in range(10):
        worker.send(batch(k * 300, 300))
    learner = SlowLearner(max_rows=100_000)
    worker.retarget(learner)
    for _ in range(3):
        worker.send(None)
        learner.deliver()
    sizes = [len(c.observed) for c in learner.calls]
    assert sum(sizes) == 3000
    assert max(sizes) <= MERGE_ROWS


def test_merging_keeps_each_rows_drift_mark() -> None:
    rng = np.random.default_rng(0)
    a = batch(0, 4)  # drift None: every row
    b = batch(4, 6).mark_drift(0.5, rng)
    merged = a.then(b)
    assert len(merged) == 10
    assert merged.drift is not None
    assert merged.drift[:4].all()
    assert merged.drift[4:].tolist() == b.drift.tolist()
    assert a.then(batch(4, 2)).drift is None
