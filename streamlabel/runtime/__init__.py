"""The deployment as a whole: the supervisor, scaling and replay.

* :class:`~streamlabel.runtime.supervisor.Runtime` — the supervisor: starts the
  broker (when none is configured), Ray and the actors, restarts them, stops
  them gracefully;
* :mod:`~streamlabel.runtime.supervision` — the supervisor's rounds: restarts,
  hung actors, relaunches that never block the other slots;
* :mod:`~streamlabel.runtime.restarts` — the restart policy: a budget per
  window, with backoff;
* :mod:`~streamlabel.runtime.slots` — one supervised actor and its explicit
  state (:class:`~streamlabel.runtime.slots.SlotState`);
* :mod:`~streamlabel.runtime.startup` — the checks before any actor starts;
* :mod:`~streamlabel.runtime.placement` — each actor's Ray options;
* :mod:`~streamlabel.runtime.ray_env` — joins a Ray cluster or starts a local
  one on loopback;
* :mod:`~streamlabel.runtime.progress` — the deployment's progress and the
  waits built on it;
* :mod:`~streamlabel.runtime.scaling` — scales the stream workers on lag;
* :mod:`~streamlabel.runtime.replay` — relabels an offset range against a
  pinned learner snapshot.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamlabel.runtime.supervisor import ActorClasses, Runtime

_LAZY = {
    "ActorClasses": "streamlabel.runtime.supervisor",
    "Runtime": "streamlabel.runtime.supervisor",
}


def __getattr__(name: str) -> Any:
    """Imports on first use (Ray loads with the supervisor)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = ["ActorClasses", "Runtime"]
