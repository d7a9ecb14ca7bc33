"""The supervisor's rounds (:meth:`Supervision.check`): every actor supervised, none waited on.

Each round starts the loops of actors that became ready in the background,
reads how the loops that ended did (drained, or failed), asks each running
actor whether its loop still steps (:func:`~streamlabel.runtime.slots.poll_liveness`)
and kills the hung ones, and starts again the slots that are due. A failure
spends the slot's restart budget (:mod:`~streamlabel.runtime.restarts`); past
it the slot is exhausted: reported and tried again a window later while the
rest keeps running. A relaunched actor, the learner included, starts in the
background: ``check`` never blocks on one slot while the others need it.
"""

from __future__ import annotations

import contextlib
import time
from time import time as wall_clock  # epoch seconds (``time`` is replaced in tests)
from typing import Any

import structlog

from streamlabel.errors import StreamlabelError
from streamlabel.pipeline.records import actor_exhausted_alert
from streamlabel.runtime.restarts import RestartPolicy
from streamlabel.runtime.slots import (
    RELAUNCH_BACKOFF_S,
    Slot,
    SlotState,
    loop_end,
    poll_liveness,
    poll_ready,
)
from streamlabel.schemas import DriftAlert
from streamlabel.settings.runtime import RuntimeSettings

__all__ = ["Supervision"]

log = structlog.get_logger(__name__)


class Supervision:
    """The supervisor's rounds over its slots (mixed into
    :class:`~streamlabel.runtime.supervisor.Runtime`, which creates the actors)."""

    settings: RuntimeSettings
    learner: Slot | None
    workers: list[Slot]
    pending: list[Slot]
    _policy: RestartPolicy

    def _slots(self) -> list[Slot]:
        raise NotImplementedError

    def _begin_learner(self, slot: Slot) -> None:
        raise NotImplementedError

    def _begin_worker(self, slot: Slot) -> None:
        raise NotImplementedError

    def check_broker(self, *, force: bool = False) -> list[str]:
        raise NotImplementedError

    def _alert(self, alert: DriftAlert) -> None:
        raise NotImplementedError

    def _check_starting(self, now: float) -> list[str]:
        """Starts the loops of actors that became ready in the background (new workers,
        relaunched workers and learner); gives up on those that failed or took too long."""
        import ray

        starting = [s for s in (*self.pending, *self._slots()) if s.state is SlotState.STARTING]
        if not starting:
            return []
        sup = self.settings.supervisor
        learner = [s for s in starting if s is self.learner]
        workers = [s for s in starting if s is not self.learner]
        polled = [
            *poll_ready(learner, now, sup.learner_start_timeout_s,
                        "supervisor.learner_start_timeout_s"),
            *poll_ready(workers, now, sup.worker_start_timeout_s),
        ]  # fmt: skip
        started = []
        for slot, error in polled:
            if error:
                log.warning("actor_start_failed", actor=slot.name, error=error)
                with contextlib.suppress(Exception):
                    ray.kill(slot.handle)
                if slot in self.pending:
                    self.pending.remove(slot)  # the autoscaler asks again if still needed
                    slot.stopped()
                else:  # a relaunch: try again later
                    self._start_failed(slot, now)
                continue
            slot.running(slot.handle.run.remote())
            if slot in self.pending:
                self.pending.remove(slot)
                self.workers.append(slot)
            self._now_running(slot)
            started.append(slot.name)
            log.info("actor_running", actor=slot.name,
                     seconds=round(now - slot.started_at, 1))  # fmt: skip
        return started

    def _now_running(self, slot: Slot) -> None:
        """A (re)started actor's loop runs: a learner is handed to the workers."""
        slot.start_failures = 0
        if slot is self.learner:
            for w in (*self.workers, *self.pending):
                if w.has_actor:  # a worker down now gets it when relaunched
                    with contextlib.suppress(Exception):
                        w.handle.set_learner.remote(slot.handle)

    def _start_failed(self, slot: Slot, now: float) -> None:
        """A relaunch could not start: tried again after a backoff growing with each
        failed start (not a restart: Kafka or a node may simply not be back yet)."""
        slot.start_failures += 1
        wait = max(RELAUNCH_BACKOFF_S, self._policy.backoff(slot.start_failures))
        slot.failed(retry_at=now + wait)

    def check(self) -> list[str]:
        """Supervises every actor once, without waiting on any; returns the names of
        those (re)started.

        Starts the loops of actors that became ready; restarts those whose loop
        ended unexpectedly or hung (no step for ``metrics.stall_s``) within their
        restart budget, and sets aside (exhausted) those past it; starts again the
        drained ones and those whose backoff is over. Never raises for an actor.
        """
        self.check_broker()
        now = time.monotonic()
        self._check_starting(now)
        self._check_loops(now)
        sup = self.settings.supervisor
        running = [s for s in self._slots() if s.state is SlotState.RUNNING]
        for slot, reason in poll_liveness(running, now, sup.liveness_check_s,
                                          self.settings.metrics.stall_s):  # fmt: skip
            slot.hung += 1
            log.error("actor_hung", actor=slot.name, reason=reason)
            self._failed(slot, f"hung: {reason}", now)
        restarted = []
        for slot in self._slots():  # failed, drained, exhausted: when due
            due = slot.awaits_restart and now >= slot.retry_at
            ready = due and not slot.left_node_alive(now, sup.drained_node_wait_s)
            if ready and self._relaunch(slot, now):
                restarted.append(slot.name)
        return restarted

    def _check_loops(self, now: float) -> None:
        """Reads how the loops that ended did: drained, or failed."""
        import ray

        running = [s for s in self._slots() if s.state is SlotState.RUNNING]
        if not running:
            return
        done, _ = ray.wait([s.run_ref for s in running], num_returns=len(running), timeout=0)
        for ref in done:
            slot = next(s for s in running if s.run_ref == ref)
            end = loop_end(ref)
            if end.drained:
                self._drained(slot, end.node_id)
            else:
                self._failed(slot, end.error, now)

    def _failed(self, slot: Slot, error: str, now: float) -> None:
        """Kills a failed or hung actor; restarts it within its budget, after its backoff,
        else sets it aside (exhausted) for a window, reported, the rest running on."""
        import ray

        with contextlib.suppress(Exception):
            ray.kill(slot.handle)
        retry_at = self._policy.restart(slot.budget, now)
        if retry_at is None:
            retry_at = self._policy.retry_exhausted(now)
            slot.exhausted(retry_at)
            log.error(
                "actor_restarts_exhausted", actor=slot.name, restarts=slot.restarts,
                max_restarts=self._policy.max_restarts, window_s=self._policy.window_s,
                retry_in_s=round(retry_at - now, 1), error=error,
            )  # fmt: skip
            self._alert(
                actor_exhausted_alert(
                    actor=slot.name, max_restarts=self._policy.max_restarts,
                    window_s=self._policy.window_s, retry_in_s=retry_at - now,
                    error=error[-500:], now=wall_clock(),
                )
            )  # fmt: skip
            return
        slot.restarts += 1
        slot.failed(retry_at)
        log.warning("actor_restart", actor=slot.name, restarts=slot.restarts,
                    in_s=round(retry_at - now, 1), error=error)  # fmt: skip

    def _drained(self, slot: Slot, node_id: str = "") -> None:
        """An actor stopped by ``POST /drain`` (its pod is going away): not a failure.

        It is started again once the node it left is gone (or after
        ``supervisor.drained_node_wait_s``): the terminating pod is often the only
        one with room, and an actor placed there would die with it.
        """
        import ray

        log.info("actor_drained", actor=slot.name, node_id=node_id[:12])
        with contextlib.suppress(Exception):
            ray.kill(slot.handle)
        now = time.monotonic()
        slot.drained(node_id, now, retry_at=now + RELAUNCH_BACKOFF_S)

    def _relaunch(self, slot: Slot, now: float) -> bool:
        """Starts a dead actor again in the background (its loop starts at a later
        check, once ready); a failure to start is retried after a backoff.

        Returns:
            True when its actor was created.
        """
        if slot.state is SlotState.EXHAUSTED:  # a window later: its budget is back
            self._policy.restart(slot.budget, now)
            slot.restarts += 1
            log.warning("actor_retried_after_exhaustion", actor=slot.name, restarts=slot.restarts)
        try:
            if slot is self.learner:
                self._begin_learner(slot)
            else:
                self._begin_worker(slot)
        except StreamlabelError as exc:  # e.g. BrokerError: Kafka is not back yet
            self._start_failed(slot, now)
            log.warning("actor_relaunch_failed", actor=slot.name, error=str(exc)[-300:])
            return False
        if slot.state is SlotState.RUNNING:  # started at once (a test's fake launch)
            self._now_running(slot)
        return True

    def health(self) -> dict[str, Any]:
        """The deployment's health: ``degraded`` while a slot is exhausted (it is
        tried again a window later; the rest keeps running), and every slot's state."""
        exhausted = [s.name for s in self._slots() if s.state is SlotState.EXHAUSTED]
        return {
            "degraded": bool(exhausted),
            "exhausted": exhausted,
            "slots": {s.name: s.state.value for s in (*self._slots(), *self.pending)},
        }
