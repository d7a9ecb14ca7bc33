"""How the supervisor places each actor on Ray: its class, options and resources.

Every function creates the actor and returns its handle at once; the actor
loads its model in the background (its ``ready()`` says when it is done).
"""

from __future__ import annotations

from typing import Any

from streamlabel.settings.runtime import RuntimeSettings
from streamlabel.workers.embedding import EmbedderActor, RemoteEmbedder, resolve_embedder_mode
from streamlabel.workers.learner import Learner
from streamlabel.workers.stream_worker import StreamWorker

__all__ = ["create_embedder", "create_learner", "create_worker"]


def create_embedder(settings: RuntimeSettings, name: str) -> Any | None:
    """The shared embedder actor named ``name``, or None when the workers embed
    locally (``supervisor.embedder``; ``auto`` picks the actor when Ray has a GPU)."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    if resolve_embedder_mode(settings.supervisor.embedder, gpus) != "actor":
        return None
    actor_cls = ray.remote(EmbedderActor).options(
        name=name,
        num_gpus=settings.ray.embedder_num_gpus if gpus else 0,
        num_cpus=settings.ray.embedder_num_cpus,
        max_concurrency=4,
        max_restarts=-1,  # stateless: Ray restarts it; callers retry through the handle
        max_task_retries=2,
    )
    return actor_cls.remote(settings.model, settings.logging)


def create_learner(
    cls: type[Learner],
    settings: RuntimeSettings,
    embedder: RemoteEmbedder | None,
    broker_generation: int,
) -> Any:
    """The learner actor (never restarted by Ray: the supervisor does it)."""
    import ray

    r = settings.ray
    actor_cls = ray.remote(cls).options(
        num_cpus=r.learner_num_cpus,
        resources=dict(r.learner_resources) or None,
        max_concurrency=8,
        max_restarts=0,
    )
    return actor_cls.remote(settings, embedder=embedder, broker_generation=broker_generation)


def create_worker(
    cls: type[StreamWorker],
    settings: RuntimeSettings,
    name: str,
    learner: Any,
    embedder: RemoteEmbedder | None,
) -> Any:
    """A stream worker actor with worker id ``name`` (never restarted by Ray)."""
    import ray

    r = settings.ray
    actor_cls = ray.remote(cls).options(
        num_cpus=r.worker_num_cpus,
        resources=dict(r.worker_resources) or None,
        max_concurrency=4,
        max_restarts=0,
    )
    return actor_cls.remote(settings, name, learner=learner, embedder=embedder)
