"""The console's views: bounded windows, classes and their history, unknowns that
leave once labelled, incidents grouped, the map recomputed on a new store version."""

from __future__ import annotations

import numpy as np
import pytest
from console_records import alert, class_event, views

from streamlabel.schemas import UnknownRecord
from streamlabel.testing.records import label
from streamlabel.ui.incidents import IncidentBook
from streamlabel.ui.projection import MapInput, project
from streamlabel.ui.views import ConsoleViews
from streamlabel.ui.windows import Recent, SecondBuckets


def test_second_buckets_keep_only_the_window_however_long_the_stream() -> None:
    b = SecondBuckets(window_s=60)
    for t in range(10_000):
        b.add(float(t), "items")
    assert len(b) == 60
    assert b.seconds() == list(range(9_940, 10_000))
    assert b.totals["items"] == 10_000
    assert b.count("items", 10) == 10


def test_second_buckets_drop_a_late_record_older_than_the_window() -> None:
    b = SecondBuckets(window_s=5)
    b.add(100.0, "items")
    b.add(10.0, "items")  # far older than the window: counted in totals only
    assert b.seconds() == [96, 97, 98, 99, 100]
    assert b.series(["items"])["items"] == [0, 0, 0, 0, 1]
    assert b.totals["items"] == 2


def test_recent_forgets_the_least_recently_put() -> None:
    r: Recent[str, int] = Recent(3)
    for i in range(10):
        r.put(f"k{i}", i)
    assert len(r) == 3
    assert r.newest() == [9, 8, 7]
    with pytest.raises(ValueError, match="limit"):
        Recent(0)


def test_the_overview_counts_items_unknowns_and_labels_by_class() -> None:
    o = views().overview()
    assert (o["items_total"], o["unknown_total"]) == (13, 3)
    assert o["classes"] == 2
    assert o["provisional"] == 1
    assert o["discovered"] == 1
    assert o["incidents"] == 1
    assert o["alerts"] == 2
    s = o["series"]
    assert len(s["x"]) == len(s["items"]) == len(s["unknown_rate"])
    assert sum(s["by_class"]["billing"]) == 10


def test_labels_by_class_fold_the_smallest_classes_into_other() -> None:
    v = ConsoleViews()
    for i in range(12):
        for j in range(i + 1):
            v.take("labels", label(f"i{i}-{j}", f"c{i}", emitted_at=100.0 + j,
                                   class_name=f"n{i}"))  # fmt: skip
    by_class = v.overview()["series"]["by_class"]
    assert len(by_class) == 9
    assert "other" in by_class
    assert sum(by_class["other"]) == 1 + 2 + 3 + 4  # the four smallest classes
    assert "n11" in by_class


def test_a_class_keeps_its_latest_state_and_its_history() -> None:
    v = views()
    v.take("classes", class_event("d-7", "stolen-card", version=5, kind="renamed",
                                  cause="operator", origin="discovery"))  # fmt: skip
    v.take("classes", class_event("d-7", "stale", version=4, kind="updated"))  # older: ignored
    c = next(c for c in v.classes() if c.state.class_id == "d-7")
    assert c.state.name == "stolen-card"
    assert [h.kind for h in c.history] == ["created", "renamed", "updated"]
    assert not c.awaiting_review  # an operator looked at it
    assert v.store_version == 5


def test_a_discovered_provisional_class_awaits_review_and_comes_first() -> None:
    classes = views().classes()
    assert classes[0].state.class_id == "d-7"
    assert classes[0].awaiting_review
    assert not classes[1].awaiting_review


def test_an_unknown_item_leaves_the_view_once_a_revision_labels_it() -> None:
    v = views()
    assert [u.item_id for u in v.unknowns()] == ["i12", "i11", "i10"]
    u = v.unknowns()[0]
    assert u.text == "unknown text 12"
    assert u.nearest[0].name == "billing"
    assert u.vector is not None
    assert u.vector.shape == (8,)
    v.take("labels", label("i12", "c1", revision=1, emitted_at=1100.0))
    assert [u.item_id for u in v.unknowns()] == ["i11", "i10"]
    assert v.recent_labels()[0].item_id == "i12"


def test_an_unknown_record_after_its_revision_does_not_come_back() -> None:
    v = ConsoleViews()
    v.take("labels", label("x", "c1", revision=1))
    v.take("unknowns", UnknownRecord(item_id="x", text="t", vector=[1.0, 0.0], score=0.1,
                                     store_version=1))  # fmt: skip
    assert v.unknowns() == []


def test_the_unknowns_are_bounded() -> None:
    v = ConsoleViews(max_unknowns=5)
    for i in range(50):
        v.take("unknowns", UnknownRecord(item_id=f"u{i}", text="t", vector=[1.0, 0.0],
                                         score=0.1, store_version=1))  # fmt: skip
    assert [u.item_id for u in v.unknowns()] == [f"u{i}" for i in range(49, 44, -1)]


def test_the_signals_of_one_shift_read_as_one_incident() -> None:
    book = IncidentBook()
    for a in (alert("a1", 0), alert("a2", 1), alert("a3", 2), alert("solo", 0, incident=None)):
        book.take(a)
    incidents = {i.incident_id: i for i in book.incidents()}
    assert set(incidents) == {"inc-1", "solo"}
    inc = incidents["inc-1"]
    assert inc.updates == 3
    assert inc.alert.alert_id == "a3"
    assert len(inc.evidence) == 3
    assert inc.kinds == ["unknown_rate", "embedding"]
    assert [c.class_id for c in inc.share_changes] == ["unknown", "c1"]  # largest move first
    assert len(incidents["solo"].evidence) == 1  # an ungrouped alert is its own evidence


def test_an_older_update_read_late_does_not_replace_the_newer() -> None:
    book = IncidentBook()
    book.take(alert("a2", 1))
    book.take(alert("a1", 0))
    (inc,) = book.incidents()
    assert inc.alert.alert_id == "a2"
    assert inc.first_at == 1000.0


def test_the_map_places_prototypes_exemplars_and_unknowns() -> None:
    v = views()
    m = v.projection()
    assert m.counts == {"prototype": 2, "exemplar": 6, "unknown": 3}
    assert m is v.projection()  # nothing changed: not recomputed
    v.take("classes", class_event("c9", "new", version=9))
    again = v.projection()
    assert again is not m
    assert again.counts["prototype"] == 3


def test_pca_puts_the_largest_spread_on_the_first_axis() -> None:
    rng = np.random.default_rng(0)
    base = np.zeros(16)
    pts = []
    for i in range(40):
        vec = base.copy()
        vec[0] = 1.0
        vec[1] = (i - 20) / 4  # the spread
        vec[2] = rng.normal() * 0.01
        pts.append(MapInput("exemplar", f"e{i}", "c", None, vec))
    m = project(pts)
    xs = np.array([p.x for p in m.points])
    ys = np.array([p.y for p in m.points])
    assert xs.std() > 3 * ys.std()  # the vectors are normalised: the line bends to an arc
    assert m.explained[0] > m.explained[1] * 5


def test_the_map_leaves_out_vectors_of_another_dimension() -> None:
    pts = [MapInput("prototype", "a", "a", None, np.ones(4)),
           MapInput("prototype", "b", "b", None, np.arange(4.0)),
           MapInput("unknown", "u", "unknown", "t", np.ones(7))]  # fmt: skip
    assert project(pts).counts == {"prototype": 2, "exemplar": 0, "unknown": 0}
    assert project([]).points == []
