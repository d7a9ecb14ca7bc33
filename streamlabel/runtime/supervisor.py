"""The supervisor: starts the broker (if needed), Ray, the learner and the workers.

It restarts an actor whose loop died or hung (a restarted worker resumes from
its group's committed offsets, a restarted learner from its snapshot) within
a restart budget per window (:mod:`~streamlabel.runtime.restarts`), gathers
progress, scales the worker group, and stops everything gracefully: workers
first (finish the batch, flush, commit, close), then the learner (publish,
snapshot, commit), then Ray and the embedded broker if it started them. Each
actor lives in a :class:`~streamlabel.runtime.slots.Slot` whose state says
where it is. :meth:`Runtime.check` never waits on an actor: a relaunched one
starts in the background while the others are supervised.

A slot that exhausts its budget is reported (an ``actor_restarts_exhausted``
error log, ``streamlabel_slot_exhausted`` and ``streamlabel_degraded`` on the
driver's ``/metrics``, :meth:`Runtime.health`) and tried again a window later;
the rest keeps running. That holds for the learner too: without it nothing
learns (feedback and unknowns wait on their topics, no class is discovered,
no drift alert is raised), but the stream workers keep labelling against
their replica of the store, which is the service the deployment exists for.
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

from streamlabel.errors import BrokerError
from streamlabel.kafka.broker import EmbeddedBroker
from streamlabel.kafka.broker_watch import BrokerWatch, reset_scope
from streamlabel.kafka.publisher import Publisher
from streamlabel.kafka.topics import Topics, ensure_topics
from streamlabel.pipeline.output import EngineOutput
from streamlabel.runtime.placement import create_embedder, create_learner, create_worker
from streamlabel.runtime.progress import Observation, ProgressMeter
from streamlabel.runtime.ray_env import init_ray, ray_address
from streamlabel.runtime.restarts import RestartPolicy
from streamlabel.runtime.slots import Slot, await_ready, stop_slot
from streamlabel.runtime.startup import (
    StepReporter,
    await_started,
    check_model,
    check_resources,
    no_steps,
    wait_for_topics,
)
from streamlabel.runtime.supervision import Supervision
from streamlabel.schemas import DriftAlert
from streamlabel.settings.runtime import RuntimeSettings
from streamlabel.workers.embedding import RemoteEmbedder
from streamlabel.workers.learner import Learner
from streamlabel.workers.stream_worker import StreamWorker

__all__ = ["ALERT_FLUSH_S", "ActorClasses", "Runtime"]

log = structlog.get_logger(__name__)

ALERT_FLUSH_S = 2.0
"""How long the supervisor waits for an operational alert's delivery (it blocks a round)."""


@dataclass(frozen=True)
class ActorClasses:
    """The actor classes a :class:`Runtime` starts (the chaos suite brings subclasses)."""

    worker: type[StreamWorker] = StreamWorker
    learner: type[Learner] = Learner


class Runtime(Observation, Supervision):
    """The supervisor of the whole deployment, as a context manager.

    Args:
        settings: validated runtime settings; without ``kafka.bootstrap_servers``
            an embedded broker is started.
        actors: the stream worker and learner classes to start.
        embedded_port: the embedded broker's port (a free one when None).
        on_step: told each start-up step as it begins (the CLI prints them).
    """

    def __init__(
        self,
        settings: RuntimeSettings,
        actors: ActorClasses | None = None,
        *,
        embedded_port: int | None = None,
        on_step: StepReporter | None = None,
    ) -> None:
        self.settings = settings
        self._step = on_step or no_steps
        self.actors = actors or ActorClasses()
        self.embedded_port = embedded_port
        """The embedded broker's port (None: a free one), without kafka.bootstrap_servers."""
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
        self.learner_resets = 0  # the resets the learner acts on: its broker generation
        self._policy = RestartPolicy.of(settings.supervisor)
        self._alerts: Publisher | None = None  # operational alerts (made on first use)

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
            self._step("starting the embedded broker")
            self.broker = EmbeddedBroker(port=self.embedded_port).start()
            kafka = kafka.model_copy(update={"bootstrap_servers": self.broker.bootstrap_servers})
        learner = s.learner
        if learner.state_dir is None:
            self._temp_state = tempfile.mkdtemp(prefix="streamlabel-state-")
            learner = learner.model_copy(update={"state_dir": self._temp_state})
        self.settings = s = s.model_copy(update={"kafka": kafka, "learner": learner})
        self._step("creating the topics")
        wait_for_topics(s, self.topics)
        self._watch = BrokerWatch(s.kafka, self.topics)
        self._watch.baseline()
        address = ray_address(s)
        self._step(f"joining Ray at {address}" if address else "starting Ray")
        self._started_ray = init_ray(s)
        if self._started_ray:  # a shared or autoscaling cluster is the operator's to size
            check_resources(s)
        n = s.supervisor.workers
        self._step(f"starting the learner and {n} stream worker{'s' * (n != 1)} (model)")
        self._start_embedder()
        self.learner = Slot("learner")
        self._create_learner(self.learner)
        new = [self._new_worker_slot() for _ in range(s.supervisor.workers)]
        for slot in new:
            self._create_worker(slot)
        await_started([self.learner, *new], timeout_s, self._step)  # all load the model at once
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
            self.actors.learner, self.settings, self._embedder, self.learner_resets
        )
        slot.starting(handle, handle.ready.remote(), time.monotonic())

    def _create_worker(self, slot: Slot) -> None:
        """Creates a worker's actor and asks it ``ready()`` (the slot is STARTING)."""
        learner = self.learner.handle if self.learner else None
        handle = create_worker(
            self.actors.worker, self.settings, slot.name, learner, self._embedder
        )
        slot.starting(handle, handle.ready.remote(), time.monotonic())

    def _begin_learner(self, slot: Slot) -> None:
        """Creates the learner's actor without waiting for it (:meth:`_check_starting`
        starts its loop and hands it to the workers)."""
        self._create_learner(slot)

    def _launch_worker(self, slot: Slot, timeout_s: float) -> None:
        self._create_worker(slot)
        await_ready([slot], timeout_s)

    def _begin_worker(self, slot: Slot) -> None:
        """Creates a worker's actor without waiting for it (:meth:`check` starts its
        loop once it is ready): the supervisor keeps supervising while a pod is added."""
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

    # ----------------------------------------------------------------- broker
    def check_broker(self, *, force: bool = False) -> list[str]:
        """Detects topics that were recreated or lost and recovers from it (at most every
        ``supervisor.broker_check_s`` unless ``force``); returns those topics.

        Recovery: create the topics again, then tell only the actors that read one of
        them (:func:`~streamlabel.kafka.broker_watch.reset_scope`). Workers, when
        ``items`` or ``classes`` is new, re-read the changelog and resume at a
        committed offset that still exists (else at the beginning); the learner,
        when ``feedback``, ``unknowns`` or ``classes`` is new, reads those inputs
        from their beginning, re-publishes every class when ``classes`` is new and
        raises a ``broker_reset`` alert. A new output topic (``labels``,
        ``alerts``, ``dlq``) replays nothing. What only the old topics held is gone.
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
        scope = reset_scope(self.topics, changed)
        if scope.learner:
            self.learner_resets += 1  # a learner started from now on knows of it
            if self.learner is not None and self.learner.has_actor:
                with contextlib.suppress(Exception):
                    self.learner.handle.broker_reset.remote(self.learner_resets, scope.learner)
        if scope.workers:
            for slot in (*self.workers, *self.pending):
                if slot.has_actor:
                    with contextlib.suppress(Exception):
                        slot.handle.broker_reset.remote()
        return changed

    def _alert(self, alert: DriftAlert) -> None:
        """Publishes an operational alert on ``alerts`` (best effort: the broker may be
        why actors fail; the supervisor's log and metrics say it too)."""
        if self.settings.kafka.bootstrap_servers is None:  # not started
            return
        try:
            if self._alerts is None:
                self._alerts = Publisher(self.settings.kafka, self.topics)
            self._alerts.publish(EngineOutput(alerts=[alert]))
            self._alerts.flush(timeout=ALERT_FLUSH_S)
        except Exception as exc:  # e.g. PublishError, BrokerError
            log.warning("alert_not_published", alert_id=alert.alert_id, error=str(exc)[:300])

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
        if self._alerts is not None:
            with contextlib.suppress(Exception):
                self._alerts.close(timeout=ALERT_FLUSH_S)
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
