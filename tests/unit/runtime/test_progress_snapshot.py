"""A deployment's progress snapshot: its readable line and the web console's readings."""

from __future__ import annotations

from streamlabel.runtime.progress import Progress


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
