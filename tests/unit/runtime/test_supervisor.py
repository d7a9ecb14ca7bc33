"""The supervisor's handling of its actors (``Runtime.check()``), without Ray.

``ray.wait/get/kill/nodes`` are replaced by fakes whose outcome each test sets,
the actor launches by fakes that leave a running (or starting) actor behind,
and the supervisor's clock by a manual one:

* a loop that returned ``drained`` is started again after ``RELAUNCH_BACKOFF_S``
  without counting a restart, unlike a loop that died;
* a drained actor waits until the node it left is gone (at most
  ``supervisor.drained_node_wait_s``);
* a relaunched worker starts in the background and is given up when it is not
  ready in time;
* ``supervisor_stats`` reports workers, lag, restarts and broker resets.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest

from streamlabel.errors import StreamlabelError
from streamlabel.runtime import supervisor
from streamlabel.runtime.progress import Progress
from streamlabel.runtime.slots import RELAUNCH_BACKOFF_S, Slot, SlotState
from streamlabel.runtime.supervisor import Runtime
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import ManualClock


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STREAMLABEL_* variable leaks into the settings."""
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)


class FakeRef:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"FakeRef({self.name})"


class FakeHandle:
    """An actor handle: ``handle.method.remote(*args)`` records the call, returns a ref."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        def remote(*args: Any) -> FakeRef:
            self.calls.append((method, args))
            return FakeRef(f"{self.name}.{method}")

        return SimpleNamespace(remote=remote)


class FakeRay:
    """``ray.wait/get/kill`` over refs whose outcome the test sets."""

    def __init__(self) -> None:
        # id(ref) -> (ref, a value or an exception to raise); the ref is kept alive so
        # that its id is never reused by a newer ref
        self.results: dict[int, tuple[Any, Any]] = {}
        self.killed: list[Any] = []
        self.alive: dict[str, bool] = {}

    def finish(self, ref: Any, result: Any) -> None:
        self.results[id(ref)] = (ref, result)

    def wait(self, refs: list[Any], num_returns: int = 1, timeout: float | None = None) -> Any:
        done = [r for r in refs if id(r) in self.results]
        return done, [r for r in refs if id(r) not in self.results]

    def get(self, ref: Any, timeout: float | None = None) -> Any:
        _, result = self.results[id(ref)]
        if isinstance(result, BaseException):
            raise result
        return result

    def kill(self, handle: Any) -> None:
        self.killed.append(handle)

    def nodes(self) -> list[dict[str, Any]]:
        return [{"NodeID": n, "Alive": alive} for n, alive in self.alive.items()]


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> FakeRay:
    import ray

    fake = FakeRay()
    for name in ("wait", "get", "kill", "nodes"):
        monkeypatch.setattr(ray, name, getattr(fake, name))
    return fake


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    c = ManualClock(5000.0)
    monkeypatch.setattr(supervisor, "time", SimpleNamespace(monotonic=c, sleep=lambda s: None))
    return c


def launched(slot: Slot, timeout_s: float) -> None:
    """What ``_launch_*`` leaves behind: a new actor whose loop runs."""
    handle = FakeHandle(slot.name)
    slot.starting(handle, handle.ready.remote(), 0.0)
    slot.running(handle.run.remote())


def make_runtime(max_restarts: int = 5, workers: int = 1) -> Runtime:
    rt = Runtime(load_runtime_settings(supervisor={"max_restarts": max_restarts}))
    rt._launch_worker = launched  # type: ignore[method-assign]
    rt._begin_worker = lambda slot: launched(slot, 0)  # type: ignore[method-assign]
    rt._launch_learner = launched  # type: ignore[method-assign]
    rt.learner = Slot("learner")
    launched(rt.learner, 0)
    for _ in range(workers):
        slot = rt._new_worker_slot()
        launched(slot, 0)
        rt.workers.append(slot)
    return rt


def test_a_drained_worker_is_restarted_after_the_backoff_without_counting_a_restart(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime()
    slot = rt.workers[0]
    old = slot.handle
    fake_ray.finish(slot.run_ref, {"items": 5, "drained": True})
    assert rt.check() == []
    assert (slot.handle, slot.run_ref, slot.restarts) == (None, None, 0)
    assert slot.state is SlotState.DRAINED
    assert fake_ray.killed == [old]
    assert rt.worker_count() == 1  # still one of the group: it comes back
    clock.advance(RELAUNCH_BACKOFF_S - 0.5)
    assert rt.check() == []
    assert slot.handle is None
    clock.advance(0.5)
    assert rt.check() == ["worker-0"]
    assert slot.state is SlotState.RUNNING
    assert slot.handle is not None
    assert slot.handle is not old
    assert slot.restarts == 0
    assert rt.supervisor_stats(rt_progress())["restarts"] == {"learner": 0, "worker-0": 0}


def rt_progress() -> Progress:
    return Progress(
        elapsed_s=1.0, items=0, items_per_s=0.0, lag=77, unknowns=0, dead_letters=0, classes=0,
        store_version=0, alerts=0, discovered=0, restarts=0,
    )  # fmt: skip


def test_a_loop_that_returned_undrained_is_a_failure_restarted_at_once(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime()
    slot = rt.workers[0]
    fake_ray.finish(slot.run_ref, {"items": 5, "drained": False})
    assert rt.check() == ["worker-0"]
    assert slot.restarts == 1
    assert slot.handle is not None


def test_drains_do_not_use_up_max_restarts(fake_ray: FakeRay, clock: ManualClock) -> None:
    rt = make_runtime(max_restarts=0)
    slot = rt.workers[0]
    for _ in range(3):
        fake_ray.finish(slot.run_ref, {"drained": True})
        assert rt.check() == []
        clock.advance(RELAUNCH_BACKOFF_S)
        assert rt.check() == ["worker-0"]
    assert slot.restarts == 0
    fake_ray.finish(slot.run_ref, RuntimeError("actor died"))
    with pytest.raises(StreamlabelError, match="worker-0 failed 1 times"):
        rt.check()


def test_a_drained_learner_is_restarted_and_handed_to_the_workers(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime(workers=2)
    learner = rt.learner
    assert learner is not None
    fake_ray.finish(learner.run_ref, {"drained": True})
    assert rt.check() == []
    assert learner.handle is None
    assert learner.restarts == 0
    clock.advance(RELAUNCH_BACKOFF_S)
    assert rt.check() == ["learner"]
    for w in rt.workers:
        assert ("set_learner", (learner.handle,)) in w.handle.calls


def test_a_learner_and_a_worker_drained_together_both_come_back(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    """A node drain can stop the learner and a worker at once: the learner's relaunch
    must not trip over the worker that is still waiting for its own (handle None)."""
    rt = make_runtime(workers=2)
    learner, drained, other = rt.learner, rt.workers[0], rt.workers[1]
    assert learner is not None
    fake_ray.finish(learner.run_ref, {"drained": True})
    fake_ray.finish(drained.run_ref, {"drained": True})
    assert rt.check() == []
    clock.advance(RELAUNCH_BACKOFF_S)
    assert sorted(rt.check()) == ["learner", "worker-0"]
    assert drained.handle is not None
    assert learner.handle is not None
    assert ("set_learner", (learner.handle,)) in other.handle.calls
    assert (learner.restarts, drained.restarts, other.restarts) == (0, 0, 0)


def test_supervisor_stats_report_the_deployment() -> None:
    rt = make_runtime(workers=2)
    rt.workers[1].restarts = 2
    rt.broker_resets = 1
    assert rt.supervisor_stats(rt_progress()) == {
        "workers": 2,
        "lag": 77,
        "restarts": {"learner": 0, "worker-0": 0, "worker-1": 2},
        "broker_resets": 1,
    }


def test_a_drained_worker_waits_until_the_node_it_left_is_gone(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    """The terminating pod is often the only one with room: a worker started again before
    its node is gone would land there and die with it."""
    rt = make_runtime()
    slot = rt.workers[0]
    fake_ray.alive = {"node-a": True, "node-b": True}
    fake_ray.finish(slot.run_ref, {"drained": True, "node_id": "node-a"})
    assert rt.check() == []
    clock.advance(RELAUNCH_BACKOFF_S + 10)
    assert rt.check() == []  # node-a still alive
    assert slot.handle is None
    fake_ray.alive["node-a"] = False
    assert rt.check() == ["worker-0"]
    assert slot.restarts == 0


def test_a_drained_worker_starts_anyway_after_drained_node_wait_s(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime()
    slot = rt.workers[0]
    fake_ray.alive = {"node-a": True}  # a one-node cluster: the node never goes
    fake_ray.finish(slot.run_ref, {"drained": True, "node_id": "node-a"})
    assert rt.check() == []
    clock.advance(rt.settings.supervisor.drained_node_wait_s - 1)
    assert rt.check() == []
    clock.advance(1)
    assert rt.check() == ["worker-0"]


def test_a_relaunch_does_not_wait_for_the_worker_to_be_ready(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    """The supervisor keeps supervising while a restarted worker waits for a node or
    loads its model: its loop starts at a later check, once ready() returned."""
    rt = make_runtime()
    slot = rt.workers[0]

    def begin(s: Slot) -> None:
        s.starting(FakeHandle(s.name), object(), clock())

    rt._begin_worker = begin  # type: ignore[method-assign]
    fake_ray.finish(slot.run_ref, RuntimeError("killed"))
    assert rt.check() == ["worker-0"]  # relaunched, not yet running
    assert slot.run_ref is None
    assert slot.state is SlotState.STARTING
    assert rt.progress().workers == []  # a starting worker is not asked for stats
    fake_ray.finish(slot.ready_ref, True)
    rt.check()
    assert slot.ready_ref is None
    assert slot.run_ref is not None
    assert slot.restarts == 1


def test_a_worker_that_never_gets_ready_is_given_up_and_tried_again(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime()
    slot = rt.workers[0]
    begun: list[object] = []

    def begin(s: Slot) -> None:
        s.starting(FakeHandle(s.name), object(), clock())
        begun.append(s.ready_ref)

    rt._begin_worker = begin  # type: ignore[method-assign]
    fake_ray.finish(slot.run_ref, RuntimeError("killed"))
    rt.check()
    stuck = slot.handle
    clock.advance(rt.settings.supervisor.worker_start_timeout_s + 1)
    rt.check()
    assert stuck in fake_ray.killed
    assert slot.handle is None
    assert slot.state is SlotState.FAILED
    clock.advance(RELAUNCH_BACKOFF_S)
    rt.check()
    assert len(begun) == 2
