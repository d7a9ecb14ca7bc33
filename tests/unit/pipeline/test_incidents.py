"""The incident bookkeeping itself (``Incidents``, ``RecentRows``, ``share_changes``):

* a signal within the window of the incident's latest one joins it, one past it
  opens a new incident; the window slides with each signal;
* an incident's record keeps its first signal and the latest ones (bounded);
* the two sides of a shift come from the rows kept, texts cut short; rows
  without text give no examples.
"""

from __future__ import annotations

import pytest

from streamlabel.core.drift import DriftSignal, Severity
from streamlabel.pipeline.incidents import (
    EXAMPLE_CHARS,
    MAX_EVIDENCE,
    SHARE_WINDOW,
    Incidents,
    RecentRows,
    share_changes,
)


def fired(at: int, severity: Severity = "warning") -> DriftSignal:
    stat = 70.0 if severity == "critical" else 40.0
    return DriftSignal(
        "embedding", stat, 30.0, None, 250, 500, at, severity, (f"k{at}",), f"at {at}"
    )


def test_a_signal_within_the_window_joins_one_past_it_opens_a_new_incident() -> None:
    incidents = Incidents(window=100, history=RecentRows())
    updates = [incidents.add(fired(at), now=0.0) for at in (1000, 1100, 1150, 1251, 1300)]
    assert [(u.opened.at_item, u.update) for u in updates] == [
        (1000, 0), (1000, 1), (1000, 2), (1251, 0), (1251, 1)
    ]  # fmt: skip
    assert [e.at_item for e in updates[-1].evidence] == [1251, 1300]


def test_severity_and_affected_classes_accumulate_over_the_incident() -> None:
    incidents = Incidents(window=100, history=RecentRows())
    incidents.add(fired(10), now=0.0)
    critical = incidents.add(fired(20, severity="critical"), now=1.0)
    later = incidents.add(fired(30), now=2.0)
    assert (critical.severity, later.severity) == ("critical", "critical")
    assert later.affected_classes == ("k10", "k20", "k30")
    assert [e.emitted_at for e in later.evidence] == [0.0, 1.0, 2.0]


def test_a_long_incident_keeps_its_first_and_latest_signals() -> None:
    incidents = Incidents(window=100, history=RecentRows())
    for at in range(0, 10 * MAX_EVIDENCE, 10):
        last = incidents.add(fired(at), now=0.0)
    assert last.update == MAX_EVIDENCE * 10 // 10 - 1
    assert len(last.evidence) == MAX_EVIDENCE
    assert last.evidence[0].at_item == 0
    assert [e.at_item for e in last.evidence[1:]] == list(
        range(10 * MAX_EVIDENCE - 10 * (MAX_EVIDENCE - 1), 10 * MAX_EVIDENCE, 10)
    )
    assert f"{MAX_EVIDENCE * 10 // 10} signals" in last.detail


def test_recent_rows_forget_the_oldest_and_cut_texts() -> None:
    rows = RecentRows(capacity=5)
    rows.extend(["a"] * 4, [f"t{i}" for i in range(4)])
    rows.extend(["b", "b"], ["x" * (EXAMPLE_CHARS + 10), None])
    assert rows.seen == 6
    assert rows.span(0, 3) == [("a", "t1"), ("a", "t2")]  # position 0 is gone
    assert rows.span(4, 100) == [("b", "x" * EXAMPLE_CHARS), ("b", None)]
    assert rows.span(5, 5) == []
    assert rows.span(-10, 0) == []


def test_the_sides_of_a_shift_come_from_the_rows_around_the_opening_signal() -> None:
    history = RecentRows()
    n = 3 * SHARE_WINDOW
    history.extend(["a"] * SHARE_WINDOW * 2 + ["b"] * SHARE_WINDOW,
                   [f"old {i}" for i in range(2 * SHARE_WINDOW)]
                   + [f"new {i}" for i in range(SHARE_WINDOW)])  # fmt: skip
    update = Incidents(window=100, history=history).add(fired(n - 1), now=0.0)
    # before: the SHARE_WINDOW rows ending SHARE_WINDOW ahead of the signal
    assert update.examples_before == ("old 500", "old 501", "old 502")
    assert update.examples_after == (f"new {SHARE_WINDOW - 1}", f"new {SHARE_WINDOW - 2}",
                                     f"new {SHARE_WINDOW - 3}")  # fmt: skip
    assert [(c.class_id, c.before, c.after) for c in update.share_changes] == [
        ("a", 1.0, 0.0), ("b", 0.0, 1.0)
    ]  # fmt: skip


def test_rows_without_text_give_no_examples_and_an_empty_side_no_share_changes() -> None:
    history = RecentRows()
    history.extend(["a"] * 300, [None] * 300)
    update = Incidents(window=100, history=history).add(fired(299), now=0.0)
    assert update.examples_before == ()
    assert update.examples_after == ()
    assert update.share_changes == ()  # nothing before position 0


def test_share_changes_keep_the_five_largest_moves() -> None:
    before = [(c, None) for c in "abcdefg" for _ in range(10)]
    after = [(c, None) for c, k in zip("abcdefg", (1, 5, 10, 12, 20, 2, 20), strict=True)
             for _ in range(k)]  # fmt: skip
    moved = share_changes(before, after)  # of 70 after: e, g +14 points, a -13, f -11, b -7, d +3
    assert [c.class_id for c in moved] == ["e", "g", "a", "f", "b"]  # ties by id; c did not move
    assert share_changes([], after) == ()


def test_the_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        Incidents(window=0, history=RecentRows())
