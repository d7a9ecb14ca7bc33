"""One supervised actor's slot: its state, its Ray handles, its restarts.

A slot outlives the actors it holds: the supervisor starts a new actor in the
same slot when the old one died or was drained. Its state is explicit
(:class:`SlotState`) and changes only through the methods of :class:`Slot`,
which check each move against :data:`TRANSITIONS`:

* NEW → STARTING: its first actor is created and asked ``ready()``;
* STARTING → RUNNING: the actor is ready, its loop starts;
* STARTING → FAILED: a relaunched actor could not start (or not in time);
* RUNNING → FAILED: its loop died, hung, or returned without being stopped;
* RUNNING → EXHAUSTED: the same, with its restart budget spent
  (:mod:`~streamlabel.runtime.restarts`);
* RUNNING → DRAINED: its loop stopped for a drain (not a failure);
* FAILED, DRAINED, EXHAUSTED → STARTING: started again at ``retry_at`` (a
  drained one once the node it left is gone; an exhausted one a window later);
* FAILED, DRAINED, EXHAUSTED → FAILED: a relaunch failed before its actor was created;
* any → STOPPED: stopped by the supervisor, or given up.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from streamlabel.errors import BrokerError, StreamlabelError
from streamlabel.runtime.restarts import RestartBudget

__all__ = [
    "RELAUNCH_BACKOFF_S",
    "TRANSITIONS",
    "LoopEnd",
    "Slot",
    "SlotState",
    "await_ready",
    "loop_end",
    "poll_liveness",
    "poll_ready",
    "stop_slot",
]

log = structlog.get_logger(__name__)

RELAUNCH_BACKOFF_S = 5.0
"""Seconds between attempts to start an actor that could not start (Kafka away)."""


class SlotState(enum.Enum):
    """Where a supervised actor is in its life."""

    NEW = "new"
    """No actor yet."""
    STARTING = "starting"
    """Its actor is created and was asked ``ready()``, which has not returned yet."""
    RUNNING = "running"
    """Its loop runs (``run_ref``)."""
    FAILED = "failed"
    """No actor: its loop died or it could not start; started again at ``retry_at``."""
    DRAINED = "drained"
    """No actor: stopped by a drain (not a failure); started again at ``retry_at``
    once the node it left is gone."""
    EXHAUSTED = "exhausted"
    """No actor: it failed with its restart budget spent; reported, and started
    again at ``retry_at`` (a window later) while the rest keeps running."""
    STOPPED = "stopped"
    """Stopped by the supervisor, or given up: never started again."""


_S = SlotState
TRANSITIONS: dict[SlotState, frozenset[SlotState]] = {
    _S.NEW: frozenset({_S.STARTING, _S.STOPPED}),
    _S.STARTING: frozenset({_S.RUNNING, _S.FAILED, _S.STOPPED}),
    _S.RUNNING: frozenset({_S.DRAINED, _S.FAILED, _S.EXHAUSTED, _S.STOPPED}),
    _S.FAILED: frozenset({_S.STARTING, _S.FAILED, _S.STOPPED}),
    _S.DRAINED: frozenset({_S.STARTING, _S.FAILED, _S.STOPPED}),
    _S.EXHAUSTED: frozenset({_S.STARTING, _S.FAILED, _S.STOPPED}),
    _S.STOPPED: frozenset({_S.STOPPED}),
}
"""The moves :class:`Slot` allows, from each state."""


@dataclass
class Slot:
    """One supervised actor: its state, handle, refs and restarts.

    Attributes:
        name: ``learner`` or ``worker-<n>``, also the actor's worker id.
        state: where the actor is in its life.
        handle: the actor (STARTING and RUNNING; STOPPED keeps the killed one).
        ready_ref: its pending ``ready()`` (STARTING).
        run_ref: its loop's ``run()`` (RUNNING).
        restarts: failures restarted so far (a drain is not one).
        budget: its restarts within the window (:mod:`~streamlabel.runtime.restarts`).
        start_failures: failed starts since it last ran (each waits longer).
        hung: actors killed because their loop stopped stepping.
        started_at: when the current actor was created (monotonic seconds).
        retry_at: when to start it again (FAILED, DRAINED, EXHAUSTED).
        left_node: the node a drained actor left, until that node is gone or the
            wait is over.
        drained_at: when it was drained.
        live_ref: its pending liveness question (RUNNING, :func:`poll_liveness`).
        live_asked_at: when it was last asked.
    """

    name: str
    state: SlotState = SlotState.NEW
    handle: Any = None
    ready_ref: Any = None
    run_ref: Any = None
    restarts: int = 0
    budget: RestartBudget = field(default_factory=RestartBudget)
    start_failures: int = 0
    hung: int = 0
    started_at: float = 0.0
    retry_at: float = 0.0
    left_node: str = ""
    drained_at: float = 0.0
    live_ref: Any = None
    live_asked_at: float = 0.0

    @property
    def has_actor(self) -> bool:
        """True while an actor is starting or running in the slot."""
        return self.state in (SlotState.STARTING, SlotState.RUNNING)

    @property
    def awaits_restart(self) -> bool:
        """True while the slot has no actor and is to be started again."""
        return self.state in (SlotState.FAILED, SlotState.DRAINED, SlotState.EXHAUSTED)

    def starting(self, handle: Any, ready_ref: Any, now: float) -> None:
        """Its new actor was created and asked ``ready()``."""
        self._enter(SlotState.STARTING)
        self.handle, self.ready_ref, self.run_ref = handle, ready_ref, None
        self.started_at = self.live_asked_at = now
        self.live_ref = None

    def running(self, run_ref: Any) -> None:
        """Its actor is ready and its loop was started."""
        self._enter(SlotState.RUNNING)
        self.ready_ref, self.run_ref = None, run_ref

    def failed(self, retry_at: float) -> None:
        """Its actor died or could not start (the caller killed it)."""
        self._enter(SlotState.FAILED)
        self.handle = self.ready_ref = self.run_ref = self.live_ref = None
        self.retry_at = retry_at

    def exhausted(self, retry_at: float) -> None:
        """Its actor died with the restart budget spent (the caller killed it)."""
        self._enter(SlotState.EXHAUSTED)
        self.handle = self.ready_ref = self.run_ref = self.live_ref = None
        self.retry_at = retry_at

    def drained(self, node_id: str, now: float, retry_at: float) -> None:
        """Its loop stopped for a drain of ``node_id`` (the caller killed the actor)."""
        self._enter(SlotState.DRAINED)
        self.handle = self.ready_ref = self.run_ref = self.live_ref = None
        self.left_node = node_id
        self.drained_at = now
        self.retry_at = retry_at

    def stopped(self) -> None:
        """Stopped for good; ``handle`` keeps the actor for the caller to kill."""
        self._enter(SlotState.STOPPED)
        self.ready_ref = self.run_ref = self.live_ref = None

    def left_node_alive(self, now: float, wait_s: float) -> bool:
        """True while a drained actor's old node is alive and ``wait_s`` is not over."""
        if not self.left_node:
            return False
        if now - self.drained_at >= wait_s:
            self.left_node = ""
            return False
        import ray

        try:
            alive = any(n.get("NodeID") == self.left_node and n.get("Alive") for n in ray.nodes())
        except Exception:  # the GCS is busy: ask again at the next check
            return True
        if not alive:
            self.left_node = ""
        return alive

    def _enter(self, state: SlotState) -> None:
        if state not in TRANSITIONS[self.state]:
            raise StreamlabelError(f"{self.name}: no move from {self.state.name} to {state.name}")
        self.state = state


def await_ready(slots: list[Slot], timeout_s: float) -> None:
    """Waits until every starting actor is ready, then starts their loops.

    Raises:
        StreamlabelError: (the actor's own error type when it has one) naming the actor.
    """
    import ray

    refs = [(slot, slot.ready_ref) for slot in slots]
    deadline = time.monotonic() + timeout_s
    for slot, ref in refs:
        try:
            ray.get(ref, timeout=max(1.0, deadline - time.monotonic()))
        except Exception as exc:
            for other in slots:
                with contextlib.suppress(Exception):
                    ray.kill(other.handle)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, StreamlabelError):
                raise type(cause)(f"{slot.name} could not start: {cause}") from exc
            if isinstance(exc, BrokerError):
                raise
            raise StreamlabelError(f"{slot.name} could not start: {exc}") from exc
    for slot in slots:
        slot.running(slot.handle.run.remote())


def poll_ready(
    starting: list[Slot],
    now: float,
    limit_s: float,
    setting: str = "supervisor.worker_start_timeout_s",
) -> Iterator[tuple[Slot, str]]:
    """Yields each starting slot whose ``ready()`` returned or that is late (started
    more than ``limit_s``, the value of ``setting``, before ``now``), with why it
    failed ("" when ready). Never waits."""
    import ray

    done, _ = ray.wait([s.ready_ref for s in starting], num_returns=len(starting), timeout=0)
    done_ids = {id(ref) for ref in done}
    for slot in starting:
        ref = slot.ready_ref
        late = now - slot.started_at > limit_s
        if id(ref) not in done_ids and not late:
            continue
        error = f"not ready after {limit_s:g}s ({setting})" if late else ""
        if not error:
            try:
                ray.get(ref)
            except Exception as exc:
                error = str(exc)[-300:]
        yield slot, error


def poll_liveness(
    running: list[Slot], now: float, every_s: float, stall_s: float
) -> Iterator[tuple[Slot, str]]:
    """Asks each running actor whether its loop still steps, and yields the hung ones
    with why. Never waits: a question is asked every ``every_s`` and its answer read
    at a later call.

    Hung: the actor answered that its loop made no step for ``stall_s`` (its own
    ``/healthz`` bound, ``metrics.stall_s``), or it left a question unanswered that
    long. An actor that died is not reported here: its ``run_ref`` says how.
    """
    import ray

    asked = [s for s in running if s.live_ref is not None]
    answered: list[Any] = []
    if asked:
        answered, _ = ray.wait([s.live_ref for s in asked], num_returns=len(asked), timeout=0)
    for slot in running:
        ref = slot.live_ref
        if ref is None:
            if now - slot.live_asked_at >= every_s:
                slot.live_ref, slot.live_asked_at = slot.handle.live.remote(), now
            continue
        if not any(ref == done for done in answered):
            waited = now - slot.live_asked_at
            if waited > stall_s:
                yield slot, f"no answer to a liveness check for {waited:.0f}s (metrics.stall_s)"
            continue
        slot.live_ref = None
        try:
            alive, reason = ray.get(ref)
        except Exception:  # the actor died: its loop's end is read from run_ref
            continue
        if not alive:
            yield slot, str(reason)


@dataclass(frozen=True)
class LoopEnd:
    """How a supervised actor's loop ended: drained (leaving ``node_id``) or failed."""

    drained: bool
    node_id: str = ""
    error: str = ""


def loop_end(run_ref: Any) -> LoopEnd:
    """How the loop behind a finished ``run_ref`` ended."""
    import ray

    try:
        result = ray.get(run_ref)
    except Exception as exc:
        text = str(exc).strip()  # a Ray error: its banner, then the actor's traceback
        error = f"{type(exc).__name__}: ...{text[-500:]}" if len(text) > 500 else text
        return LoopEnd(drained=False, error=error)
    if isinstance(result, dict) and result.get("drained"):
        return LoopEnd(drained=True, node_id=str(result.get("node_id", "")))
    return LoopEnd(drained=False, error="the loop returned without being stopped")


def stop_slot(slot: Slot, timeout_s: float) -> None:
    """Asks an actor's loop to stop, waits for it, then kills the actor."""
    import ray

    with contextlib.suppress(Exception):
        slot.handle.stop.remote()
    if slot.run_ref is not None:
        try:
            ray.get(slot.run_ref, timeout=timeout_s)
        except Exception as exc:
            log.warning("actor_stop_failed", actor=slot.name, error=str(exc)[:300])
    slot.stopped()
    with contextlib.suppress(Exception):
        ray.kill(slot.handle)
