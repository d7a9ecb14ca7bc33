"""The demo's drift summary: one line per incident, its latest update."""

from __future__ import annotations

from streamlabel.cli.demo import _incidents
from streamlabel.schemas import DriftAlert


def alert(alert_id: str, incident: str | None, update: int = 0) -> DriftAlert:
    return DriftAlert(alert_id=alert_id, kind="embedding", statistic=2.0, threshold=1.0,
                      window=250, reference=500, at_item=update, severity="warning",
                      detail=alert_id, store_version=1, emitted_at=0.0, incident_id=incident,
                      incident_update=update)  # fmt: skip


def test_the_demo_lists_each_incident_once_at_its_latest_update_oldest_first() -> None:
    alerts = [alert("x0", "inc-1", 0), alert("x1", "inc-1", 1), alert("y0", "inc-2", 0),
              alert("reset", None), alert("x2", "inc-1", 2), alert("reset-2", None)]  # fmt: skip
    assert [a.alert_id for a in _incidents(alerts)] == ["x2", "y0", "reset", "reset-2"]


def test_an_update_read_out_of_order_does_not_hide_a_later_one() -> None:
    assert [a.alert_id for a in _incidents([alert("b", "i", 1), alert("a", "i", 0)])] == ["b"]
