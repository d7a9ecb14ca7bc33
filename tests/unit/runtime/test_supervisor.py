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

The restart policy (budget per window, backoff, exhaustion), hung actors and
relaunches that never block ``check``, and which actors a recreated topic
concerns:

* the budget comes back once the restarts leave the window; the wait between
  restarts doubles, and a slot that stayed up for a window restarts at once;
* a slot past its budget is exhausted: reported (stats, health, log), the other
  slots keep running, and it is tried again a window later (the learner too);
* an actor whose loop stopped stepping, or that does not answer, is killed and
  restarted through the budget;
* a slow learner or worker relaunch does not stop ``check`` from supervising
  the other slots;
* a recreated output topic tells nobody; a recreated input tells its reader only.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest
from structlog.testing import capture_logs

from streamlabel.errors import PublishError
from streamlabel.kafka.broker_watch import BrokerWatch
from streamlabel.pipeline.records import actor_exhausted_alert
from streamlabel.runtime import supervision, supervisor
from streamlabel.runtime.progress import Progress
from streamlabel.runtime.slots import RELAUNCH_BACKOFF_S, Slot, SlotState
from streamlabel.runtime.supervisor import Runtime
from streamlabel.schemas import DriftAlert
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import ManualClock
from streamlabel.testing.kafka import FakeAdmin


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
        # what an actor answers to ``live()`` (by default: its loop steps), or
        # SILENT: it never answers
        self.liveness: dict[str, Any] = {}

    def finish(self, ref: Any, result: Any) -> None:
        self.results[id(ref)] = (ref, result)

    def _done(self, ref: Any) -> bool:
        if id(ref) in self.results:
            return True
        name = getattr(ref, "name", "")
        return name.endswith(".live") and self.liveness.get(name[:-5]) is not SILENT

    def wait(self, refs: list[Any], num_returns: int = 1, timeout: float | None = None) -> Any:
        return [r for r in refs if self._done(r)], [r for r in refs if not self._done(r)]

    def get(self, ref: Any, timeout: float | None = None) -> Any:
        if id(ref) not in self.results and ref.name.endswith(".live"):
            return self.liveness.get(ref.name[:-5], (True, "ok"))
        _, result = self.results[id(ref)]
        if isinstance(result, BaseException):
            raise result
        return result

    def kill(self, handle: Any) -> None:
        self.killed.append(handle)

    def nodes(self) -> list[dict[str, Any]]:
        return [{"NodeID": n, "Alive": alive} for n, alive in self.alive.items()]


SILENT = object()


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
    for module in (supervisor, supervision):
        monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=c, sleep=lambda s: None))
    return c


def launched(slot: Slot, timeout_s: float) -> None:
    """What ``_launch_*`` leaves behind: a new actor whose loop runs."""
    handle = FakeHandle(slot.name)
    slot.starting(handle, handle.ready.remote(), 0.0)
    slot.running(handle.run.remote())


def make_runtime(max_restarts: int = 5, workers: int = 1, **supervisor: Any) -> Runtime:
    rt = Runtime(load_runtime_settings(supervisor={"max_restarts": max_restarts, **supervisor}))
    rt._launch_worker = launched  # type: ignore[method-assign]
    rt._begin_worker = lambda slot: launched(slot, 0)  # type: ignore[method-assign]
    rt._begin_learner = lambda slot: launched(slot, 0)  # type: ignore[method-assign]
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
    assert rt.check() == []  # the first failure is past a budget of 0: set aside
    assert slot.state is SlotState.EXHAUSTED


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
    rt.workers[1].hung = 1
    rt.broker_resets = 1
    assert rt.supervisor_stats(rt_progress()) == {
        "workers": 2,
        "lag": 77,
        "restarts": {"learner": 0, "worker-0": 0, "worker-1": 2},
        "broker_resets": 1,
        "hung": {"learner": 0, "worker-0": 0, "worker-1": 1},
        "exhausted": {"learner": 0, "worker-0": 0, "worker-1": 0},
        "degraded": 0,
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


# ----------------------------------------------------------- restart policy
def fail(fake_ray: FakeRay, slot: Slot) -> None:
    """The slot's loop dies."""
    fake_ray.finish(slot.run_ref, RuntimeError("boom"))


def test_the_restart_budget_comes_back_once_the_restarts_leave_the_window(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime(max_restarts=2, restart_window_s=100.0, restart_backoff_s=1.0)
    slot = rt.workers[0]
    fail(fake_ray, slot)
    assert rt.check() == ["worker-0"]  # the first restart in the window: at once
    fail(fake_ray, slot)
    rt.check()
    clock.advance(1.0)
    assert rt.check() == ["worker-0"]
    clock.advance(100.0)  # up for a whole window: its budget is back
    for _ in range(2):
        fail(fake_ray, slot)
        rt.check()
        clock.advance(1.0)
        rt.check()
        assert slot.state is SlotState.RUNNING
    assert slot.restarts == 4
    fail(fake_ray, slot)  # a third failure within the window: past the budget
    rt.check()
    assert slot.state is SlotState.EXHAUSTED
    assert slot.restarts == 4


def test_the_wait_between_restarts_doubles_then_resets_after_a_healthy_window(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime(
        max_restarts=10, restart_window_s=1000.0, restart_backoff_s=2.0, restart_backoff_max_s=5.0
    )
    slot = rt.workers[0]
    waits = []
    for _ in range(5):
        fail(fake_ray, slot)
        rt.check()
        waits.append(0.0 if slot.state is SlotState.RUNNING else slot.retry_at - clock())
        clock.advance(waits[-1])
        rt.check()
        assert slot.state is SlotState.RUNNING
    assert waits == [0.0, 2.0, 4.0, 5.0, 5.0]
    clock.advance(1000.0)
    fail(fake_ray, slot)
    assert rt.check() == ["worker-0"]  # at once again


def test_an_exhausted_slot_is_reported_while_the_others_keep_running(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime(max_restarts=1, workers=2, restart_window_s=60.0)
    alerts: list[DriftAlert] = []
    rt._alert = alerts.append  # type: ignore[method-assign]
    broken, other = rt.workers
    fail(fake_ray, broken)
    rt.check()
    assert alerts == []  # a restart within the budget raises none
    fail(fake_ray, broken)
    with capture_logs() as logs:
        assert rt.check() == []  # no error raised: the deployment stays up
    assert broken.state is SlotState.EXHAUSTED
    [alert] = alerts  # one critical operational alert on `alerts`, naming the actor
    assert (alert.kind, alert.severity) == ("actor_exhausted", "critical")
    assert "worker-0" in alert.detail
    assert "60 s" in alert.detail
    assert "tried again in 60 s" in alert.detail
    assert (other.state, rt.learner and rt.learner.state) == (SlotState.RUNNING,) * 2
    assert [e["log_level"] for e in logs if e["event"] == "actor_restarts_exhausted"] == ["error"]
    stats = rt.supervisor_stats(rt_progress())
    assert (stats["exhausted"], stats["degraded"]) == ({"learner": 0, "worker-0": 1,
                                                       "worker-1": 0}, 1)  # fmt: skip
    assert rt.health()["degraded"] is True
    assert rt.health()["exhausted"] == ["worker-0"]
    fail(fake_ray, other)  # the others are still supervised
    assert rt.check() == ["worker-1"]
    clock.advance(59.0)
    assert rt.check() == []
    clock.advance(1.0)  # a window later: tried again, with its budget back
    assert rt.check() == ["worker-0"]
    assert broken.state is SlotState.RUNNING
    assert rt.health() == {
        "degraded": False,
        "exhausted": [],
        "slots": {"learner": "running", "worker-0": "running", "worker-1": "running"},
    }


def test_an_alert_the_broker_does_not_take_is_logged_not_raised() -> None:
    """The broker may be why the actors fail: the supervisor's round goes on."""

    class Refusing:
        def publish(self, out: Any) -> int:
            return len(out.alerts)

        def flush(self, timeout: float | None = None) -> int:
            raise PublishError("1 of 1 records undelivered (sl.alerts: not acknowledged in time)")

    rt = Runtime(load_runtime_settings(None, kafka={"bootstrap_servers": "127.0.0.1:9"}))
    rt._alerts = Refusing()  # type: ignore[assignment]
    alert = actor_exhausted_alert(actor="learner", max_restarts=5, window_s=600.0,
                                  retry_in_s=600.0, error="boom", now=1.0)  # fmt: skip
    with capture_logs() as logs:
        rt._alert(alert)
    assert [e["alert_id"] for e in logs if e["event"] == "alert_not_published"] == [alert.alert_id]
    assert alert.detail.startswith("The learner (no feedback")


def test_an_exhausted_learner_leaves_the_workers_labelling_and_returns_a_window_later(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime(max_restarts=0, workers=2, restart_window_s=30.0)
    learner = rt.learner
    assert learner is not None
    fail(fake_ray, learner)
    rt.check()
    assert learner.state is SlotState.EXHAUSTED
    assert all(w.state is SlotState.RUNNING for w in rt.workers)
    assert rt.progress().learner == {}  # an exhausted learner is not asked for stats
    clock.advance(30.0)
    assert rt.check() == ["learner"]
    for w in rt.workers:
        assert ("set_learner", (learner.handle,)) in w.handle.calls


# -------------------------------------------------------------- hung actors
def test_an_actor_whose_loop_stopped_stepping_is_killed_and_restarted(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime(workers=2)
    slot = rt.workers[0]
    hung = slot.handle
    fake_ray.liveness["worker-0"] = (False, "no step for 130s (metrics.stall_s=120)")
    assert rt.check() == []  # asked...
    assert rt.check() == ["worker-0"]  # ...answered: killed and restarted
    assert hung in fake_ray.killed
    assert slot.handle is not hung
    assert (slot.state, slot.hung, slot.restarts) == (SlotState.RUNNING, 1, 1)
    assert rt.workers[1].hung == 0
    assert rt.supervisor_stats(rt_progress())["hung"]["worker-0"] == 1


def test_an_actor_that_does_not_answer_for_stall_s_is_hung(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime()
    learner = rt.learner
    assert learner is not None
    fake_ray.liveness["learner"] = SILENT
    stall_s = rt.settings.metrics.stall_s
    assert rt.check() == []
    clock.advance(stall_s)
    assert rt.check() == []  # not answering for stall_s is not yet hung
    clock.advance(1.0)
    assert rt.check() == ["learner"]
    assert learner.hung == 1


def test_a_running_actor_is_asked_every_liveness_check_s(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime()
    worker = rt.workers[0]
    every = rt.settings.supervisor.liveness_check_s
    rt.check()
    rt.check()
    rt.check()
    assert [c for c, _ in worker.handle.calls].count("live") == 1
    clock.advance(every)
    rt.check()
    assert [c for c, _ in worker.handle.calls].count("live") == 2


# ------------------------------------------------------ relaunches never block
def test_a_slow_learner_relaunch_does_not_block_supervising_the_workers(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime(workers=2)
    learner = rt.learner
    assert learner is not None

    def begin(s: Slot) -> None:
        s.starting(FakeHandle(s.name), object(), clock())  # ready() does not return

    rt._begin_learner = begin  # type: ignore[method-assign]
    fail(fake_ray, learner)
    assert rt.check() == ["learner"]  # relaunched, not waited for
    assert learner.state is SlotState.STARTING
    fail(fake_ray, rt.workers[0])
    assert rt.check() == ["worker-0"]  # supervised meanwhile
    fake_ray.finish(learner.ready_ref, True)
    rt.check()
    assert learner.state is SlotState.RUNNING
    for w in rt.workers:
        assert ("set_learner", (learner.handle,)) in w.handle.calls


def test_a_learner_that_never_gets_ready_is_given_up_and_tried_again(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime()
    learner = rt.learner
    assert learner is not None
    begun: list[object] = []

    def begin(s: Slot) -> None:
        s.starting(FakeHandle(s.name), object(), clock())
        begun.append(s.handle)

    rt._begin_learner = begin  # type: ignore[method-assign]
    fail(fake_ray, learner)
    rt.check()
    clock.advance(rt.settings.supervisor.learner_start_timeout_s + 1)
    rt.check()
    assert begun[0] in fake_ray.killed
    assert learner.state is SlotState.FAILED
    assert learner.restarts == 1  # a failed start is not a restart
    clock.advance(RELAUNCH_BACKOFF_S)
    rt.check()
    assert len(begun) == 2


# ------------------------------------------------------------ recreated topics
def test_a_recreated_topic_tells_only_the_actors_that_read_it(
    fake_ray: FakeRay, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = make_runtime()
    topics = rt.topics
    admin = FakeAdmin({n: f"{k:08x}-0000-7000-8000-000000000001"
                       for k, n in enumerate(topics.all())})  # fmt: skip
    rt._watch = BrokerWatch(rt.settings.kafka, topics, make=lambda settings: admin)
    rt._watch.baseline()
    monkeypatch.setattr(supervisor, "ensure_topics", lambda *args, **kwargs: [])
    assert rt.learner is not None
    learner, worker = rt.learner.handle, rt.workers[0].handle

    def recreate(*names: str) -> list[str]:
        for n in names:  # a new topic id
            admin.ids[n] = admin.ids[n][:-12] + f"{int(admin.ids[n][-12:]) + 1:012d}"
        return rt.check_broker(force=True)

    def resets(handle: FakeHandle) -> list[tuple[Any, ...]]:
        return [args for method, args in handle.calls if method == "broker_reset"]

    assert recreate(topics.dlq) == [topics.dlq]  # purged: nobody replays anything
    assert (resets(learner), resets(worker), rt.broker_resets) == ([], [], 1)
    assert recreate(topics.feedback) == [topics.feedback]
    assert resets(learner) == [(1, (topics.feedback,))]
    assert resets(worker) == []
    recreate(*topics.all())  # the whole broker lost its data
    assert resets(learner)[-1] == (2, (topics.feedback, topics.unknowns, topics.classes))
    assert resets(worker) == [()]
    assert (rt.broker_resets, rt.learner_resets) == (3, 2)
