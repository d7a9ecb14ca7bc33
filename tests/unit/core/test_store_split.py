"""The store's operator edits: a split's arithmetic on the source class (exact while the
reservoir holds every example, an estimate once it is a sample) and a fixed threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamlabel.core.store import StoreConfig
from streamlabel.errors import StoreError

from store_world import Blobs, make_store  # isort: skip  (tests/unit/core)


def test_a_split_removes_the_examples_exactly_while_the_reservoir_holds_them_all() -> None:
    blobs, store = Blobs(), make_store(StoreConfig(exemplar_capacity=64))
    a, b = blobs.around(0, 20), blobs.around(1, 5)
    store.learn("a", np.concatenate([a, b]), [f"a{i}" for i in range(20)] + ["b"] * 5)
    events = store.split_off("a", "b", b, ["b"] * 5)
    assert [(e.class_id, e.kind) for e in events] == [("b", "created"), ("a", "updated")]
    rest = store.get("a")
    assert rest.count == 20
    np.testing.assert_allclose(np.asarray(rest.mean), a.mean(axis=0), atol=1e-5)
    assert rest.exemplar_texts == tuple(f"a{i}" for i in range(20))
    assert store.get("b").count == 5


def test_vectors_that_never_were_examples_leave_a_complete_reservoir_as_it_was() -> None:
    blobs, store = Blobs(), make_store()
    store.learn("a", blobs.around(0, 10))
    before = store.get("a")
    store.split_off("a", "b", blobs.around(0, 3), ["x"] * 3)
    after = store.get("a")
    assert (after.count, after.mean, after.exemplars) == (
        before.count,
        before.mean,
        before.exemplars,
    )


def test_a_sampled_reservoir_takes_unmatched_vectors_as_examples_up_to_those_outside_it() -> None:
    blobs, store = Blobs(), make_store(StoreConfig(exemplar_capacity=4))
    examples = blobs.around(0, 10)  # 6 of them are outside the reservoir
    store.learn("a", examples)
    kept = np.asarray(store.get("a").exemplars)
    outsiders = [v for v in examples if not (np.abs(kept - v).max(axis=1) < 1e-6).any()][:2]
    store.split_off("a", "b", np.stack(outsiders), ["x", "y"])
    rest = store.get("a")
    assert rest.count == 8
    assert len(rest.exemplars) == 4
    expected = (examples.sum(axis=0) - np.sum(outsiders, axis=0)) / 8
    np.testing.assert_allclose(np.asarray(rest.mean), expected, atol=1e-5)
    many = blobs.around(2, 20)  # more unmatched vectors than examples outside the reservoir
    store.split_off("a", "c", many, ["z"] * 20)
    assert store.get("a").count == 4  # only the 4 outside the reservoir could have been taken


def test_a_split_that_would_empty_the_source_or_reuse_an_id_changes_nothing() -> None:
    blobs, store = Blobs(), make_store()
    vectors = blobs.around(0, 3)
    store.learn("a", vectors)
    store.learn("b", blobs.around(1, 3))
    before, version = store.states(), store.version
    with pytest.raises(StoreError, match="would be left without an example"):
        store.split_off("a", "new", vectors, ["x"] * 3)
    with pytest.raises(StoreError, match="already exists"):
        store.split_off("a", "b", vectors[:1], ["x"])
    store.retire("b")
    with pytest.raises(StoreError, match="is retired"):
        store.split_off("b", "new", vectors[:1], ["x"])
    assert store.states() == {**before, "b": store.get("b")}
    assert store.version == version + 1  # the retirement only


def test_a_fixed_threshold_replaces_the_calibrated_one_until_cleared() -> None:
    blobs, store = Blobs(), make_store()
    store.learn("a", blobs.around(0, 12))
    store.learn("b", blobs.around(1, 12))
    calibrated = store.thresholds()
    event = store.set_threshold("a", 0.25)
    assert (event.kind, event.state.threshold_override) == ("threshold_set", 0.25)
    assert store.thresholds() == {"a": pytest.approx(0.25), "b": calibrated["b"]}
    store.set_threshold("a", None)
    assert store.thresholds() == pytest.approx(calibrated)


@pytest.mark.parametrize("value", [1.0001, -1.5, math.nan, math.inf, -math.inf])
def test_a_threshold_outside_minus_one_to_one_is_refused(value: float) -> None:
    blobs, store = Blobs(), make_store()
    store.learn("a", blobs.around(0, 3))
    with pytest.raises(StoreError, match=r"a threshold is a number in \[-1, 1\]"):
        store.set_threshold("a", value)
    assert store.get("a").threshold_override is None
