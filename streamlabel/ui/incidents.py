"""Drift incidents from the ``alerts`` topic: the signals of one shift as one story.

Every alert of an incident carries its ``incident_id``; the one with the highest
``incident_update`` (of equal ones, the later) holds the incident's evidence so
far. An alert without an ``incident_id`` (an older learner, an operational alert)
is an incident of its own, its single signal its evidence.

Example:
    >>> from streamlabel.schemas import DriftAlert
    >>> def alert(aid, update, kind="unknown_rate", incident="i-1"):
    ...     return DriftAlert(alert_id=aid, kind=kind, statistic=0.3, threshold=0.1,
    ...         window=100, reference=500, at_item=1200 + update, severity="warning",
    ...         detail=f"{kind} moved", store_version=4, emitted_at=100.0 + update,
    ...         incident_id=incident, incident_update=update)
    >>> book = IncidentBook()
    >>> for a in (alert("a1", 0), alert("a3", 2, "embedding"), alert("a2", 1)):
    ...     _ = book.take(a)
    >>> [(i.incident_id, i.updates, i.alert.alert_id) for i in book.incidents()]
    [('i-1', 3, 'a3')]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamlabel.schemas import DriftAlert, DriftEvidence, ShareChange

__all__ = ["Incident", "IncidentBook"]

_SEVERITY = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class Incident:
    """One shift as the ``alerts`` topic tells it so far.

    Attributes:
        incident_id: its id (an ungrouped alert's own ``alert_id``).
        alert: the latest alert of it (the highest ``incident_update``).
        first_at: when its first signal was emitted, epoch seconds.
        updates: how many alerts of it were read.
        severity: the highest severity among them.
        kinds: the detectors that fired in it, in order of first firing.
    """

    incident_id: str
    alert: DriftAlert
    first_at: float
    updates: int = 1
    severity: str = "info"
    kinds: list[str] = field(default_factory=list)

    @property
    def last_at(self) -> float:
        return self.alert.emitted_at

    @property
    def evidence(self) -> tuple[DriftEvidence, ...]:
        """Each detector's signal, oldest first (the alert itself when it has none)."""
        a = self.alert
        if a.evidence:
            return a.evidence
        return (
            DriftEvidence(kind=a.kind, statistic=a.statistic, threshold=a.threshold,
                          p_value=a.p_value, at_item=a.at_item, detail=a.detail,
                          emitted_at=a.emitted_at),
        )  # fmt: skip

    @property
    def share_changes(self) -> list[ShareChange]:
        """The classes whose share moved, the largest move first."""
        return sorted(self.alert.share_changes, key=lambda c: -abs(c.after - c.before))


class IncidentBook:
    """The incidents read so far (at most ``limit``; the oldest are forgotten)."""

    def __init__(self, limit: int = 200) -> None:
        self.limit = limit
        self._incidents: dict[str, Incident] = {}
        self.alerts = 0
        """Every alert read."""

    def take(self, alert: DriftAlert) -> Incident:
        """Adds an alert to its incident (opening it); returns the incident."""
        self.alerts += 1
        key = alert.incident_id or alert.alert_id
        inc = self._incidents.get(key)
        if inc is None:
            inc = Incident(key, alert, alert.emitted_at, severity=alert.severity)
            self._incidents[key] = inc
            while len(self._incidents) > self.limit:
                oldest = min(self._incidents.values(), key=lambda i: i.last_at)
                del self._incidents[oldest.incident_id]
        else:
            inc.updates += 1
            inc.first_at = min(inc.first_at, alert.emitted_at)
            newer = (alert.incident_update, alert.emitted_at) >= (
                inc.alert.incident_update, inc.alert.emitted_at)  # fmt: skip
            if newer:
                inc.alert = alert
            if _SEVERITY[alert.severity] > _SEVERITY[inc.severity]:
                inc.severity = alert.severity
        for kind in [e.kind for e in alert.evidence] or [alert.kind]:
            if kind not in inc.kinds:
                inc.kinds.append(kind)
        return inc

    def incidents(self) -> list[Incident]:
        """Every incident, the most recently updated first."""
        return sorted(self._incidents.values(), key=lambda i: -i.last_at)

    def __len__(self) -> int:
        return len(self._incidents)
