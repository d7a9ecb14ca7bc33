"""The supervisor: starts the broker (if needed), Ray, the learner and the workers.

It restarts an actor whose loop died (up to ``runtime.max_restarts`` times
each; a restarted worker resumes from its group's committed offsets, a
restarted learner from its snapshot), gathers progress, scales the worker
group, and stops everything gracefully: workers first (finish the batch,
flush, commit, close), then the learner (publish, snapshot, commit), then
Ray and the embedded broker if it started them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from streamlabel.errors import BrokerError, SettingsError, StreamlabelError
from streamlabel.kafka.broker import EmbeddedBroker
from streamlabel.kafka.broker_watch import BrokerWatch
from streamlabel.kafka.topics import Topics, ensure_topics
from streamlabel.settings.runtime import RuntimeSettings
from streamlabel.workers.embedding import EmbedderActor, RemoteEmbedder, resolve_embedder_mode
from streamlabel.workers.learner import Learner
from streamlabel.workers.stream_worker import StreamWorker

__all__ = ["ActorClasses", "Progress", "Runtime", "init_ray"]

log = structlog.get_logger(__name__)

RELAUNCH_BACKOFF_S = 5.0
"""Seconds between attempts to start an actor that could not start (Kafka away)."""

_ACTOR_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


def init_ray(settings: RuntimeSettings) -> bool:
    """Connects to ``ray.address``/``RAY_ADDRESS`` or starts a local Ray on loopback only.

    A local Ray is single-node: every Ray process (GCS, raylet, workers, agents)
    listens on 127.0.0.1 only. Ray rewrites a node IP of 127.0.0.1 to the
    machine's external address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    (its single-node mode, the default on macOS and Windows), so that is set
    for this process and the Ray processes it starts.

    Returns:
        True when this call started (and so must shut down) Ray.
    """
    address = settings.ray.address or os.environ.get("RAY_ADDRESS")
    if not address:
        _loopback_only()
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        runtime_env = {"env_vars": dict(_ACTOR_ENV)}
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
    else:
        for key, value in _ACTOR_ENV.items():  # local workers inherit the driver's env
            os.environ.setdefault(key, value)
        ray.init(
            address="local",  # a new local instance, never one a `ray start` left behind
            _node_ip_address="127.0.0.1",
            include_dashboard=settings.ray.include_dashboard,
            num_cpus=settings.ray.num_cpus,
            log_to_driver=True,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    return True


def _loopback_only() -> None:
    """Keeps a local Ray on 127.0.0.1 (see :func:`init_ray`)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # Ray was imported before the variable was set
        constants.ENABLE_RAY_CLUSTER = False  # type: ignore[attr-defined]


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
            f"(+{self.discovered} found)  alerts {self.alerts}  dlq {self.dead_letters}  "
            f"restarts {self.restarts}"
            + (f"  broker resets {self.broker_resets}" if self.broker_resets else "")
        )


@dataclass
class _Slot:
    """One supervised actor: its handle, its loop's ref, its restarts."""

    name: str
    handle: Any = None
    run_ref: Any = None
    restarts: int = 0
    retry_at: float = 0.0  # after a failed relaunch or a drain: when to start it again
    ready_ref: Any = None  # a worker starting in the background (autoscaling, relaunch)
    started_at: float = 0.0
    left_node: str = ""  # the node a drained actor left: not started again until it is gone
    drained_at: float = 0.0


@dataclass(frozen=True)
class ActorClasses:
    """The actor classes a :class:`Runtime` starts (the chaos suite brings subclasses)."""

    worker: type[StreamWorker] = StreamWorker
    learner: type[Learner] = Learner


class Runtime:
    """The whole deployment, as a context manager.

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
        self.learner: _Slot | None = None
        self.workers: list[_Slot] = []
        self.pending: list[_Slot] = []  # workers starting in the background
        self._lag: dict[str, int] = {}  # last known lag per "topic:partition"
        self._next_worker = 0
        self._t0 = time.monotonic()
        self._last: tuple[float, int] = (time.monotonic(), 0)
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
        _check_model(s)
        kafka = s.kafka
        if kafka.bootstrap_servers is None:
            self.broker = EmbeddedBroker().start()
            kafka = kafka.model_copy(update={"bootstrap_servers": self.broker.bootstrap_servers})
        runtime = s.runtime
        if runtime.state_dir is None:
            self._temp_state = tempfile.mkdtemp(prefix="streamlabel-state-")
            runtime = runtime.model_copy(update={"state_dir": self._temp_state})
        self.settings = s = s.model_copy(update={"kafka": kafka, "runtime": runtime})
        _wait_for_topics(s, self.topics)
        self._watch = BrokerWatch(s.kafka, self.topics)
        self._watch.baseline()
        self._started_ray = init_ray(s)
        if self._started_ray:  # a shared or autoscaling cluster is the operator's to size
            self._check_resources()
        self._start_embedder()
        self.learner = _Slot("learner")
        self._create_learner(self.learner)
        new = [self._new_worker_slot() for _ in range(s.runtime.workers)]
        for slot in new:
            self._create_worker(slot)
        _await_ready([self.learner, *new], timeout_s)  # all load their model at once
        self.workers.extend(new)
        self._t0 = time.monotonic()
        self._last = (self._t0, 0)
        log.info(
            "runtime_started",
            bootstrap_servers=s.kafka.bootstrap_servers,
            workers=len(self.workers),
            embedder="actor" if self._embedder else "local",
        )
        return self

    def _check_resources(self) -> None:
        """Fails fast (naming the settings) when the actors cannot all be scheduled."""
        import ray

        cpus = float(ray.cluster_resources().get("CPU", 0.0))
        r = self.settings.ray
        need = self.settings.runtime.workers * r.worker_num_cpus + r.learner_num_cpus
        if need > cpus:
            raise SettingsError(
                f"runtime.workers={self.settings.runtime.workers} x ray.worker_num_cpus="
                f"{r.worker_num_cpus} + ray.learner_num_cpus={r.learner_num_cpus} needs "
                f"{need:g} CPUs; the Ray cluster has {cpus:g} (ray.num_cpus for a local Ray)"
            )

    def _start_embedder(self) -> None:
        import ray

        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        if resolve_embedder_mode(self.settings.runtime.embedder, gpus) != "actor":
            return
        actor_cls = ray.remote(EmbedderActor).options(
            name=f"{self.topics.prefix}embedder",
            num_gpus=self.settings.ray.embedder_num_gpus if gpus else 0,
            num_cpus=self.settings.ray.embedder_num_cpus,
            max_concurrency=4,
            max_restarts=-1,  # stateless: Ray restarts it; callers retry through the handle
            max_task_retries=2,
        )
        self._embedder_actor = actor_cls.remote(self.settings.model)
        self._embedder = RemoteEmbedder(self._embedder_actor)

    def _create_learner(self, slot: _Slot) -> None:
        import ray

        r = self.settings.ray
        actor_cls = ray.remote(self.actors.learner).options(
            num_cpus=r.learner_num_cpus,
            resources=dict(r.learner_resources) or None,
            max_concurrency=8,
            max_restarts=0,
        )
        slot.handle = actor_cls.remote(
            self.settings, embedder=self._embedder, broker_generation=self.broker_resets
        )

    def _create_worker(self, slot: _Slot) -> None:
        import ray

        r = self.settings.ray
        actor_cls = ray.remote(self.actors.worker).options(
            num_cpus=r.worker_num_cpus,
            resources=dict(r.worker_resources) or None,
            max_concurrency=4,
            max_restarts=0,
        )
        learner = self.learner.handle if self.learner else None
        slot.handle = actor_cls.remote(
            self.settings, slot.name, learner=learner, embedder=self._embedder
        )

    def _launch_learner(self, slot: _Slot, timeout_s: float) -> None:
        self._create_learner(slot)
        _await_ready([slot], timeout_s)

    def _launch_worker(self, slot: _Slot, timeout_s: float) -> None:
        self._create_worker(slot)
        _await_ready([slot], timeout_s)

    def _begin_worker(self, slot: _Slot) -> None:
        """Creates a worker's actor without waiting for it (:meth:`_check_pending`
        starts its loop): the supervisor keeps supervising while a pod is added."""
        self._create_worker(slot)
        slot.ready_ref = slot.handle.ready.remote()
        slot.started_at = time.monotonic()

    def _new_worker_slot(self) -> _Slot:
        slot = _Slot(f"worker-{self._next_worker}")
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
            with contextlib.suppress(Exception):
                ray.kill(slot.handle)
            return slot.name
        if not self.workers:
            return None
        slot = self.workers.pop()
        _stop_slot(slot, timeout_s)
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

        starting = [s for s in (*self.pending, *self.workers) if s.ready_ref is not None]
        if not starting:
            return []
        started = []
        now = time.monotonic()
        limit = self.settings.runtime.worker_start_timeout_s
        done, _ = ray.wait([s.ready_ref for s in starting], num_returns=len(starting), timeout=0)
        done_ids = {id(ref) for ref in done}
        for slot in starting:
            ref = slot.ready_ref
            late = now - slot.started_at > limit
            if id(ref) not in done_ids and not late:
                continue
            slot.ready_ref = None
            error = f"not ready after {limit:g}s (runtime.worker_start_timeout_s)" if late else ""
            if not error:
                try:
                    ray.get(ref)
                except Exception as exc:
                    error = str(exc)[-300:]
            if error:
                log.warning("worker_start_failed", actor=slot.name, error=error)
                with contextlib.suppress(Exception):
                    ray.kill(slot.handle)
                if slot in self.pending:
                    self.pending.remove(slot)  # the autoscaler asks again if still needed
                else:  # a relaunch: try again later
                    slot.handle = None
                    slot.retry_at = now + RELAUNCH_BACKOFF_S
                continue
            slot.run_ref = slot.handle.run.remote()
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
            StreamlabelError: an actor died more than ``runtime.max_restarts`` times.
        """
        import ray

        self.check_broker()
        self._check_pending()
        restarted = []
        now = time.monotonic()
        for slot in self._slots():
            due = slot.handle is None and now >= slot.retry_at
            if due and not self._left_node_alive(slot) and self._relaunch(slot):
                restarted.append(slot.name)  # after a drain or a failed relaunch
        refs = {id(s.run_ref): s for s in self._slots() if s.run_ref is not None}
        if not refs:
            return restarted
        done, _ = ray.wait([s.run_ref for s in refs.values()], num_returns=len(refs), timeout=0)
        for ref in done:
            slot = next(s for s in refs.values() if s.run_ref == ref)
            error = ""
            try:
                result = ray.get(ref)
                if isinstance(result, dict) and result.get("drained"):
                    self._drained(slot, str(result.get("node_id", "")))
                    continue
                error = "the loop returned without being stopped"
            except Exception as exc:
                text = str(exc).strip()  # a Ray error: its banner, then the actor's traceback
                error = f"{type(exc).__name__}: ...{text[-500:]}" if len(text) > 500 else text
            if slot.restarts >= self.settings.runtime.max_restarts:
                raise StreamlabelError(f"{slot.name} failed {slot.restarts + 1} times: {error}")
            slot.restarts += 1
            log.warning("actor_restart", actor=slot.name, restarts=slot.restarts, error=error)
            with contextlib.suppress(Exception):
                ray.kill(slot.handle)
            slot.run_ref = None
            if self._relaunch(slot):
                restarted.append(slot.name)
        return restarted

    def _drained(self, slot: _Slot, node_id: str = "") -> None:
        """An actor stopped by ``POST /drain`` (its pod is going away): not a failure.

        It is started again once the node it left is gone (or after
        ``runtime.drained_node_wait_s``): the terminating pod is often the only
        one with room, and an actor placed there would die with it.
        """
        import ray

        log.info("actor_drained", actor=slot.name, node_id=node_id[:12])
        with contextlib.suppress(Exception):
            ray.kill(slot.handle)
        slot.handle = None
        slot.run_ref = None
        slot.left_node = node_id
        slot.drained_at = time.monotonic()
        slot.retry_at = slot.drained_at + RELAUNCH_BACKOFF_S

    def _left_node_alive(self, slot: _Slot) -> bool:
        """True while a drained actor's old node is alive and the wait is not over."""
        if not slot.left_node:
            return False
        if time.monotonic() - slot.drained_at >= self.settings.runtime.drained_node_wait_s:
            slot.left_node = ""
            return False
        import ray

        try:
            alive = any(n.get("NodeID") == slot.left_node and n.get("Alive") for n in ray.nodes())
        except Exception:  # the GCS is busy: ask again at the next check
            return True
        if not alive:
            slot.left_node = ""
        return alive

    def _relaunch(self, slot: _Slot) -> bool:
        """Starts a dead actor again; a failure to start is retried at the next check.

        Returns:
            True when the actor is running again.
        """
        try:
            if slot is self.learner:
                self._launch_learner(slot, 300.0)
                for w in self.workers:
                    if w.handle is not None:  # a worker down now gets it when relaunched
                        w.handle.set_learner.remote(slot.handle)
            else:
                self._begin_worker(slot)  # its loop starts at a later check, once ready
        except StreamlabelError as exc:  # e.g. BrokerError: Kafka is not back yet
            slot.handle = None
            slot.run_ref = None
            slot.retry_at = time.monotonic() + RELAUNCH_BACKOFF_S
            log.warning("actor_relaunch_failed", actor=slot.name, error=str(exc)[-300:])
            return False
        return True

    def check_broker(self, *, force: bool = False) -> list[str]:
        """Detects a broker that lost its topics and recovers from it (at most every
        ``runtime.broker_check_s`` unless ``force``); returns the topics it found
        recreated or missing.

        Recovery: create the topics again, then tell every actor. Workers re-read
        the changelog and resume at a committed offset that still exists (else at
        the beginning); the learner reads its inputs from the beginning,
        re-publishes every class from its own state and raises a
        ``broker_reset`` alert. What only the old broker held is gone.
        """
        now = time.monotonic()
        if self._watch is None or (
            not force and now - self._watched_at < self.settings.runtime.broker_check_s
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
        if self.learner is not None and self.learner.handle is not None:
            with contextlib.suppress(Exception):
                self.learner.handle.broker_reset.remote(self.broker_resets)
        for slot in self.workers:
            with contextlib.suppress(Exception):
                slot.handle.broker_reset.remote()
        return changed

    def _slots(self) -> list[_Slot]:
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
            if slot.handle is None or slot.ready_ref is not None:
                continue  # down, or starting (maybe waiting for a node): nothing to ask yet
            with contextlib.suppress(Exception):
                workers.append(ray.get(slot.handle.stats.remote(), timeout=timeout_s))
        for w in workers:  # a partition nobody reports now keeps its last known lag
            self._lag.update(w["lag"])
        learner: dict[str, Any] = {}
        if self.learner is not None:
            with contextlib.suppress(Exception):
                learner = ray.get(self.learner.handle.stats.remote(), timeout=timeout_s)
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
            discovered=learner.get("discovered", 0),
            restarts=sum(s.restarts for s in self._slots()),
            broker_resets=self.broker_resets,
            workers=workers,
            learner=learner,
        )

    def driver_stats(self, progress: Progress) -> dict[str, Any]:
        """What the driver's ``/metrics`` shows of the deployment."""
        return {
            "workers": sum(slot.handle is not None for slot in self.workers),
            "lag": progress.lag,
            "restarts": {slot.name: slot.restarts for slot in self._slots()},
            "broker_resets": self.broker_resets,
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

    # ------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Graceful shutdown: workers, then learner, then Ray and the embedded broker."""
        if self._stopped:
            return
        self._stopped = True
        timeout = self.settings.runtime.stop_timeout_s
        import ray

        if ray.is_initialized():
            for slot in self.pending:
                with contextlib.suppress(Exception):
                    ray.kill(slot.handle)
            self.pending.clear()
            for slot in self.workers:
                with contextlib.suppress(Exception):
                    slot.handle.stop.remote()
            deadline = time.monotonic() + timeout  # one deadline: they stop side by side
            for slot in self.workers:
                _stop_slot(slot, max(1.0, deadline - time.monotonic()))
            if self.learner is not None:  # its last snapshot after the workers' last batches
                _stop_slot(self.learner, max(10.0, timeout / 2))
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


def _wait_for_topics(settings: RuntimeSettings, topics: Topics) -> None:
    """Creates or finds the topics, retrying for ``kafka.startup_wait_s`` while Kafka
    (or whoever creates the topics) is not ready yet.

    Raises:
        BrokerError: still failing when the wait is over.
    """
    deadline = time.monotonic() + settings.kafka.startup_wait_s
    while True:
        try:
            ensure_topics(settings.kafka, topics)
            return
        except BrokerError as exc:
            if time.monotonic() + RELAUNCH_BACKOFF_S > deadline:
                raise
            log.warning("kafka_not_ready", error=str(exc)[:300], retry_in_s=RELAUNCH_BACKOFF_S)
            time.sleep(RELAUNCH_BACKOFF_S)


def _check_model(settings: RuntimeSettings) -> None:
    """Fails before anything starts when ``model.path`` cannot hold a model.

    Raises:
        SettingsError: naming ``model.path``.
    """
    path = settings.model.path
    if path is not None and not (Path(path) / "config.json").is_file():
        what = "does not exist" if not Path(path).exists() else "has no config.json"
        raise SettingsError(
            f"model.path {path!r} {what}; it must be a sentence-transformers model directory "
            "(unset it for the bundled all-MiniLM-L6-v2)"
        )


def _await_ready(slots: list[_Slot], timeout_s: float) -> None:
    """Waits until every actor is ready, then starts their loops.

    Raises:
        StreamlabelError: (the actor's own error type when it has one) naming the actor.
    """
    import ray

    refs = [(slot, slot.handle.ready.remote()) for slot in slots]
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
        slot.run_ref = slot.handle.run.remote()


def _stop_slot(slot: _Slot, timeout_s: float) -> None:
    """Asks an actor's loop to stop, waits for it, then kills the actor."""
    import ray

    with contextlib.suppress(Exception):
        slot.handle.stop.remote()
    if slot.run_ref is not None:
        try:
            ray.get(slot.run_ref, timeout=timeout_s)
        except Exception as exc:
            log.warning("actor_stop_failed", actor=slot.name, error=str(exc)[:300])
    slot.run_ref = None
    with contextlib.suppress(Exception):
        ray.kill(slot.handle)
