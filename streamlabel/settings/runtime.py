"""Runtime settings: the Engine's settings plus one section per deployed component.

Read once at the entry point, from (highest priority first) explicit
overrides, environment variables ``STREAMLABEL_<SECTION>__<NAME>`` and a
settings file (TOML or JSON), then passed whole to every actor. An invalid
value raises :class:`~streamlabel.errors.SettingsError` naming the setting.
The names of the old ``runtime`` section are still read, with a warning
(:data:`~streamlabel.settings.renamed.RUNTIME_RENAMED`).

Example:
    >>> s = load_runtime_settings(kafka={"topic_prefix": "t."})
    >>> s.kafka.topic_prefix, s.supervisor.workers
    ('t.', 2)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import model_validator

from streamlabel.settings.deployment import (
    LoggingSettings,
    MetricsSettings,
    RaySettings,
    ScalingSettings,
    SupervisorSettings,
)
from streamlabel.settings.engine import EngineSettings
from streamlabel.settings.kafka import KafkaSettings
from streamlabel.settings.loader import load
from streamlabel.settings.renamed import RUNTIME_RENAMED
from streamlabel.settings.ui import UISettings
from streamlabel.settings.workers import LearnerSettings, WorkerSettings

__all__ = ["RuntimeSettings", "load_runtime_settings"]


class RuntimeSettings(EngineSettings):
    """Engine settings plus Kafka, Ray, the actors, the supervisor, scaling, logs, metrics."""

    renamed: ClassVar[Mapping[str, str]] = RUNTIME_RENAMED

    kafka: KafkaSettings = KafkaSettings()
    ray: RaySettings = RaySettings()
    worker: WorkerSettings = WorkerSettings()
    learner: LearnerSettings = LearnerSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    scaling: ScalingSettings = ScalingSettings()
    logging: LoggingSettings = LoggingSettings()
    metrics: MetricsSettings = MetricsSettings()
    ui: UISettings = UISettings()

    @model_validator(mode="after")
    def _worker_bounds(self) -> RuntimeSettings:
        sc, workers = self.scaling, self.supervisor.workers
        if sc.enabled:
            top = sc.max_workers if sc.max_workers is not None else self.kafka.partitions
            upper = (
                f"scaling.max_workers={top}"
                if sc.max_workers is not None
                else f"scaling.max_workers (unset: kafka.partitions={top})"
            )
            if not sc.min_workers <= workers <= top:
                raise ValueError(
                    f"supervisor.workers={workers} must lie between scaling.min_workers="
                    f"{sc.min_workers} and {upper} when scaling.enabled is on"
                )
        return self


def load_runtime_settings(
    config_file: str | Path | None = None, **overrides: Any
) -> RuntimeSettings:
    """Builds runtime settings: overrides > environment > file > defaults.

    The three sources are merged first and validated once, so a rule that
    relates two settings (e.g. SASL needs credentials) sees the merged values.

    Raises:
        SettingsError: naming every invalid setting, e.g. ``kafka.bootstrap_servers``,
            or the settings file when it is missing or unparsable.
    """
    return load(RuntimeSettings, config_file, overrides)
