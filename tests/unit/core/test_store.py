"""The prototype store's mutation API: learning, versions, rename, merge, retire, bad inputs.

Synthetic data: classes are unit vectors scattered around orthonormal centres
in a small dimension, so the right answer is known for every vector.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from streamlabel.core.store import Classification, PrototypeStore, StoreConfig
from streamlabel.errors import StoreError
from streamlabel.schemas import UNKNOWN, ClassEvent
from streamlabel.testing import ManualClock

from store_world import DIM, Blobs, make_store  # isort: skip  (tests/unit/core)


def _labels(result: Classification) -> list[str]:
    return [result.label(i) for i in range(len(result.best))]


# ---------------------------------------------------------------- learning
def test_a_new_label_creates_its_class_at_once() -> None:
    """The first example of an unseen label creates the class; it is predicted right away."""
    blobs = Blobs()
    store = make_store()
    x = blobs.around(0, 1)
    event = store.learn("python", x, ["how to sort a list"])
    assert event.kind == "created"
    assert event.class_id == "python"
    assert event.state.count == 1
    assert event.state.origin == "feedback"
    assert event.state.status == "known"
    assert store.active_ids() == ["python"]
    assert _labels(store.classify(x)) == ["python"]


def test_version_increases_with_every_mutation() -> None:
    """Each event carries the next store version; a merge is two events."""
    blobs = Blobs()
    store = make_store()
    assert store.version == 0
    steps: list[Callable[[], ClassEvent | list[ClassEvent]]] = [
        lambda: store.learn("a", blobs.around(0, 2)),
        lambda: store.learn("a", blobs.around(0, 2)),
        lambda: store.add_class("b", "b", blobs.around(1, 2), status="known", origin="feedback"),
        lambda: store.extend("b", blobs.around(1, 2)),
        lambda: store.register_zero_shot("z", blobs.centres[2], "zed"),
        lambda: store.rename("a", "alpha"),
        lambda: store.retire("z"),
        lambda: store.merge("b", "a"),
    ]
    for step in steps:
        before = store.version
        out = step()
        events = out if isinstance(out, list) else [out]
        assert [e.store_version for e in events] == list(
            range(before + 1, before + 1 + len(events))
        )
        assert store.version == before + len(events)
        assert all(e.state.updated_version == e.store_version for e in events)


# --------------------------------------------------- rename, merge, retire
def test_rename_keeps_the_old_name_as_an_alias() -> None:
    """After a rename both names resolve to the class, and teaching the old name extends it."""
    blobs = Blobs()
    store = make_store()
    store.learn("sql", blobs.around(0, 4))
    event = store.rename("sql", "databases")
    assert event.kind == "renamed"
    assert event.state.name == "databases"
    assert "sql" in event.state.aliases
    assert store.resolve("sql") == "sql"
    assert store.resolve("databases") == "sql"
    store.learn("databases", blobs.around(0, 2))
    assert store.get("sql").count == 6
    assert store.active_ids() == ["sql"]


def test_resolve_finds_classes_by_name_and_alias() -> None:
    """A class created under an id is found by its later names and aliases, not by strangers."""
    blobs = Blobs()
    store = make_store()
    store.add_class(
        "novel-ab", "kafka-lag", blobs.around(0, 3), status="provisional", origin="discovery"
    )
    store.rename("novel-ab", "Kafka consumer lag")
    assert store.resolve("novel-ab") == "novel-ab"
    assert store.resolve("kafka-lag") == "novel-ab"
    assert store.resolve("Kafka consumer lag") == "novel-ab"
    assert store.resolve("nothing") is None


def test_merge_retires_the_source_into_the_target() -> None:
    """The source is retired with ``merged_into``; its names resolve to the target."""
    blobs = Blobs()
    store = make_store()
    store.learn("golang", blobs.around(0, 5))
    store.learn("go", blobs.around(1, 7))
    updated, merged = store.merge("golang", "go")
    assert (updated.kind, updated.class_id, updated.related) == ("updated", "go", ("golang",))
    assert (merged.kind, merged.class_id, merged.related) == ("merged", "golang", ("go",))
    assert store.get("golang").status == "retired"
    assert store.get("golang").merged_into == "go"
    assert store.get("go").count == 12
    assert store.resolve("golang") == "go"
    assert store.active_ids() == ["go"]
    result = store.classify(blobs.around(0, 5))
    assert set(result.class_ids) == {"go"}
    # teaching the merged-away label now teaches the target
    store.learn("golang", blobs.around(0, 1))
    assert store.get("go").count == 13
    assert store.get("golang").status == "retired"


def test_merge_recomputes_sub_prototypes_from_the_pooled_examples() -> None:
    """A merged class is multi-modal: its sub-prototypes are rebuilt from the pooled exemplars.

    Every other change of a class's examples recomputes its sub-prototypes; a merge
    that drops them leaves the target with only the mean between two modes.
    """
    blobs = Blobs()
    store = make_store(StoreConfig(max_sub_prototypes=2))
    store.learn("golang", blobs.around(0, 20))
    store.learn("go", blobs.around(1, 20))
    assert len(store.get("go").sub_prototypes) == 2
    store.merge("golang", "go")
    assert len(store.get("go").sub_prototypes) == 2


def test_merge_into_itself_or_an_unknown_class_raises() -> None:
    """Merging needs two distinct existing classes."""
    store = make_store()
    store.learn("a", Blobs().around(0, 2))
    with pytest.raises(StoreError, match="itself"):
        store.merge("a", "a")
    with pytest.raises(StoreError, match="no class"):
        store.merge("a", "b")


def test_retire_stops_prediction() -> None:
    """A retired class is never predicted again, but its state is kept."""
    blobs = Blobs()
    store = make_store()
    store.learn("a", blobs.around(0, 10))
    store.learn("b", blobs.around(1, 10))
    store.retire("a")
    result = store.classify(blobs.around(0, 10))
    assert "a" not in result.class_ids
    assert "a" not in _labels(result)
    assert store.active_ids() == ["b"]
    assert store.get("a").status == "retired"
    assert store.resolve("a") is None
    assert "a" not in store.thresholds()


def test_a_label_for_a_retired_class_revives_it() -> None:
    """Teaching a retired class's id brings it back as known, keeping its examples."""
    blobs = Blobs()
    store = make_store()
    store.learn("a", blobs.around(0, 4))
    store.retire("a")
    store.learn("a", blobs.around(0, 2))
    assert store.get("a").status == "known"
    assert store.get("a").count == 6
    assert store.active_ids() == ["a"]


def test_a_label_naming_a_retired_class_revives_it_instead_of_creating_a_twin() -> None:
    """Labels are class names: one naming a retired class (id ≠ name) brings that class back.

    Discovered classes have ids like ``novel-…`` and readable names; teaching the
    name of such a class after it was retired must not create a second class
    with the same name and none of the old examples.
    """
    blobs = Blobs()
    store = make_store()
    store.add_class(
        "novel-1", "kafka-lag", blobs.around(0, 4), status="provisional", origin="discovery"
    )
    store.retire("novel-1")
    event = store.learn("kafka-lag", blobs.around(0, 2))
    assert event.class_id == "novel-1"
    assert store.get("novel-1").status == "known"
    assert store.get("novel-1").count == 6
    assert list(store.states()) == ["novel-1"]


def test_labelled_examples_make_a_provisional_class_known() -> None:
    """A discovered class confirmed by feedback is promoted to known."""
    blobs = Blobs()
    store = make_store()
    store.add_class(
        "novel-1", "kafka", blobs.around(0, 3), status="provisional", origin="discovery"
    )
    store.learn("kafka", blobs.around(0, 1))
    assert store.get("novel-1").status == "known"
    assert store.get("novel-1").count == 4


def test_zero_shot_class_is_predicted_from_its_description() -> None:
    """A class known only by a description vector catches items near it."""
    blobs = Blobs()
    store = make_store()
    store.learn("a", blobs.around(0, 10))
    event = store.register_zero_shot("billing", blobs.centres[3], "invoices and refunds")
    assert event.state.origin == "zero_shot"
    assert event.state.description == "invoices and refunds"
    result = store.classify(blobs.around(3, 5))
    assert [result.class_ids[b] for b in result.best] == ["billing"] * 5


# -------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("bad_dim", [DIM - 1, DIM + 1])
def test_wrong_dimension_raises_store_error(bad_dim: int) -> None:
    """Vectors of another dimension are refused by every entry point."""
    blobs = Blobs()
    store = make_store()
    store.learn("a", blobs.around(0, 2))
    bad = np.ones((2, bad_dim), np.float32)
    with pytest.raises(StoreError, match="shape"):
        store.learn("a", bad)
    with pytest.raises(StoreError, match="shape"):
        store.learn("new", bad)
    with pytest.raises(StoreError, match="shape"):
        store.classify(bad)
    with pytest.raises(StoreError, match="shape"):
        store.add_class("b", "b", bad, status="known", origin="feedback")
    assert store.get("a").count == 2
    assert store.version == 1


def test_non_finite_vectors_raise_store_error() -> None:
    """NaN or infinite examples would poison the mean: they are refused."""
    store = make_store()
    bad = np.ones((1, DIM), np.float32)
    bad[0, 3] = np.nan
    with pytest.raises(StoreError, match="NaN"):
        store.learn("a", bad)
    assert store.states() == {}


def test_invalid_class_ids_and_dims_raise_store_error() -> None:
    """Duplicate or reserved ids, empty classes, unknown ids and a zero dim are refused."""
    blobs = Blobs()
    store = make_store()
    store.learn("a", blobs.around(0, 1))
    with pytest.raises(StoreError, match="already exists"):
        store.add_class("a", "a", blobs.around(0, 1), status="known", origin="feedback")
    with pytest.raises(StoreError, match="reserved"):
        store.add_class(UNKNOWN, "x", blobs.around(0, 1), status="known", origin="feedback")
    with pytest.raises(StoreError, match="at least one"):
        store.add_class("b", "b", np.zeros((0, DIM)), status="known", origin="feedback")
    with pytest.raises(StoreError, match="no class"):
        store.get("missing")
    with pytest.raises(StoreError, match="no active class"):
        store.member_score_quantile("missing", 0.5)
    with pytest.raises(StoreError, match="positive"):
        PrototypeStore(0, clock=ManualClock())
