"""What a stream worker labelled, on its way to the learner's item cache and drift detectors.

Every labelled row goes to the learner's item cache, so feedback can name any
recent item by id; a ``worker.drift_sample`` share of them is marked for the
drift detectors. The two have different guarantees:

* **Cache rows are not dropped for backpressure.** A worker keeps its latest
  ``worker.observation_backlog`` rows (:class:`ObservationSender`): those the
  learner has not taken yet wait there and are sent again (at most
  ``worker.max_inflight_observations`` calls in flight), and those it took
  are sent again to a restarted learner, whose cache starts empty. Only rows
  older than that bound are forgotten. The stream never waits for the learner.
* **Drift rows are best effort.** The learner's :class:`ObservationInbox`
  takes cache rows up to ``limits.max_item_cache`` rows waiting for its loop
  (beyond it it refuses the call and the worker sends it again later) and
  drift rows up to :data:`DRIFT_ROWS` (beyond it they go to the cache only).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamlabel.pipeline.output import Observed

__all__ = ["DRIFT_ROWS", "ObservationInbox", "ObservationSender", "Poll", "ray_poll"]

MERGE_ROWS = 1024
"""Rows one call to the learner carries at most when batches waiting together are merged."""

DRIFT_ROWS = 16_384
"""Rows for the drift detectors waiting for the learner's loop at most (about 64 batches
of 256, the bound before the cache rows were split off); beyond it drift rows are dropped."""

Poll = Callable[[list[Any]], list[tuple[Any, bool]]]
"""Which of the given call references have returned, each with its result (True: the
learner took the rows; False: it refused them, or the call failed)."""


def ray_poll(refs: list[Any]) -> list[tuple[Any, bool]]:
    """:data:`Poll` over Ray object references, without waiting."""
    import ray

    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    done = []
    for ref in ready:
        try:
            done.append((ref, bool(ray.get(ref))))
        except Exception:  # the learner died or restarted: send it to the next one
            done.append((ref, False))
    return done


@dataclass
class _Entry:
    observed: Observed
    ref: Any = None  # the call carrying it while in flight
    taken: bool = False  # the current learner took it


class ObservationSender:
    """Sends every labelled batch to the learner, keeping the latest rows for it.

    Calls go out at most every ``min_interval_s``; batches labelled meanwhile wait
    and go together (up to :data:`MERGE_ROWS` rows a call). On a quiet stream a
    worker labels ~20 small batches a second, and each call costs the learner's
    loop a wake-up: one call per batch took it 3x its per-row work.

    Args:
        learner: the learner's actor handle (None sends nothing).
        max_inflight: calls sent and not yet returned at most; more batches wait.
        sample: share of each batch's rows marked for the drift detectors.
        seed: seeds the sampling.
        backlog: rows kept (waiting, in flight or taken) at most, the oldest forgotten first.
        poll: which calls have returned (:func:`ray_poll`; a fake in tests).
        min_interval_s: the least time between two rounds of calls.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        learner: Any,
        *,
        max_inflight: int,
        sample: float,
        seed: int,
        backlog: int,
        poll: Poll = ray_poll,
        min_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._learner = learner
        self._max_inflight = max_inflight
        self._sample = sample
        self._rng = np.random.default_rng(seed)
        self._backlog = backlog
        self._poll = poll
        self._entries: deque[_Entry] = deque()
        self._rows = 0
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._last_round = -float("inf")

    @property
    def waiting(self) -> int:
        """Rows the current learner has not taken yet (in flight included)."""
        return sum(len(e.observed) for e in self._entries if not e.taken)

    def retarget(self, learner: Any) -> None:
        """Sends to a (restarted) learner from now on: every row kept, again.

        Rows the old learner saw or may have seen go again for the cache only.
        """
        self._learner = learner
        for e in self._entries:
            if e.taken or e.ref is not None:
                e.observed = e.observed.without_drift()
            e.ref, e.taken = None, False

    def send(self, observed: Observed | None) -> int:
        """Keeps ``observed`` for the learner and sends what is waiting, up to
        ``max_inflight`` calls (unless the last round was less than
        ``min_interval_s`` ago); never waits.

        Returns:
            Rows forgotten before a learner took them (the backlog was full).
        """
        if observed is not None and len(observed):
            marked = observed.mark_drift(self._sample, self._rng)
            last = self._entries[-1] if self._entries else None
            if (
                last
                and not last.taken
                and last.ref is None
                and (len(last.observed) + len(marked) <= MERGE_ROWS)
            ):
                last.observed = last.observed.then(marked)
            else:
                self._entries.append(_Entry(marked))
            self._rows += len(observed)
        dropped = self._trim()
        if self._learner is None:
            return dropped
        self._collect()
        now = self._clock()
        if now - self._last_round < self._min_interval_s:
            return dropped
        self._last_round = now
        inflight = sum(e.ref is not None for e in self._entries)
        for e in self._entries:
            if inflight >= self._max_inflight:
                break
            if not e.taken and e.ref is None:
                e.ref = self._learner.observe.remote(e.observed)
                inflight += 1
        return dropped

    def _collect(self) -> None:
        """Notes which calls returned: taken, or refused (sent again later)."""
        sent = [e for e in self._entries if e.ref is not None]
        if not sent:
            return
        results = dict(self._poll([e.ref for e in sent]))
        for e in sent:
            if e.ref in results:
                e.taken, e.ref = results[e.ref], None

    def _trim(self) -> int:
        dropped = 0
        while self._rows > self._backlog and self._entries:
            e = self._entries[0]
            excess = self._rows - self._backlog
            if len(e.observed) > excess and not e.taken and e.ref is None:
                # merged batches waiting together: forget only their oldest rows
                e.observed = e.observed.rows(np.arange(excess, len(e.observed)))
                self._rows -= excess
                return dropped + excess
            self._entries.popleft()
            self._rows -= len(e.observed)
            if not e.taken and e.ref is None:
                dropped += len(e.observed)
        return dropped


class ObservationInbox:
    """The learner's side: observations waiting for its loop (Ray threads offer,
    the loop drains).

    Args:
        max_rows: rows waiting at most; a call beyond it is refused (the worker
            sends it again), except into an empty inbox.
        max_drift_rows: rows for the drift detectors waiting at most; beyond it a
            batch goes to the cache only.

    Example:
        >>> inbox = ObservationInbox(max_rows=3, max_drift_rows=2)
        >>> rows = Observed(["a", "b"], np.zeros((2, 4), np.float32), [None, None],
        ...                 ["x", "x"], [0, 0], np.zeros(2), np.zeros(2, bool))
        >>> inbox.offer(rows), inbox.offer(rows)
        ((True, 0), (False, 0))
        >>> [len(o) for o in inbox.drain()], inbox.empty()
        ([2], True)
    """

    def __init__(self, *, max_rows: int, max_drift_rows: int = DRIFT_ROWS) -> None:
        self.max_rows = max_rows
        self.max_drift_rows = max_drift_rows
        self._lock = threading.Lock()
        self._waiting: list[Observed] = []
        self._rows = 0
        self._drift_rows = 0

    def offer(self, observed: Observed) -> tuple[bool, int]:
        """Queues ``observed``; returns whether it was taken and the drift rows dropped."""
        with self._lock:
            if self._rows and self._rows + len(observed) > self.max_rows:
                return False, 0
            dropped = 0
            if self._drift_rows + observed.drift_rows > self.max_drift_rows:
                dropped = observed.drift_rows
                observed = observed.without_drift()
            self._waiting.append(observed)
            self._rows += len(observed)
            self._drift_rows += observed.drift_rows
            return True, dropped

    def drain(self) -> list[Observed]:
        """Everything waiting, oldest first (the inbox is then empty)."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
            self._rows = self._drift_rows = 0
        return waiting

    def empty(self) -> bool:
        """True when nothing waits."""
        return not self._waiting
