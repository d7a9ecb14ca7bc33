"""Drift watch: the detectors over the labelled stream, their signals as alert records."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import structlog

from streamlabel.core.drift import DriftDetector, DriftObservation, default_detectors
from streamlabel.pipeline.output import Observed
from streamlabel.pipeline.records import drift_alert
from streamlabel.schemas import DriftAlert

__all__ = ["DriftWatch"]

log = structlog.get_logger(__name__)


class DriftWatch:
    """Feeds what the stream labelled to every detector; returns their alerts.

    Args:
        enabled: False watches nothing (no detectors).
        seed: seeds the detectors and the alert ids.
        clock: epoch seconds for the alerts' ``emitted_at``.
        incarnation: tells this run's alert ids from those of the runs before
            (the learner passes its start; see :func:`.records.drift_alert`);
            empty keeps the ids of one process.
    """

    def __init__(
        self, *, enabled: bool, seed: int, clock: Callable[[], float], incarnation: str = ""
    ) -> None:
        self.seed = seed
        self.incarnation = incarnation
        self._clock = clock
        self.detectors: list[DriftDetector] = default_detectors(seed=seed) if enabled else []

    def watch(self, observed: Observed, store_version: int) -> list[DriftAlert]:
        """Updates every detector with the rows of ``observed`` marked for drift; the
        alerts they raise."""
        if not self.detectors or not observed.drift_rows:
            return []
        observed = observed.for_drift()
        obs = DriftObservation(
            vectors=np.asarray(observed.vectors, np.float32),
            labels=np.array(observed.labels, dtype=object),
            is_unknown=np.asarray(observed.is_unknown, bool),
            scores=np.asarray(observed.scores, np.float32),
        )
        alerts = []
        for detector in self.detectors:
            for signal in detector.update(obs):
                alert = drift_alert(
                    signal, seed=self.seed, store_version=store_version, now=self._clock(),
                    incarnation=self.incarnation,
                )  # fmt: skip
                log.info(
                    "drift_alert", kind=alert.kind, at_item=alert.at_item, severity=alert.severity
                )
                alerts.append(alert)
        return alerts
