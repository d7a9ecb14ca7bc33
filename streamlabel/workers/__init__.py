"""The Ray actors around the Engine.

* :class:`~streamlabel.workers.stream_worker.StreamWorker` — consumes ``items``,
  labels them against a read replica of the store, publishes, then commits;
* :class:`~streamlabel.workers.learner.Learner` — the single writer of the store:
  feedback, unknowns, background discovery, drift, checkpoints;
* :class:`~streamlabel.workers.embedding.EmbedderActor` — the shared model on a GPU;
* :mod:`~streamlabel.workers.actor` — the loop both actors share (run, stop, stats, health);
* :mod:`~streamlabel.workers.checkpoint` — the learner's snapshot and outbox;
* :mod:`~streamlabel.workers.polling` — how a stream worker polls and follows rebalances;
* :mod:`~streamlabel.workers.stats` — the counters the actors report;
* :mod:`~streamlabel.workers.probe` — the named step points of their loops.

The supervisor that starts them is :mod:`streamlabel.runtime`; their Kafka
clients are :mod:`streamlabel.kafka`.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamlabel.workers.embedding import EmbedderActor
    from streamlabel.workers.learner import Learner
    from streamlabel.workers.stream_worker import StreamWorker

_LAZY = {
    "EmbedderActor": "streamlabel.workers.embedding",
    "Learner": "streamlabel.workers.learner",
    "StreamWorker": "streamlabel.workers.stream_worker",
}


def __getattr__(name: str) -> Any:
    """Imports on first use (torch, Kafka and FAISS load with the actors)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = ["EmbedderActor", "Learner", "StreamWorker"]
