"""A deployment's progress snapshot: its readable line and the web console's readings."""

from __future__ import annotations

import pytest

from streamlabel.errors import StreamlabelError
from streamlabel.runtime.progress import Observation, Progress


def _progress(**fields: object) -> Progress:
    base = {"elapsed_s": 10.0, "items": 200, "items_per_s": 20.0, "lag": 7, "unknowns": 50,
            "dead_letters": 1, "classes": 4, "store_version": 9, "alerts": 0, "discovered": 1,
            "restarts": 2}  # fmt: skip
    return Progress(**{**base, **fields})  # type: ignore[arg-type]


def test_the_console_reads_lag_per_partition_across_workers_and_the_restarts() -> None:
    p = _progress(
        broker_resets=1,
        incidents=1,
        workers=[{"lag": {"sl.items:0": 3, "sl.items:1": 0}}, {"lag": {"sl.items:2": 4}}, {}],
    )
    assert p.console_readings() == {
        "lag": {"sl.items:0": 3, "sl.items:1": 0, "sl.items:2": 4},
        "restarts": 2, "workers": 3, "broker_resets": 1,
    }  # fmt: skip
    assert p.unknown_rate == 0.25
    assert "restarts 2" in p.line()
    assert "broker resets 1" in p.line()
    assert "incidents 1" in p.line()  # one shift reads as one incident, not its signals


class _Readings(Observation):
    """The waits of a runtime over scripted worker readings (no Ray)."""

    def __init__(self, readings: list[list[dict[str, object]]]) -> None:
        self._readings = readings

    def progress(self, timeout_s: float = 10.0) -> Progress:
        workers = self._readings.pop(0) if len(self._readings) > 1 else self._readings[0]
        return _progress(workers=workers)


def test_waiting_for_the_group_passes_once_partitions_are_split_and_quiet(monkeypatch) -> None:
    monkeypatch.setattr("streamlabel.runtime.progress.time.sleep", lambda s: None)
    joining = [{"assigned": ["i:0", "i:1", "i:2", "i:3"], "rebalances": 1}, {"assigned": []}]
    split = [
        {"assigned": ["i:0", "i:1"], "rebalances": 2},
        {"assigned": ["i:2", "i:3"], "rebalances": 1},
    ]
    runtime = _Readings([joining, joining, split])
    runtime.wait_until_assigned(timeout_s=5.0, quiet_s=0.0)
    assert runtime._readings == [split]  # it read until the split


def test_waiting_for_the_group_fails_when_two_workers_hold_one_partition(monkeypatch) -> None:
    monkeypatch.setattr("streamlabel.runtime.progress.time.sleep", lambda s: None)
    overlap = [{"assigned": ["i:0", "i:1"]}, {"assigned": ["i:1"]}]
    with pytest.raises(StreamlabelError, match="did not settle"):
        _Readings([overlap]).wait_until_assigned(timeout_s=0.05, quiet_s=0.0)
