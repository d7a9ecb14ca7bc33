"""The supervised actor's slot (``runtime.slots``): its explicit states, and the Ray
calls on its actor with ``ray.wait/get/kill/nodes`` replaced by fakes.

* each move sets its state and keeps only the refs that state holds; a move
  :data:`TRANSITIONS` does not allow raises, naming the slot;
* ``await_ready`` starts the loops of ready actors, and on a failure kills them
  all and raises the actor's own error type naming it;
* ``poll_ready`` yields ready and late slots, ``loop_end`` tells a drain from a
  failure, ``stop_slot`` stops, waits, kills;
* a drained slot waits while the node it left is alive, at most ``wait_s``;
* an exhausted slot has no actor and awaits its retry;
* ``poll_liveness`` asks each running actor every ``every_s`` without waiting, and
  yields those that answered stalled or left a question unanswered ``stall_s``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from streamlabel.errors import BrokerError, SettingsError, StreamlabelError
from streamlabel.runtime.slots import (
    TRANSITIONS,
    LoopEnd,
    Slot,
    SlotState,
    await_ready,
    loop_end,
    poll_liveness,
    poll_ready,
    stop_slot,
)


class FakeHandle:
    """An actor handle: ``handle.method.remote(*args)`` records the call, returns a ref."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        def remote(*args: Any) -> str:
            self.calls.append(method)
            return f"{self.name}.{method}"

        return SimpleNamespace(remote=remote)


class FakeRay:
    """``ray.wait/get/kill/nodes`` over refs (strings here) whose outcome the test sets."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.killed: list[Any] = []
        self.alive: dict[str, bool] = {}

    def wait(self, refs: list[Any], num_returns: int = 1, timeout: float | None = None) -> Any:
        return [r for r in refs if r in self.results], [r for r in refs if r not in self.results]

    def get(self, ref: Any, timeout: float | None = None) -> Any:
        result = self.results[ref]
        if isinstance(result, BaseException):
            raise result
        return result

    def kill(self, handle: Any) -> None:
        self.killed.append(handle)

    def nodes(self) -> list[dict[str, Any]]:
        if "error" in self.alive:
            raise RuntimeError("GCS busy")
        return [{"NodeID": n, "Alive": alive} for n, alive in self.alive.items()]


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> FakeRay:
    import ray

    fake = FakeRay()
    for name in ("wait", "get", "kill", "nodes"):
        monkeypatch.setattr(ray, name, getattr(fake, name))
    return fake


def starting(name: str, now: float = 0.0) -> Slot:
    slot = Slot(name)
    handle = FakeHandle(name)
    slot.starting(handle, handle.ready.remote(), now)
    return slot


def running(name: str) -> Slot:
    slot = starting(name)
    slot.running(slot.handle.run.remote())
    return slot


# ------------------------------------------------------------------ states
def test_a_new_slot_has_no_actor_and_is_not_due_for_a_restart() -> None:
    slot = Slot("worker-0")
    assert slot.state is SlotState.NEW
    assert (slot.has_actor, slot.awaits_restart) == (False, False)


def test_each_move_sets_its_state_and_keeps_only_the_refs_that_state_holds() -> None:
    slot = starting("worker-0", now=12.0)
    assert (slot.state, slot.ready_ref, slot.run_ref) == (
        SlotState.STARTING, "worker-0.ready", None,
    )  # fmt: skip
    assert (slot.started_at, slot.has_actor) == (12.0, True)
    slot.running("run")
    assert (slot.state, slot.ready_ref, slot.run_ref, slot.has_actor) == (
        SlotState.RUNNING, None, "run", True,
    )  # fmt: skip
    slot.drained("node-a", now=20.0, retry_at=25.0)
    assert (slot.state, slot.handle, slot.run_ref) == (SlotState.DRAINED, None, None)
    assert (slot.left_node, slot.drained_at, slot.retry_at) == ("node-a", 20.0, 25.0)
    assert (slot.has_actor, slot.awaits_restart) == (False, True)
    slot.starting(FakeHandle("worker-0"), "ready", 30.0)
    slot.failed(retry_at=35.0)
    assert (slot.state, slot.handle, slot.ready_ref, slot.retry_at) == (
        SlotState.FAILED, None, None, 35.0,
    )  # fmt: skip
    assert slot.awaits_restart
    handle = FakeHandle("worker-0")
    slot.starting(handle, "ready", 40.0)
    slot.stopped()
    assert (slot.state, slot.handle, slot.ready_ref) == (SlotState.STOPPED, handle, None)


@pytest.mark.parametrize(
    ("state", "move"),
    [
        (SlotState.NEW, lambda s: s.running("run")),
        (SlotState.NEW, lambda s: s.drained("", 0.0, 0.0)),
        (SlotState.RUNNING, lambda s: s.starting(FakeHandle("w"), "ready", 0.0)),
        (SlotState.STOPPED, lambda s: s.starting(FakeHandle("w"), "ready", 0.0)),
        (SlotState.FAILED, lambda s: s.running("run")),
    ],
)
def test_a_move_the_transitions_do_not_allow_raises_naming_the_slot(
    state: SlotState, move: Any
) -> None:
    assert state in TRANSITIONS
    slot = Slot("worker-3", state=state)
    with pytest.raises(StreamlabelError, match="worker-3: no move from"):
        move(slot)
    assert slot.state is state


def test_every_state_can_be_stopped_and_stopped_is_final() -> None:
    assert all(SlotState.STOPPED in TRANSITIONS[s] for s in SlotState)
    assert TRANSITIONS[SlotState.STOPPED] == {SlotState.STOPPED}


# -------------------------------------------------------------- Ray calls
def test_await_ready_starts_the_loops_of_ready_actors(fake_ray: FakeRay) -> None:
    slots = [starting("learner"), starting("worker-0")]
    fake_ray.results = {"learner.ready": True, "worker-0.ready": True}
    await_ready(slots, 10.0)
    assert [s.state for s in slots] == [SlotState.RUNNING, SlotState.RUNNING]
    assert [s.run_ref for s in slots] == ["learner.run", "worker-0.run"]


def test_await_ready_kills_every_actor_and_raises_the_actors_own_error(
    fake_ray: FakeRay,
) -> None:
    slots = [starting("learner"), starting("worker-0")]
    failure = RuntimeError("ray task error")
    failure.cause = SettingsError("model.path is wrong")  # type: ignore[attr-defined]
    fake_ray.results = {"learner.ready": True, "worker-0.ready": failure}
    with pytest.raises(SettingsError, match=r"worker-0 could not start: model\.path is wrong"):
        await_ready(slots, 10.0)
    assert fake_ray.killed == [s.handle for s in slots]


def test_await_ready_raises_a_broker_error_as_is_and_wraps_any_other(fake_ray: FakeRay) -> None:
    fake_ray.results = {"worker-0.ready": BrokerError("no broker")}
    with pytest.raises(BrokerError, match=r"^no broker$"):
        await_ready([starting("worker-0")], 10.0)
    fake_ray.results = {"worker-0.ready": OSError("gone")}
    with pytest.raises(StreamlabelError, match="worker-0 could not start: gone"):
        await_ready([starting("worker-0")], 10.0)


def test_poll_ready_yields_ready_failed_and_late_slots_only(fake_ray: FakeRay) -> None:
    ready, broken, late, waiting = (
        starting("worker-0", now=100.0),
        starting("worker-1", now=100.0),
        starting("worker-2", now=10.0),
        starting("worker-3", now=100.0),
    )
    fake_ray.results = {"worker-0.ready": True, "worker-1.ready": RuntimeError("no model")}
    got = [(s.name, error) for s, error in poll_ready([ready, broken, late, waiting], 120.0, 60.0)]
    assert got == [
        ("worker-0", ""),
        ("worker-1", "no model"),
        ("worker-2", "not ready after 60s (supervisor.worker_start_timeout_s)"),
    ]


def test_loop_end_tells_a_drain_from_a_failure(fake_ray: FakeRay) -> None:
    fake_ray.results = {
        "drained": {"items": 3, "drained": True, "node_id": "node-a"},
        "returned": {"items": 3, "drained": False},
        "died": RuntimeError("x" * 600),
    }
    assert loop_end("drained") == LoopEnd(drained=True, node_id="node-a")
    assert loop_end("returned") == LoopEnd(
        drained=False, error="the loop returned without being stopped"
    )
    died = loop_end("died")
    assert not died.drained
    assert died.error == "RuntimeError: ..." + "x" * 500


def test_stop_slot_stops_the_loop_waits_for_it_and_kills_the_actor(fake_ray: FakeRay) -> None:
    slot = running("worker-0")
    fake_ray.results = {"worker-0.run": {"drained": False}}
    stop_slot(slot, 1.0)
    assert "stop" in slot.handle.calls
    assert (slot.state, slot.run_ref) == (SlotState.STOPPED, None)
    assert fake_ray.killed == [slot.handle]


def test_a_drained_slot_waits_while_its_node_is_alive_at_most_wait_s(fake_ray: FakeRay) -> None:
    slot = running("worker-0")
    slot.drained("node-a", now=0.0, retry_at=5.0)
    fake_ray.alive = {"node-a": True}
    assert slot.left_node_alive(now=10.0, wait_s=60.0)
    fake_ray.alive = {"node-a": True, "error": True}  # the GCS is busy: still waiting
    assert slot.left_node_alive(now=10.0, wait_s=60.0)
    assert not slot.left_node_alive(now=60.0, wait_s=60.0)
    assert slot.left_node == ""
    slot.left_node = "node-b"
    fake_ray.alive = {"node-b": False}
    assert not slot.left_node_alive(now=61.0, wait_s=600.0)
    assert slot.left_node == ""


def test_an_exhausted_slot_has_no_actor_and_awaits_its_retry() -> None:
    slot = running("worker-0")
    slot.live_ref = "worker-0.live"
    slot.exhausted(retry_at=700.0)
    assert (slot.state, slot.handle, slot.run_ref, slot.live_ref, slot.retry_at) == (
        SlotState.EXHAUSTED, None, None, None, 700.0,
    )  # fmt: skip
    assert (slot.has_actor, slot.awaits_restart) == (False, True)
    slot.starting(FakeHandle("worker-0"), "ready", 700.0)
    assert slot.state is SlotState.STARTING
    with pytest.raises(StreamlabelError, match="no move from STARTING to EXHAUSTED"):
        slot.exhausted(retry_at=800.0)  # a failed start is not a spent restart


def test_poll_liveness_asks_without_waiting_and_yields_the_hung(fake_ray: FakeRay) -> None:
    stalled, fine, silent = running("worker-0"), running("worker-1"), running("worker-2")
    slots = [stalled, fine, silent]
    assert list(poll_liveness(slots, now=100.0, every_s=10.0, stall_s=60.0)) == []
    assert [s.live_ref for s in slots] == ["worker-0.live", "worker-1.live", "worker-2.live"]
    fake_ray.results = {
        "worker-0.live": (False, "no step for 70s (metrics.stall_s=60)"),
        "worker-1.live": (True, "ok"),
    }
    got = list(poll_liveness(slots, now=101.0, every_s=10.0, stall_s=60.0))
    assert got == [(stalled, "no step for 70s (metrics.stall_s=60)")]
    assert (fine.live_ref, silent.live_ref) == (None, "worker-2.live")
    assert list(poll_liveness(slots, now=105.0, every_s=10.0, stall_s=60.0)) == []
    assert fine.handle.calls.count("live") == 1  # asked again only every_s later
    late = list(poll_liveness(slots, now=161.0, every_s=10.0, stall_s=60.0))
    assert [(s.name, why) for s, why in late] == [
        ("worker-2", "no answer to a liveness check for 61s (metrics.stall_s)"),
    ]
    assert stalled.handle.calls.count("live") == 2  # asked again: read at the next call


def test_poll_liveness_leaves_an_actor_that_died_to_its_loop_end(fake_ray: FakeRay) -> None:
    slot = running("worker-0")
    list(poll_liveness([slot], now=100.0, every_s=10.0, stall_s=60.0))
    fake_ray.results = {"worker-0.live": RuntimeError("actor died")}
    assert list(poll_liveness([slot], now=101.0, every_s=10.0, stall_s=60.0)) == []
    assert slot.live_ref is None
