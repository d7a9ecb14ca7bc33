"""``bench scale``'s class-event table: the cost of one class event, leader and replica."""

from __future__ import annotations

from streamlabel.bench.scale_events import event_cost


def test_event_cost_times_leader_and_replica_and_derives_one_class_per_event() -> None:
    """Each side reports p50/p99 over the events; an event derives only its class; the
    replica ends on the leader's metric with the leader's label."""
    row = event_cost(600, events=6)  # 2,400 labelled exemplars: past the exact regime
    assert row["classes"] == 600
    assert row["events"] == 6
    for side in ("leader", "replica"):
        r = row[side]
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["classes_derived_per_event"] == 1
        assert 0 <= r["refits"] <= 6
    assert row["leader"]["refits"] == row["replica"]["refits"]
    assert row["same_label"] is True
