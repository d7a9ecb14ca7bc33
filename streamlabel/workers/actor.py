"""What every actor loop shares: run/stop/ready, stats and health, the probe.

A stream worker and the learner are both a loop around :meth:`ActorLoop.step`
inside a Ray actor: ``ready`` connects (the supervisor waits for it), ``run``
steps until :meth:`~ActorLoop.stop` (or ``POST /drain``) and returns the final
stats, with ``drained`` telling a drain from a stop. The subclass provides
``_open`` (connect, restore), ``step``, ``_finish`` (settle what is in flight
before closing) and ``_close``.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Generic, Protocol, TypeVar

import structlog

from streamlabel.logging import adopt_library_loggers, configure_logging
from streamlabel.ops.endpoint import Served
from streamlabel.ops.metrics import Families
from streamlabel.settings.runtime import RuntimeSettings
from streamlabel.workers.probe import NO_PROBE, Probe

__all__ = ["ActorLoop", "LoopStats", "ray_node_id", "rss_bytes"]


class LoopStats(Protocol):
    """The counters every actor loop keeps beside its own (a dataclass)."""

    rss_bytes: int
    running: bool
    drained: bool
    metrics_url: str
    node_id: str

    def as_dict(self) -> dict[str, Any]: ...


StatsT = TypeVar("StatsT", bound=LoopStats)


class ActorLoop(Served, Generic[StatsT]):
    """The loop of an actor: ``ready``, ``run``, ``stop``, ``stats``, and its endpoint.

    The class is plain Python: the supervisor wraps a subclass with ``ray.remote``.
    """

    settings: RuntimeSettings
    probe: Probe
    _stats: StatsT
    _log: Any

    def _init_loop(
        self,
        settings: RuntimeSettings,
        stats: StatsT,
        *,
        role: str,
        actor: str,
        families: Families,
    ) -> None:
        """Sets up what every loop has (called by the subclass's constructor)."""
        self.settings = settings
        self._stats = stats
        self._stop = threading.Event()
        self._reset_requested = threading.Event()
        self.probe = NO_PROBE  # the step points (streamlabel.workers.probe)
        self.init_endpoint(settings.metrics, role, actor, stats.as_dict, families, self.stop)
        lg = settings.logging  # the driver's configuration: every line of every process alike
        configure_logging(json_logs=lg.json_lines, level=lg.level, libraries=lg.libraries)
        self._log = structlog.get_logger(f"streamlabel.{role}").bind(worker_id=actor)

    # --------------------------------------------------------------- control
    def ready(self) -> bool:
        """Starts the endpoint and connects (what ``_open`` does); True once done."""
        self.serve()
        self._open()
        adopt_library_loggers()  # loading the model gave torch/transformers handlers of their own
        return True

    def run(self) -> dict[str, Any]:
        """The loop; returns the final stats when :meth:`stop` is called.

        ``stats["drained"]`` is True when the stop came from ``POST /drain`` (a
        pod shutting down): the supervisor then starts the actor elsewhere
        without counting a failure.
        """
        self.serve()
        self._open()
        self.health.started()  # before ``running``: ``live`` reads both
        self._stats.running = True
        self._started()
        try:
            while not self._stop.is_set():
                self.step()
                self.health.beat()
            self._finish()
        finally:
            self._close()
            self._stats.running = False
            self._stats.drained = self.health.stopped()
        self._stopped()
        return self.stats()

    @property
    def stop_requested(self) -> bool:
        """True once the loop was told to stop (``stop``, a drain, a signal)."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Asks the loop to finish what is in flight, commit and close."""
        self._stop.set()

    def live(self) -> tuple[bool, str]:
        """``(alive, reason)`` as ``/healthz`` says, for the supervisor's liveness
        check: False once the running loop made no step for ``metrics.stall_s``
        (alive while it is not running: starting, or ended)."""
        if not self._stats.running:
            return True, "not running"
        return self.health.live()

    def close(self) -> None:
        """Closes the clients of a loop that was made ready but is not running
        (what :meth:`run` does on its way out)."""
        self._close()

    def stats(self) -> dict[str, Any]:
        """Current counters (plain data)."""
        s = self._stats  # written by the loop's thread only; read here
        s.rss_bytes = rss_bytes()
        s.metrics_url = self.metrics_url
        s.node_id = s.node_id or ray_node_id()
        return s.as_dict()

    # ----------------------------------------------------------------- hooks
    def step(self) -> int:
        """One step of the loop; returns the records it handled."""
        raise NotImplementedError

    def _open(self) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Completes what is in flight when the loop stops (before ``_close``)."""

    def _close(self) -> None:
        raise NotImplementedError

    def _started(self) -> None:
        """The loop is about to make its first step."""

    def _stopped(self) -> None:
        """The loop ended without an error (after ``_close``)."""


def rss_bytes() -> int:
    """Resident memory of this process (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def ray_node_id() -> str:
    """The Ray node this process runs on ("" outside Ray)."""
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""
    except Exception:
        return ""
