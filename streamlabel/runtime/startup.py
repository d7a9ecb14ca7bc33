"""What the supervisor makes sure of before it starts an actor (a model
directory, the topics, room for the actors on the Ray cluster it started), and
the wait for the first actors that reports each one as it becomes ready.

A start-up step is reported to a :data:`StepReporter` (the CLI prints it with
the seconds elapsed; the default, :func:`no_steps`, says nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import structlog

from streamlabel.errors import BrokerError, SettingsError
from streamlabel.kafka.topics import Topics, ensure_topics
from streamlabel.runtime.slots import RELAUNCH_BACKOFF_S, Slot, await_ready
from streamlabel.settings.runtime import RuntimeSettings

__all__ = [
    "StepReporter",
    "await_started",
    "check_model",
    "check_resources",
    "no_steps",
    "wait_for_topics",
]

log = structlog.get_logger(__name__)

StepReporter = Callable[[str], None]
"""Told each start-up step as it begins (``"starting Ray"``, ``"learner ready (1/3)"``)."""


def no_steps(step: str) -> None:
    """A :data:`StepReporter` that reports nothing."""


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


def await_started(slots: list[Slot], timeout_s: float, step: StepReporter) -> None:
    """:func:`~streamlabel.runtime.slots.await_ready` for the first actors, telling
    ``step`` of each one as it becomes ready (``"worker-1 ready (2/3)"``).

    Raises:
        StreamlabelError: as ``await_ready`` does, once an actor failed or is late.
    """
    import ray

    names = {slot.ready_ref: slot.name for slot in slots}
    pending = [slot.ready_ref for slot in slots]
    deadline = time.monotonic() + timeout_s
    while pending:
        done, pending = ray.wait(
            pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic())
        )
        if not done:
            break  # late: await_ready raises naming it
        try:
            ray.get(done[0], timeout=0)
        except Exception:  # await_ready raises it, naming the actor
            break
        step(f"{names[done[0]]} ready ({len(slots) - len(pending)}/{len(slots)})")
    await_ready(slots, max(1.0, deadline - time.monotonic()))
