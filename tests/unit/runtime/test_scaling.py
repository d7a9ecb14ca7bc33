"""``LagScaler`` (``runtime.scaling``) applying the autoscaler's decisions to a runtime.

The runtime here is a fake with the three calls the scaler uses
(``worker_count``, ``start_worker``, ``remove_worker``); it records them and
follows them, as ``Runtime`` does (a started worker counts while it starts).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from streamlabel.runtime.scaling import LagScaler
from streamlabel.settings.runtime import RuntimeSettings, load_runtime_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)


class FakeRuntime:
    """What ``LagScaler`` needs of ``Runtime``; records its calls."""

    def __init__(self, settings: RuntimeSettings, workers: int) -> None:
        self.settings = settings
        self.workers = workers
        self.pending: list[str] = []  # workers still starting (none unless a test says so)
        self.calls: list[str] = []

    def worker_count(self) -> int:
        return self.workers

    def start_worker(self) -> str:
        self.calls.append("start")
        self.workers += 1
        return f"worker-{self.workers - 1}"

    def remove_worker(self, timeout_s: float = 60.0) -> str | None:
        self.calls.append("remove")
        self.workers -= 1
        return f"worker-{self.workers}"


def runtime(
    workers: int = 2, partitions: int = 4, running: int | None = None, **scaling: Any
) -> FakeRuntime:
    """A fake runtime over validated settings, running ``running`` (default: ``workers``)."""
    sc = {
        "enabled": True,
        "target_lag_per_worker": 1000,
        "scale_up_after_s": 10.0,
        "scale_down_after_s": 60.0,
        "scale_cooldown_s": 30.0,
        **scaling,
    }
    s = load_runtime_settings(
        kafka={"partitions": partitions}, supervisor={"workers": workers}, scaling=sc
    )
    return FakeRuntime(s, workers if running is None else running)


def test_the_policy_comes_from_the_scaling_settings() -> None:
    rt = runtime(min_workers=2, max_workers=3, workers=2)
    p = LagScaler(rt).policy  # type: ignore[arg-type]
    assert (p.min_workers, p.max_workers, p.target_lag_per_worker) == (2, 3, 1000)
    assert (p.up_after_s, p.down_after_s, p.cooldown_s) == (10.0, 60.0, 30.0)


def test_max_workers_defaults_to_the_partitions_of_the_items_topic() -> None:
    assert LagScaler(runtime(partitions=6)).policy.max_workers == 6  # type: ignore[arg-type]
    assert LagScaler(runtime(partitions=6, max_workers=3)).policy.max_workers == 3  # type: ignore[arg-type]


def test_min_workers_above_the_partitions_is_lowered_to_them() -> None:
    rt = runtime(partitions=2, workers=2)
    s = rt.settings  # not a combination validation lets through: set it behind its back
    rt.settings = s.model_copy(update={"scaling": s.scaling.model_copy(update={"min_workers": 3})})
    p = LagScaler(rt).policy  # type: ignore[arg-type]
    assert (p.min_workers, p.max_workers) == (2, 2)


def test_scaling_up_starts_the_missing_workers_and_counts_one_event() -> None:
    rt = runtime(workers=1, partitions=8)
    scaler = LagScaler(rt)  # type: ignore[arg-type]
    assert scaler.step(4500, now=0.0) == 1
    assert rt.calls == []
    assert scaler.events == 0
    assert scaler.step(4500, now=10.0) == 5
    assert rt.calls == ["start"] * 4
    assert (rt.workers, scaler.events, scaler.desired) == (5, 1, 5)


def test_scaling_down_removes_one_worker_per_event() -> None:
    rt = runtime(workers=4)
    scaler = LagScaler(rt)  # type: ignore[arg-type]
    scaler.step(0, now=0.0)
    assert scaler.step(0, now=60.0) == 3
    assert rt.calls == ["remove"]
    assert scaler.step(0, now=89.0) == 3  # cooling down; the down window restarts here
    assert scaler.step(0, now=148.0) == 3
    assert scaler.step(0, now=149.0) == 2
    assert rt.calls == ["remove", "remove"]
    assert (rt.workers, scaler.events) == (2, 2)


def test_no_call_and_no_event_while_nothing_changes() -> None:
    rt = runtime(workers=2)
    scaler = LagScaler(rt)  # type: ignore[arg-type]
    for t in range(0, 600, 5):
        assert scaler.step(2000, now=float(t)) == 2  # exactly 2 wanted
    assert rt.calls == []
    assert scaler.events == 0


def test_a_count_above_the_partitions_is_brought_down_at_once() -> None:
    """More workers running than ``kafka.partitions`` (no max_workers set): the first
    reading removes the surplus, since a worker without a partition only waits."""
    rt = runtime(workers=4, partitions=4, running=6)
    scaler = LagScaler(rt)  # type: ignore[arg-type]
    assert scaler.step(10**6, now=0.0) == 4
    assert rt.calls == ["remove", "remove"]
    assert scaler.events == 1


def test_step_uses_the_monotonic_clock_when_no_time_is_given() -> None:
    rt = runtime(workers=1, scale_up_after_s=0.0)
    scaler = LagScaler(rt)  # type: ignore[arg-type]
    assert scaler.step(2500) == 3
    assert rt.calls == ["start", "start"]


def test_no_decision_while_a_worker_is_still_starting() -> None:
    """A worker that has not joined yet has not touched the lag: the scaler waits for it."""
    rt = runtime(workers=1, running=1, scale_up_after_s=0.0, scale_down_after_s=0.0,
                 scale_cooldown_s=0.0)  # fmt: skip
    scaler = LagScaler(rt)  # type: ignore[arg-type]
    rt.pending = ["worker-1"]
    assert scaler.step(lag=10_000, now=0.0) == 1
    assert scaler.step(lag=0, now=100.0) == 1
    assert rt.calls == []
    assert scaler.events == 0
    rt.pending = []
    assert scaler.step(lag=10_000, now=200.0) == 4
    assert rt.calls == ["start"] * 3
