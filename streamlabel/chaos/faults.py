"""Fault injection at the step points of the stream worker and the learner (``streamlabel chaos``).

A :class:`Faults` is the :class:`~streamlabel.workers.probe.Probe` of the chaos
suite's actors (:mod:`streamlabel.chaos.actors`; deployed actors hold a no-op
probe). The loop calls :meth:`Faults.hit` at the named points of a step;
nothing happens until the chaos harness arms a point through the actor
(``arm_fault``). An armed ``kill`` point sends SIGKILL to
the actor's own process once its countdown reaches zero, exactly as ``kill -9``
would, so the recovery that follows is the real one (Ray reports the actor
dead, the supervisor restarts it, the group rebalances). A ``stall`` point
sleeps (a model that hangs); ``model_fail`` makes the embedder raise on texts
that contain a marker (a text the model cannot handle).

Disarmed, a hit costs one dictionary lookup.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from streamlabel.core.embedder import Embedder
from streamlabel.errors import EmbeddingError, SettingsError
from streamlabel.workers.probe import LEARNER_POINTS, WORKER_POINTS, Note

__all__ = [
    "LEARNER_POINTS",
    "MODEL_FAIL_MARKER",
    "MODEL_NAN_MARKER",
    "WORKER_POINTS",
    "FaultAction",
    "FaultTarget",
    "Faults",
    "FaultyEmbedder",
]

MODEL_FAIL_MARKER = "\u2063chaos:model-fails\u2063"
"""A text containing this makes :class:`FaultyEmbedder` raise (when armed)."""

MODEL_NAN_MARKER = "\u2063chaos:model-nan\u2063"
"""A text containing this gets a NaN vector from :class:`FaultyEmbedder` (when armed):
what fp16 overflow on a GPU without bf16 looks like."""

FaultAction = Literal["kill", "stall"]


@dataclass
class _Armed:
    action: FaultAction
    countdown: int
    stall_s: float


class Faults:
    """The armed fault points of one actor (thread-safe; disarmed by default)."""

    def __init__(self, points: Sequence[str], *, notes_dir: str | None = None) -> None:
        self.points = tuple(points)
        self.notes_dir = notes_dir
        self._armed: dict[str, _Armed] = {}
        self._lock = threading.Lock()
        self.model_fail = False
        self.stalls = 0

    def arm(self, point: str, *, action: FaultAction = "kill", after: int = 1,
            stall_s: float = 0.0) -> None:  # fmt: skip
        """Fires ``action`` at the ``after``-th hit of ``point`` (1 = the next one).

        Raises:
            SettingsError: the point or the action is not known.
        """
        if action not in ("kill", "stall"):
            raise SettingsError(f"unknown fault action {action!r} for point {point!r}")
        if point == "model_fail":
            self.model_fail = True
            return
        if point not in self.points:
            raise SettingsError(f"unknown fault point {point!r}; known: {', '.join(self.points)}")
        with self._lock:
            self._armed[point] = _Armed(action, max(1, after), stall_s)

    def disarm(self) -> None:
        """Disarms every point."""
        with self._lock:
            self._armed.clear()
        self.model_fail = False

    def hit(self, point: str, note: Note | None = None) -> None:
        """Called by the actor's loop at ``point``; fires the armed action when due.

        ``note()`` (what the actor holds in memory at that point) is written to
        ``notes_dir/fault-<point>.json`` before a kill: the harness compares it
        with what the restarted actor rebuilds.
        """
        if not self._armed:
            return
        with self._lock:
            armed = self._armed.get(point)
            if armed is None:
                return
            armed.countdown -= 1
            if armed.countdown > 0:
                return
            del self._armed[point]
        if armed.action == "kill":
            if note is not None and self.notes_dir:
                path = Path(self.notes_dir) / f"fault-{point}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(dict(note()), default=str))
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)  # pragma: no cover - the signal is delivered first
        self.stalls += 1
        time.sleep(armed.stall_s)


class FaultTarget:
    """The fault-injection methods of a chaos actor holding a :class:`Faults` as
    ``faults``; the chaos harness calls them through Ray."""

    faults: Faults

    def pid(self) -> int:
        """The actor's process id (the chaos harness kills it from outside)."""
        return os.getpid()

    def arm_fault(
        self, point: str, action: FaultAction = "kill", after: int = 1, stall_s: float = 0.0
    ) -> None:
        """Arms a fault point (see :meth:`Faults.arm`)."""
        self.faults.arm(point, action=action, after=after, stall_s=stall_s)

    def disarm_faults(self) -> None:
        """Disarms every fault point."""
        self.faults.disarm()


class FaultyEmbedder:
    """Wraps an embedder; when armed, raises on texts holding :data:`MODEL_FAIL_MARKER`
    and returns NaN for texts holding :data:`MODEL_NAN_MARKER`."""

    def __init__(self, inner: Embedder, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults
        self.dim = inner.dim
        self.model_id = inner.model_id

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._faults.model_fail and any(MODEL_FAIL_MARKER in t for t in texts):
            # what the real embedder raises when the model fails on an input
            raise EmbeddingError(f"model failed on a batch of {len(texts)}: injected fault")
        vectors = self._inner.embed(texts)
        if self._faults.model_fail:
            nan = [i for i, t in enumerate(texts) if MODEL_NAN_MARKER in t]
            if nan:
                vectors = np.array(vectors, dtype=np.float32)  # may be read-only
                vectors[nan] = np.nan
        return vectors
