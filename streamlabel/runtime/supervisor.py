"""The supervisor: starts the broker (if needed), Ray, the learner and the workers.

It restarts an actor whose loop died (up to ``supervisor.max_restarts`` times
each; a restarted worker resumes from its group's committed offsets, a
restarted learner from its snapshot), gathers progress, scales the worker
group, and stops everything gracefully: workers first (finish the batch,
flush, commit, close), then the learner (publish, snapshot, commit), then
Ray and the embedded broker if it started them. Each actor lives in a
:class:`~streamlabel.runtime.slots.Slot` whose state says where it is.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import structlog

from streamlabel.errors import BrokerError, StreamlabelError
from streamlabel.kafka.broker import EmbeddedBroker
from streamlabel.kafka.broker_watch import BrokerWatch
from streamlabel.kafka.topics import Topics, ensure_topics
from streamlabel.runtime.placement import create_embedder, create_learner, create_worker
from streamlabel.runtime.progress import Observation, ProgressMeter
from streamlabel.runtime.ray_env import init_ray
from streamlabel.runtime.slots import (
    RELAUNCH_BACKOFF_S,
    Slot,
    SlotState,
    await_ready,
    loop_end,
    poll_ready,
    stop_slot,
)
from streamlabel.runtime.startup import check_model, check_resources, wait_for_topics
from streamlabel.settings.runtime import RuntimeSettings
from streamlabel.workers.embedding import RemoteEmbedder
from streamlabel.workers.learner import Learner
from streamlabel.workers.stream_worker import StreamWorker

__all__ = ["ActorClasses", "Runtime"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ActorClasses:
    """The actor classes a :class:`Runtime` starts (the chaos suite brings subclasses)."""

    worker: type[StreamWorker] = StreamWorker
    learner: type[Learner] = Learner


class Runtime(Observation):
    """The supervisor of the whole deployment, as a context manager.

    Args:
        settings: validated runtime settings; without ``kafka.bootstrap_servers``
            an embedded broker is started.
        actors: the stream worker and learner classes to start.
    """

    def __init__(self, settings: RuntimeSettings, actors: ActorClasses | None = None) -> None:
        self.settings = settings
        self.actors = actors or ActorClasses()
        self.topics = Topics.of(settings.kafka)
        self.broker: EmbeddedBroker | None = None
        self._started_ray = False
        self._temp_state: str | None = None
        self._embedder: RemoteEmbedder | None = None
        self._embedder_actor: Any = None
        self.learner: Slot | None = None
        self.workers: list[Slot] = []
        self.pending: list[Slot] = []  # workers starting in the background
        self._next_worker = 0
        self._meter = ProgressMeter()
        self._stopped = False
        self._watch: BrokerWatch | None = None
        self._watched_at = 0.0
        self.broker_resets = 0

    # ------------------------------------------------------------------ start
    def start(self, timeout_s: float = 300.0) -> Runtime:
        """Starts everything and waits until every actor is ready.

        Raises:
            BrokerError: Kafka cannot be reached or started.
            StreamlabelError: an actor failed to start.
        """
        try:
            return self._start(timeout_s)
        except BaseException:
            self.stop()  # no broker, Ray, actor or temp dir left behind
            raise

    def _start(self, timeout_s: float) -> Runtime:
        s = self.settings
        check_model(s)
        kafka = s.kafka
        if kafka.bootstrap_servers is None:
            self.broker = EmbeddedBroker().start()
            kafka = kafka.model_copy(update={"bootstrap_servers": self.broker.bootstrap_servers})
        learner = s.learner
        if learner.state_dir is None:
            self._temp_state = tempfile.mkdtemp(prefix="streamlabel-state-")
            learner = learner.model_copy(update={"state_dir": self._temp_state})
        self.settings = s = s.model_copy(update={"kafka": kafka, "learner": learner})
        wait_for_topics(s, self.topics)
        self._watch = BrokerWatch(s.kafka, self.topics)
        self._watch.baseline()
        self._started_ray = init_ray(s)
        if self._started_ray:  # a shared or autoscaling cluster is the operator's to size
            check_resources(s)
        self._start_embedder()
        self.learner = Slot("learner")
        self._create_learner(self.learner)
        new = [self._new_worker_slot() for _ in range(s.supervisor.workers)]
        for slot in new:
            self._create_worker(slot)
        await_ready([self.learner, *new], timeout_s)  # all load their model at once
        self.workers.extend(new)
        self._meter.restart()
        log.info(
            "runtime_started",
            bootstrap_servers=s.kafka.bootstrap_servers,
            workers=len(self.workers),
            embedder="actor" if self._embedder else "local",
        )
        return self

    def _start_embedder(self) -> None:
        self._embedder_actor = create_embedder(self.settings, f"{self.topics.prefix}embedder")
        if self._embedder_actor is not None:
            self._embedder = RemoteEmbedder(self._embedder_actor)

    def _create_learner(self, slot: Slot) -> None:
        """Creates the learner's actor and asks it ``ready()`` (the slot is STARTING)."""
        handle = create_learner(
            self.actors.learner, self.settings, self._embedder, self.broker_resets
        )
        slot.starting(handle, handle.ready.remote(), time.monotonic())

    def _create_worker(self, slot: Slot) -> None:
        """Creates a worker's actor and asks it ``ready()`` (the slot is STARTING)."""
        learner = self.learner.handle if self.learner else None
        handle = create_worker(
            self.actors.worker, self.settings, slot.name, learner, self._embedder
        )
        slot.starting(handle, handle.ready.remote(), time.monotonic())

    def _launch_learner(self, slot: Slot, timeout_s: float) -> None:
        self._create_learner(slot)
        await_ready([slot], timeout_s)

    def _launch_worker(self, slot: Slot, timeout_s: float) -> None:
        self._create_worker(slot)
        await_ready([slot], timeout_s)

    def _begin_worker(self, slot: Slot) -> None:
        """Creates a worker's actor without waiting for it (:meth:`_check_pending`
        starts its loop): the supervisor keeps supervising while a pod is added."""
        self._create_worker(slot)

    def _new_worker_slot(self) -> Slot:
        slot = Slot(f"worker-{self._next_worker}")
        self._next_worker += 1
        return slot

    # ---------------------------------------------------------------- scaling
    def add_worker(self, timeout_s: float = 300.0) -> str:
        """Starts one more stream worker in the group; returns its id."""
        slot = self._new_worker_slot()
        self._launch_worker(slot, timeout_s)
        self.workers.append(slot)
        return slot.name

    def remove_worker(self, timeout_s: float = 60.0) -> str | None:
        """Stops the newest worker gracefully (its partitions move to the others); a
        worker still starting in the background goes first."""
        if self.pending:
            import ray

            slot = self.pending.pop()
            slot.stopped()
            with contextlib.suppress(Exception):
                ray.kill(slot.handle)
            return slot.name
        if not self.workers:
            return None
        slot = self.workers.pop()
        stop_slot(slot, timeout_s)
        return slot.name

    def start_worker(self) -> str:
        """Starts one more stream worker without waiting for it (:meth:`check` starts
        its loop once it is ready). On Kubernetes it may wait for KubeRay's autoscaler
        to add a pod."""
        slot = self._new_worker_slot()
        self._begin_worker(slot)
        self.pending.append(slot)
        log.info("worker_starting", actor=slot.name)
        return slot.name

    def worker_count(self) -> int:
        """Workers running or starting."""
        return len(self.workers) + len(self.pending)

    def _check_pending(self) -> list[str]:
        """Starts the loops of workers that became ready in the background (new ones and
        relaunched ones); gives up on those that failed or took too long."""
        import ray

        starting = [s for s in (*self.pending, *self.workers) if s.state is SlotState.STARTING]
        if not starting:
            return []
        started = []
        now = time.monotonic()
        limit = self.settings.supervisor.worker_start_timeout_s
        for slot, error in poll_ready(starting, now, limit):
            if error:
                log.warning("worker_start_failed", actor=slot.name, error=error)
                with contextlib.suppress(Exception):
                    ray.kill(slot.handle)
                if slot in self.pending:
                    self.pending.remove(slot)  # the autoscaler asks again if still needed
                    slot.stopped()
                else:  # a relaunch: try again later
                    slot.failed(retry_at=now + RELAUNCH_BACKOFF_S)
                continue
            slot.running(slot.handle.run.remote())
            if slot in self.pending:
                self.pending.remove(slot)
                self.workers.append(slot)
            started.append(slot.name)
            log.info("worker_running", actor=slot.name,
                     seconds=round(now - slot.started_at, 1))  # fmt: skip
        return started

    # -------------------------------------------------------------- supervise
    def check(self) -> list[str]:
        """Restarts actors whose loop ended unexpectedly; returns their names.

        Raises:
            StreamlabelError: an actor died more than ``supervisor.max_restarts`` times.
        """
        import ray

        self.check_broker()
        self._check_pending()
        restarted = []
        now = time.monotonic()
        wait_s = self.settings.supervisor.drained_node_wait_s
        for slot in self._slots():  # after a drain or a failed relaunch
            due = slot.awaits_restart and now >= slot.retry_at
            if due and not slot.left_node_alive(time.monotonic(), wait_s) and self._relaunch(slot):
                restarted.append(slot.name)
        refs = {id(s.run_ref): s for s in self._slots() if s.state is SlotState.RUNNING}
        if not refs:
            return restarted
        done, _ = ray.wait([s.run_ref for s in refs.values()], num_returns=len(refs), timeout=0)
        for ref in done:
            slot = next(s for s in refs.values() if s.run_ref == ref)
            end = loop_end(ref)
            if end.drained:
                self._drained(slot, end.node_id)
                continue
            if slot.restarts >= self.settings.supervisor.max_restarts:
                raise StreamlabelError(f"{slot.name} failed {slot.restarts + 1} times: {end.error}")
            slot.restarts += 1
            log.warning("actor_restart", actor=slot.name, restarts=slot.restarts, error=end.error)
            with contextlib.suppress(Exception):
                ray.kill(slot.handle)
            slot.failed(retry_at=now)  # due at once
            if self._relaunch(slot):
                restarted.append(slot.name)
        return restarted

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

    def _relaunch(self, slot: Slot) -> bool:
        """Starts a dead actor again; a failure to start is retried at the next check.

        Returns:
            True when the actor is running again (a worker: starting in the background).
        """
        try:
            if slot is self.learner:
                self._launch_learner(slot, 300.0)
                for w in self.workers:
                    if w.has_actor:  # a worker down now gets it when relaunched
                        w.handle.set_learner.remote(slot.handle)
            else:
                self._begin_worker(slot)  # its loop starts at a later check, once ready
        except StreamlabelError as exc:  # e.g. BrokerError: Kafka is not back yet
            slot.failed(retry_at=time.monotonic() + RELAUNCH_BACKOFF_S)
            log.warning("actor_relaunch_failed", actor=slot.name, error=str(exc)[-300:])
            return False
        return True

    def check_broker(self, *, force: bool = False) -> list[str]:
        """Detects a broker that lost its topics and recovers from it (at most every
        ``supervisor.broker_check_s`` unless ``force``); returns the topics it found
        recreated or missing.

        Recovery: create the topics again, then tell every actor. Workers re-read
        the changelog and resume at a committed offset that still exists (else at
        the beginning); the learner reads its inputs from the beginning,
        re-publishes every class from its own state and raises a
        ``broker_reset`` alert. What only the old broker held is gone.
        """
        now = time.monotonic()
        if self._watch is None or (
            not force and now - self._watched_at < self.settings.supervisor.broker_check_s
        ):
            return []
        self._watched_at = now
        changed = self._watch.changed()
        if not changed:
            return []
        log.error("broker_reset_detected", topics=changed)
        try:
            ensure_topics(self.settings.kafka, self.topics, strict=False)
        except BrokerError as exc:
            log.warning("topics_not_recreated", error=str(exc)[:300])
            return []  # next check tries again
        self._watch.baseline()
        self.broker_resets += 1
        if self.learner is not None and self.learner.has_actor:
            with contextlib.suppress(Exception):
                self.learner.handle.broker_reset.remote(self.broker_resets)
        for slot in self.workers:
            if slot.has_actor:
                with contextlib.suppress(Exception):
                    slot.handle.broker_reset.remote()
        return changed

    # ------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Graceful shutdown: workers, then learner, then Ray and the embedded broker."""
        if self._stopped:
            return
        self._stopped = True
        timeout = self.settings.supervisor.stop_timeout_s
        import ray

        if ray.is_initialized():
            for slot in self.pending:
                slot.stopped()
                with contextlib.suppress(Exception):
                    ray.kill(slot.handle)
            self.pending.clear()
            for slot in self.workers:
                with contextlib.suppress(Exception):
                    slot.handle.stop.remote()
            deadline = time.monotonic() + timeout  # one deadline: they stop side by side
            for slot in self.workers:
                stop_slot(slot, max(1.0, deadline - time.monotonic()))
            if self.learner is not None:  # its last snapshot after the workers' last batches
                stop_slot(self.learner, max(10.0, timeout / 2))
            if self._embedder_actor is not None:
                with contextlib.suppress(Exception):
                    ray.kill(self._embedder_actor)
            if self._started_ray:
                ray.shutdown()
        if self._watch is not None:
            self._watch.close()
        if self.broker is not None:
            self.broker.stop()
        if self._temp_state is not None:
            shutil.rmtree(self._temp_state, ignore_errors=True)
        log.info("runtime_stopped")

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
