"""The arithmetic of ``streamlabel bench throughput`` (no broker, no model)."""

from __future__ import annotations

import pytest

from streamlabel.bench.throughput import (
    WORKER_STAGES,
    batch_shape,
    latency_percentiles,
    overdue,
    send_ticks,
    stage_table,
)
from streamlabel.errors import StreamlabelError


def test_stage_table_takes_the_difference_over_the_span() -> None:
    before = {"embed": 10.0, "decode": 1.0, "commit": 0.5}
    after = {"embed": 30.0, "decode": 2.0, "commit": 0.5, "publish": 1.0}
    t = stage_table(before, after, 2000, ("decode", "embed", "publish", "commit"))
    assert t["embed"]["ms_per_item"] == pytest.approx(10.0)
    assert t["decode"]["ms_per_item"] == pytest.approx(0.5)
    assert t["commit"] == {"ms_per_item": 0.0, "share": 0.0}
    assert t["publish"]["share"] == pytest.approx(1.0 / 22.0, abs=1e-4)
    assert sum(v["share"] for v in t.values()) == pytest.approx(1.0, abs=1e-3)


def test_stage_table_never_reports_negative_time() -> None:
    """A restarted worker's counters start again from 0: its stages do not go negative."""
    t = stage_table({"embed": 5.0}, {"embed": 1.0}, 10, ("embed",))
    assert t["embed"]["ms_per_item"] == 0.0


def test_stage_table_lists_every_stage_asked_for() -> None:
    t = stage_table({}, {}, 0, WORKER_STAGES)
    assert list(t) == list(WORKER_STAGES)
    assert all(v == {"ms_per_item": 0.0, "share": 0.0} for v in t.values())


def test_latency_percentiles_use_only_items_seen_at_both_ends() -> None:
    sent = {f"i{k}": float(k) for k in range(100)}
    labelled = {f"i{k}": float(k) + 10.0 + (90.0 if k == 99 else 0.0) for k in range(100)}
    labelled["stray"] = 5.0  # labelled but not sent by this stream: ignored
    out = latency_percentiles(sent, labelled)
    assert out["samples"] == 100
    assert out["p50_ms"] == pytest.approx(10.0)
    assert out["max_ms"] == pytest.approx(100.0)
    assert 10.0 < out["p99_ms"] <= 100.0


def test_latency_percentiles_without_any_label_is_an_error() -> None:
    with pytest.raises(StreamlabelError, match="no item"):
        latency_percentiles({"a": 1.0}, {"b": 2.0})


@pytest.mark.parametrize(("rate", "tick_s"), [(300.0, 0.01), (57.3, 0.01), (1000.0, 0.025)])
def test_the_paced_stream_sends_every_item_once_within_a_tick_of_its_moment(
    rate: float, tick_s: float
) -> None:
    plan = send_ticks(2000, rate, tick_s)
    sent = [k for _, ks in plan for k in ks]
    assert sent == list(range(2000))  # each once, in order
    for at, ks in plan:
        for k in ks:
            assert k / rate <= at + 1e-9  # never before it fell due...
            assert at - k / rate <= tick_s + 1e-9  # ...and at most a tick after
    # ticks carry what a tick's worth of the rate brings (one request each)
    assert len(plan) == pytest.approx(2000 / (int(rate * tick_s) + 1), rel=0.35)


def test_a_late_tick_takes_every_tick_already_due_with_it() -> None:
    plan = send_ticks(10, 100.0, 0.005)  # one item a tick: at 5, 15, 25... ms
    assert [ks for _, ks in plan] == [[k] for k in range(10)]
    assert overdue(plan, 0, 0.005) == ([0], 1)  # on time: its own items only
    items, nxt = overdue(plan, 2, 0.0655)  # tick 2 (due at 25 ms) runs 40 ms late
    assert (items, nxt) == ([2, 3, 4, 5, 6], 7)
    assert overdue(plan, 9, 5.0) == ([9], 10)  # the last tick ends the plan


def test_without_ticks_each_item_goes_alone_at_its_moment() -> None:
    plan = send_ticks(4, 200.0, 0.0)
    assert plan == [(0.0, [0]), (0.005, [1]), (0.01, [2]), (0.015, [3])]


def test_batch_shape_counts_batches_items_rebalances_and_stage_time_per_batch() -> None:
    before = [
        {"batches": 10, "items": 100, "rebalances": 1, "stage_s": {"embed": 1.0, "poll": 0.1}},
        {"batches": 5, "items": 40, "rebalances": 1, "stage_s": {"embed": 0.5}},
    ]
    after = [
        {"batches": 20, "items": 150, "rebalances": 2, "stage_s": {"embed": 1.5, "poll": 0.2}},
        {"batches": 15, "items": 90, "rebalances": 1, "stage_s": {"embed": 1.0}},
    ]
    shape = batch_shape(before, after)
    assert shape["batches"] == 20
    assert shape["items_per_batch"] == 5.0
    assert shape["rebalances"] == 1
    assert shape["embed_ms"] == pytest.approx(50.0)
    assert shape["poll_ms"] == pytest.approx(5.0)
