"""Ray actors and Kafka I/O around the Engine.

* :class:`~streamlabel.workers.stream_worker.StreamWorker` — consumes ``items``,
  labels them against a read replica of the store, publishes, then commits;
* :class:`~streamlabel.workers.learner.Learner` — the single writer of the store:
  feedback, unknowns, background discovery, drift, checkpoints;
* :class:`~streamlabel.workers.supervisor.Runtime` — starts the broker (when
  none is configured), Ray and the actors, restarts them, stops them gracefully;
* :class:`~streamlabel.workers.broker.EmbeddedBroker` — tansu on 127.0.0.1;
* :func:`~streamlabel.workers.settings.load_runtime_settings` — settings from
  a file, the environment and overrides, validated once.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamlabel.workers.broker import EmbeddedBroker
    from streamlabel.workers.learner import Learner
    from streamlabel.workers.settings import RuntimeSettings, load_runtime_settings
    from streamlabel.workers.stream_worker import StreamWorker
    from streamlabel.workers.supervisor import Runtime

_LAZY = {
    "EmbeddedBroker": "streamlabel.workers.broker",
    "Learner": "streamlabel.workers.learner",
    "Runtime": "streamlabel.workers.supervisor",
    "RuntimeSettings": "streamlabel.workers.settings",
    "StreamWorker": "streamlabel.workers.stream_worker",
    "load_runtime_settings": "streamlabel.workers.settings",
}


def __getattr__(name: str) -> Any:
    """Imports on first use: light commands (``streamlabel drain``, ``healthcheck``)
    import one module of this package without Ray, Kafka or torch."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = [
    "EmbeddedBroker",
    "Learner",
    "Runtime",
    "RuntimeSettings",
    "StreamWorker",
    "load_runtime_settings",
]
