"""The deployment's progress: a snapshot of every actor's counters, the meter
that turns successive readings into rates, and the supervisor's readings of its
running deployment and the waits built on them."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from streamlabel.errors import StreamlabelError
from streamlabel.runtime.slots import Slot, SlotState

__all__ = ["Observation", "Progress", "ProgressMeter"]


@dataclass
class Progress:
    """A snapshot of the whole deployment."""

    elapsed_s: float
    items: int
    items_per_s: float
    lag: int
    unknowns: int
    dead_letters: int
    classes: int
    store_version: int
    alerts: int
    discovered: int
    restarts: int
    broker_resets: int = 0
    incidents: int = 0
    workers: list[dict[str, Any]] = field(default_factory=list)
    learner: dict[str, Any] = field(default_factory=dict)

    @property
    def unknown_rate(self) -> float:
        """Share of labelled items that were unknown at first label."""
        return self.unknowns / self.items if self.items else 0.0

    def line(self) -> str:
        """One readable progress line."""
        return (
            f"{self.elapsed_s:6.1f}s  items {self.items:>7}  {self.items_per_s:7.1f}/s  "
            f"lag {self.lag:>6}  unknown {self.unknown_rate:6.1%}  classes {self.classes:>3} "
            f"(+{self.discovered} found)  incidents {self.incidents}  dlq {self.dead_letters}  "
            f"restarts {self.restarts}"
            + (f"  broker resets {self.broker_resets}" if self.broker_resets else "")
        )

    def console_readings(self) -> dict[str, Any]:
        """What the web console shows of it: lag per partition (as the workers last
        reported it), restarts, workers, broker resets."""
        lag: dict[str, int] = {}
        for w in self.workers:
            lag.update(w.get("lag", {}))
        return {"lag": lag, "restarts": self.restarts, "workers": len(self.workers),
                "broker_resets": self.broker_resets}  # fmt: skip


class ProgressMeter:
    """Builds :class:`Progress` from the actors' stats, reading after reading.

    It keeps what one reading cannot know: the time and item count of the last
    reading (for the rate) and the last known lag of each partition (a
    partition nobody reports now, its worker restarting, keeps it).
    """

    def __init__(self) -> None:
        self._lag: dict[str, int] = {}  # last known lag per "topic:partition"
        self._t0 = time.monotonic()
        self._last: tuple[float, int] = (time.monotonic(), 0)

    def restart(self) -> None:
        """Counts time and rate from now (when the deployment is up)."""
        self._t0 = time.monotonic()
        self._last = (self._t0, 0)

    def reading(
        self,
        workers: list[dict[str, Any]],
        learner: dict[str, Any],
        *,
        restarts: int,
        broker_resets: int,
    ) -> Progress:
        """One snapshot from the running workers' and the learner's stats."""
        for w in workers:  # a partition nobody reports now keeps its last known lag
            self._lag.update(w["lag"])
        now = time.monotonic()
        items = sum(w["items"] for w in workers)
        t_prev, n_prev = self._last
        rate = (items - n_prev) / (now - t_prev) if now > t_prev and items >= n_prev else 0.0
        self._last = (now, items)
        return Progress(
            elapsed_s=now - self._t0,
            items=items,
            items_per_s=rate,
            lag=sum(self._lag.values()),
            unknowns=sum(w["unknowns"] for w in workers),
            dead_letters=sum(w["dead_letters"] for w in workers) + learner.get("dead_letters", 0),
            classes=learner.get("classes", 0),
            store_version=learner.get("store_version", 0),
            alerts=learner.get("alerts", 0),
            incidents=learner.get("incidents", 0),
            discovered=learner.get("discovered", 0),
            restarts=restarts,
            broker_resets=broker_resets,
            workers=workers,
            learner=learner,
        )


class Observation:
    """What the supervisor reads from its running deployment (progress, stats),
    and the waits built on those readings (mixed into
    :class:`~streamlabel.runtime.supervisor.Runtime`)."""

    learner: Slot | None
    workers: list[Slot]
    broker_resets: int
    _meter: ProgressMeter
    _embedder_actor: Any

    def _slots(self) -> list[Slot]:
        """The supervised slots: the learner's, then the workers'."""
        return [*([self.learner] if self.learner else []), *self.workers]

    def embedder_memory(self, timeout_s: float = 30.0) -> dict[str, int]:
        """The shared embedder actor's device memory in bytes (empty without the
        actor, or when it runs on CPU)."""
        import ray

        if self._embedder_actor is None:
            return {}
        return dict(ray.get(self._embedder_actor.memory.remote(), timeout=timeout_s))

    def progress(self, timeout_s: float = 10.0) -> Progress:
        """Gathers every actor's counters."""
        import ray

        workers: list[dict[str, Any]] = []
        for slot in self.workers:
            if slot.state is not SlotState.RUNNING:
                continue  # down, or starting (maybe waiting for a node): nothing to ask yet
            with contextlib.suppress(Exception):
                workers.append(ray.get(slot.handle.stats.remote(), timeout=timeout_s))
        learner: dict[str, Any] = {}
        if self.learner is not None and self.learner.state is SlotState.RUNNING:
            with contextlib.suppress(Exception):
                learner = ray.get(self.learner.handle.stats.remote(), timeout=timeout_s)
        return self._meter.reading(
            workers,
            learner,
            restarts=sum(s.restarts for s in self._slots()),
            broker_resets=self.broker_resets,
        )

    def supervisor_stats(self, progress: Progress) -> dict[str, Any]:
        """What the supervisor's ``/metrics`` shows of the deployment: besides the
        counts, each slot's restarts, hung actors killed and whether it is exhausted
        (``degraded`` while one is)."""
        slots = self._slots()
        exhausted = {slot.name: int(slot.state is SlotState.EXHAUSTED) for slot in slots}
        return {
            "workers": sum(slot.has_actor for slot in self.workers),
            "lag": progress.lag,
            "restarts": {slot.name: slot.restarts for slot in slots},
            "broker_resets": self.broker_resets,
            "hung": {slot.name: slot.hung for slot in slots},
            "exhausted": exhausted,
            "degraded": int(any(exhausted.values())),
        }

    def wait_until_learned(self, feedback: int, timeout_s: float = 300.0) -> int:
        """Waits until the learner has consumed ``feedback`` records and every worker
        applied the resulting store version; returns that version."""
        deadline = time.monotonic() + timeout_s
        while self.progress().learner.get("feedback", 0) < feedback:
            if time.monotonic() > deadline:
                raise StreamlabelError(f"the learner did not consume {feedback} feedback records")
            time.sleep(0.3)
        version = self.progress().store_version
        while not all(w["store_version"] >= version for w in self.progress().workers):
            if time.monotonic() > deadline:
                raise StreamlabelError(f"workers did not reach store version {version}")
            time.sleep(0.2)
        return version

    def wait_until_assigned(self, timeout_s: float = 60.0, quiet_s: float = 1.0) -> None:
        """Waits until the workers' group is stable: every running worker holds
        partitions of ``items``, no two the same, and no worker rebalanced for
        ``quiet_s``. A benchmark starts its clock after this: a join that lands
        in a measured backlog pauses it for the group's rebalance (seconds)."""
        deadline = time.monotonic() + timeout_s
        stable_since, last = time.monotonic(), None
        while True:
            workers = self.progress().workers
            held = [set(w.get("assigned", ())) for w in workers]
            state = [w.get("rebalances", 0) for w in workers]
            disjoint = sum(map(len, held)) == len(set().union(*held)) if held else False
            if state != last:
                stable_since, last = time.monotonic(), state
            if disjoint and all(held) and time.monotonic() - stable_since >= quiet_s:
                return
            if time.monotonic() > deadline:
                raise StreamlabelError(f"the workers' partitions did not settle: {held}")
            time.sleep(0.2)

    def settle(self, timeout_s: float = 120.0, quiet_s: float = 1.0) -> bool:
        """Waits until the learner has consumed everything published to it and is idle.

        Settled means: no lag on ``feedback``/``unknowns``, no discovery running or
        requested, and its counters unchanged for ``quiet_s`` (a fetch in flight
        can hide the newest records from the lag for a moment).
        """
        deadline = time.monotonic() + timeout_s
        last: tuple[int, int] | None = None
        since = time.monotonic()
        while time.monotonic() < deadline:
            learner = self.progress().learner
            now = (learner.get("unknowns", 0), learner.get("feedback", 0))
            if now != last:
                last, since = now, time.monotonic()
            calm = time.monotonic() - since >= quiet_s
            if calm and learner.get("lag", 1) == 0 and self.call_learner("idle"):
                return True
            time.sleep(0.2)
        return False

    def finish_discovery(self, runs: int = 2, timeout_s: float = 300.0) -> None:
        """At the end of a stream: lets discovery run ``runs`` more times on what is buffered.

        Raises:
            StreamlabelError: a run did not complete within ``timeout_s``.
        """
        for _ in range(runs):
            self.settle(timeout_s)
            before = int(self.call_learner("request_discovery"))
            deadline = time.monotonic() + timeout_s
            while self.progress().learner.get("discovery_runs", 0) <= before:
                if time.monotonic() > deadline:
                    raise StreamlabelError("a requested discovery run did not complete in time")
                time.sleep(0.3)

    def call_learner(self, method: str, *args: Any, timeout_s: float = 60.0) -> Any:
        """Calls a learner method (``classes``, ``request_discovery``...) and waits."""
        import ray

        if self.learner is None:
            raise StreamlabelError("the runtime is not started")
        return ray.get(getattr(self.learner.handle, method).remote(*args), timeout=timeout_s)
