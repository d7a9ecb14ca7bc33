"""Discovery in the background: a run over frozen copies on a thread of its own.

The learner's loop starts a run when it is due, goes on consuming while the
run clusters, and collects the run on a later step to adopt what it found on
the loop's own thread (the curator stays single-threaded). The thread runs at
a lower scheduling priority (``learner.discovery_nice``): a run is a burst of
CPU that, on cores the stream workers share, held labels back (half-rate p99
on 2 cores 248-324 ms with discovery, 134 ms without it).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from streamlabel.core.discovery import DiscoveryReport
from streamlabel.pipeline.curator import Curator, DiscoveryJob

__all__ = ["BackgroundDiscovery", "FinishedRun", "lower_thread_priority"]


def lower_thread_priority(nice: int) -> None:
    """Raises the calling thread's niceness to ``nice`` (Linux keeps one per thread;
    never lowers it; a platform without per-thread priorities keeps it as it is)."""
    tid = threading.get_native_id()
    with contextlib.suppress(OSError, AttributeError):
        if nice > os.getpriority(os.PRIO_PROCESS, tid):
            os.setpriority(os.PRIO_PROCESS, tid, nice)


@dataclass(frozen=True)
class FinishedRun:
    """A run that ended: its job (None when it raised), how long it took, how many
    unknowns it clustered."""

    job: DiscoveryJob | None
    seconds: float
    buffered: float


class BackgroundDiscovery:
    """At most one discovery run at a time, on its own thread.

    Args:
        log: where a failed run is reported.
        nice: the thread's niceness (:func:`lower_thread_priority`; 0 = the learner's).
    """

    def __init__(self, log: Any, *, nice: int = 0) -> None:
        self._log = log
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="discovery",
            initializer=lower_thread_priority, initargs=(nice,),
        )  # fmt: skip
        self._job: tuple[DiscoveryJob, Future[DiscoveryReport]] | None = None
        self._started = 0.0
        self._buffered = 0.0
        self.forced = threading.Event()
        """Set to run at the next chance even if not due (cleared when the run starts)."""

    @property
    def running(self) -> bool:
        """True while a run is started and not yet collected."""
        return self._job is not None

    def idle(self) -> bool:
        """True when no run is going on or asked for."""
        return self._job is None and not self.forced.is_set()

    def start(self, curator: Curator) -> None:
        """Starts a run over frozen copies of the curator's buffer, store and discoverer."""
        self._buffered = float(len(curator.buffer))
        job = curator.begin_discovery()
        self._started = time.perf_counter()
        self._job = (job, self._pool.submit(job.run))
        self.forced.clear()  # after _job is set: idle() never sees a gap

    def collect(self, timeout_s: float | None = None) -> FinishedRun | None:
        """The run, once it ended (waiting up to ``timeout_s``; None: do not wait).

        Returns:
            None while no run ended; else the finished run, which is forgotten here.
        """
        if self._job is None:
            return None
        job, future = self._job
        if timeout_s is not None:
            with contextlib.suppress(Exception):  # a failure is reported below
                future.result(timeout=timeout_s)
        if not future.done():
            return None
        self._job = None
        seconds = time.perf_counter() - self._started
        try:
            future.result()
        except Exception:
            self._log.exception("discovery_failed")
            return FinishedRun(None, seconds, self._buffered)
        return FinishedRun(job, seconds, self._buffered)

    def abandon(self) -> None:
        """Forgets a run still going (on stop); its thread ends on its own."""
        self._job = None

    def shutdown(self) -> None:
        """Stops the thread pool (a running run is not waited for)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
