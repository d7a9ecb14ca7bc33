"""What the supervisor makes sure of before it starts an actor: a model
directory, the topics, and room for the actors on the Ray cluster it started."""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from streamlabel.errors import BrokerError, SettingsError
from streamlabel.kafka.topics import Topics, ensure_topics
from streamlabel.runtime.slots import RELAUNCH_BACKOFF_S
from streamlabel.settings.runtime import RuntimeSettings

__all__ = ["check_model", "check_resources", "wait_for_topics"]

log = structlog.get_logger(__name__)


def check_model(settings: RuntimeSettings) -> None:
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


def wait_for_topics(settings: RuntimeSettings, topics: Topics) -> None:
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


def check_resources(settings: RuntimeSettings) -> None:
    """Fails fast (naming the settings) when the actors cannot all be scheduled on
    the Ray cluster this process started.

    Raises:
        SettingsError: naming ``supervisor.workers`` and the ``ray.*_num_cpus``.
    """
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 0.0))
    r = settings.ray
    need = settings.supervisor.workers * r.worker_num_cpus + r.learner_num_cpus
    if need > cpus:
        raise SettingsError(
            f"supervisor.workers={settings.supervisor.workers} x ray.worker_num_cpus="
            f"{r.worker_num_cpus} + ray.learner_num_cpus={r.learner_num_cpus} needs "
            f"{need:g} CPUs; the Ray cluster has {cpus:g} (ray.num_cpus for a local Ray)"
        )
