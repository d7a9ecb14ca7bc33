"""The learner's discovery thread runs at a lower scheduling priority.

* :func:`lower_thread_priority` raises the calling thread's niceness only (Linux
  keeps one per thread): the rest of the process keeps its own;
* it never lowers a niceness (that would need privileges, and undo an operator's
  ``nice``);
* :class:`BackgroundDiscovery` runs its thread at ``learner.discovery_nice``,
  which defaults to 19.
"""

from __future__ import annotations

import os
import sys
import threading

import pytest
import structlog

from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.workers.discovery_runner import BackgroundDiscovery, lower_thread_priority

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.getpriority(os.PRIO_PROCESS, 0) > 10,
    reason="per-thread niceness is a Linux feature; room above this process's niceness",
)


def niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def in_thread(*steps: int) -> list[int]:
    """The niceness of a fresh thread after each ``lower_thread_priority(step)``."""
    seen: list[int] = []

    def run() -> None:
        for nice in steps:
            lower_thread_priority(nice)
            seen.append(niceness())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen


def test_only_the_calling_thread_gets_the_lower_priority() -> None:
    before = niceness()
    assert in_thread(before + 5) == [before + 5]
    assert niceness() == before  # this thread, like the rest of the process, is as it was


def test_a_niceness_is_never_lowered() -> None:
    base = niceness()
    assert in_thread(base + 6, base + 2, 0) == [base + 6] * 3


def test_the_discovery_thread_runs_at_the_learners_setting() -> None:
    assert load_runtime_settings(None).learner.discovery_nice == 19
    runner = BackgroundDiscovery(structlog.get_logger(), nice=niceness() + 4)
    try:
        # the thread a run would take: the pool's one worker
        assert runner._pool.submit(niceness).result() == niceness() + 4
    finally:
        runner.shutdown()
