"""Drift watch: the detectors over the labelled stream, their signals as alert records.

The signals are grouped into incidents (:mod:`.incidents`): every alert record
belongs to one, and a shift reads as one incident however many detectors
fire, and however often.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import structlog

from streamlabel.core.drift import DriftDetector, DriftObservation, default_detectors
from streamlabel.pipeline.incidents import Incidents, RecentRows
from streamlabel.pipeline.output import Observed
from streamlabel.pipeline.records import drift_alert
from streamlabel.schemas import DriftAlert
from streamlabel.settings.engine import DriftSettings

__all__ = ["DriftWatch"]

log = structlog.get_logger(__name__)

_DEFAULT_WINDOW: int = DriftSettings.model_fields["incident_window"].default


class DriftWatch:
    """Feeds what the stream labelled to every detector; returns their alerts.

    Args:
        enabled: False watches nothing (no detectors).
        seed: seeds the detectors and the alert ids.
        clock: epoch seconds for the alerts' ``emitted_at``.
        incarnation: tells this run's alert ids from those of the runs before
            (the learner passes its start; see :func:`.records.drift_alert`);
            empty keeps the ids of one process.
        incident_window: items (drift rows) without a signal that close an incident
            (``drift.incident_window``).
    """

    def __init__(
        self,
        *,
        enabled: bool,
        seed: int,
        clock: Callable[[], float],
        incarnation: str = "",
        incident_window: int = _DEFAULT_WINDOW,
    ) -> None:
        self.seed = seed
        self.incarnation = incarnation
        self._clock = clock
        self.detectors: list[DriftDetector] = default_detectors(seed=seed) if enabled else []
        self.history = RecentRows()
        self.incidents = Incidents(window=incident_window, history=self.history)

    @classmethod
    def of(
        cls, settings: DriftSettings, *, seed: int, clock: Callable[[], float], incarnation: str
    ) -> DriftWatch:
        """The watch the ``drift`` settings describe."""
        return cls(enabled=settings.enabled, seed=seed, clock=clock, incarnation=incarnation,
                   incident_window=settings.incident_window)  # fmt: skip

    def watch(self, observed: Observed, store_version: int) -> list[DriftAlert]:
        """Updates every detector with the rows of ``observed`` marked for drift; the
        alerts they raise, in stream order, each opening or updating an incident."""
        if not self.detectors or not observed.drift_rows:
            return []
        observed = observed.for_drift()
        obs = DriftObservation(
            vectors=np.asarray(observed.vectors, np.float32),
            labels=np.array(observed.labels, dtype=object),
            is_unknown=np.asarray(observed.is_unknown, bool),
            scores=np.asarray(observed.scores, np.float32),
        )
        self.history.extend(observed.labels, observed.texts)
        signals = [s for detector in self.detectors for s in detector.update(obs)]
        alerts = []
        for signal in sorted(signals, key=lambda s: s.at_item):  # stable: detector order
            now = self._clock()
            alert = drift_alert(
                signal, seed=self.seed, store_version=store_version, now=now,
                incarnation=self.incarnation, incident=self.incidents.add(signal, now=now),
            )  # fmt: skip
            log.info("drift_alert", kind=alert.kind, at_item=alert.at_item,
                     severity=alert.severity, incident=alert.incident_id,
                     update=alert.incident_update)  # fmt: skip
            alerts.append(alert)
        return alerts
