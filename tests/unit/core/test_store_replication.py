"""Replicas of the prototype store: the event changelog (replay, compaction, order) and snapshots.

Synthetic data: classes are unit vectors scattered around orthonormal centres
in a small dimension, so the right answer is known for every vector.
"""

from __future__ import annotations

import functools
import json
import random

import msgpack
import numpy as np
import pytest

from streamlabel.core.store import Classification, PrototypeStore, StoreConfig
from streamlabel.errors import SnapshotError, StoreError
from streamlabel.schemas import ClassEvent
from streamlabel.testing import ManualClock

from store_world import DIM, Blobs, make_store  # isort: skip  (tests/unit/core)


def _assert_same_classification(a: Classification, b: Classification) -> None:
    assert a.class_ids == b.class_ids
    np.testing.assert_array_equal(a.best, b.best)
    np.testing.assert_array_equal(a.accepted, b.accepted)
    np.testing.assert_array_equal(a.top_idx, b.top_idx)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.thresholds, b.thresholds)
    np.testing.assert_array_equal(a.top_scores, b.top_scores)


def _history(blobs: Blobs) -> tuple[PrototypeStore, list[ClassEvent]]:
    """A store after a varied history (every kind of event), and the events it emitted."""
    clock = ManualClock(50.0)
    store = PrototypeStore(DIM, StoreConfig(exemplar_capacity=16), clock=clock)
    events: list[ClassEvent] = []
    for c, name in enumerate(["python", "sql", "rust", "go"]):
        events.append(store.learn(name, blobs.around(c, 12), [f"{name} q{i}" for i in range(12)]))
        clock.advance(1)
    events.append(store.learn("python", blobs.around(0, 10)))
    events.append(store.rename("sql", "databases"))
    events.append(store.learn("databases", blobs.around(1, 6)))
    events += store.merge("go", "rust")
    events.append(
        store.add_class(
            "novel-1", "kafka-lag", blobs.around(4, 25), status="provisional", origin="discovery"
        )
    )
    events.append(store.extend("novel-1", blobs.around(4, 5), cause="discovery"))
    events.append(store.register_zero_shot("billing", blobs.centres[5], "invoices and refunds"))
    events.append(store.retire("billing"))
    events.append(store.learn("python", blobs.around(0, 3)))
    return store, events


# --------------------------------------------------------------- changelog
def test_replaying_every_event_rebuilds_the_samemake_store() -> None:
    """A replica that applies the whole changelog classifies, versions and states alike."""
    blobs = Blobs()
    original, events = _history(blobs)
    replica = make_store(StoreConfig(exemplar_capacity=16))
    for event in events:
        assert replica.apply(event)
    probe = np.concatenate([blobs.around(c, 8) for c in range(6)])
    assert replica.states() == original.states()
    assert replica.version == original.version
    assert replica.thresholds() == original.thresholds()
    _assert_same_classification(replica.classify(probe), original.classify(probe))


@pytest.mark.parametrize("shuffle", [False, True], ids=["offset-order", "any-order"])
def test_replaying_only_the_last_event_per_class_rebuilds_the_samemake_store(shuffle: bool) -> None:
    """What log compaction keeps (the last event per class id) is enough to rebuild the store."""
    blobs = Blobs()
    original, events = _history(blobs)
    last = {e.class_id: e for e in events}
    compacted = sorted(last.values(), key=lambda e: e.store_version)
    if shuffle:
        random.Random(3).shuffle(compacted)
    assert len(compacted) < len(events)
    replica = make_store(StoreConfig(exemplar_capacity=16))
    for event in compacted:
        replica.apply(event)
    probe = np.concatenate([blobs.around(c, 8) for c in range(6)])
    assert replica.states() == original.states()
    assert replica.version == original.version
    assert replica.thresholds() == original.thresholds()
    _assert_same_classification(replica.classify(probe), original.classify(probe))


def test_a_stale_event_after_a_newer_one_is_ignored() -> None:
    """Events arriving out of order cannot roll a class back."""
    blobs = Blobs()
    source = make_store()
    old = source.learn("a", blobs.around(0, 3))
    new = source.learn("a", blobs.around(0, 3))
    replica = make_store()
    assert replica.apply(new)
    assert not replica.apply(old)
    assert replica.get("a") == new.state
    assert replica.version == new.store_version


def test_applying_the_same_event_twice_changes_nothing() -> None:
    """Re-delivery (at-least-once) is harmless."""
    blobs = Blobs()
    source = make_store()
    event = source.learn("a", blobs.around(0, 3))
    replica = make_store()
    assert replica.apply(event)
    states, version = replica.states(), replica.version
    assert not replica.apply(event)
    assert replica.states() == states
    assert replica.version == version


def test_apply_of_a_state_with_the_wrong_dimension_raises() -> None:
    """A replica refuses events from a store of another dimension."""
    event = PrototypeStore(8, clock=ManualClock()).learn("a", np.eye(8, dtype=np.float32)[:2])
    replica = make_store()
    with pytest.raises(StoreError, match="dimension"):
        replica.apply(event)
    assert replica.states() == {}
    assert replica.version == 0


# ---------------------------------------------------------------- snapshot
def test_snapshot_restore_gives_the_samemake_store() -> None:
    """A snapshot that went through msgpack restores the same states, version and classification."""
    blobs = Blobs()
    original, _ = _history(blobs)
    snapshot = msgpack.unpackb(msgpack.packb(original.snapshot(), use_bin_type=True), raw=False)
    restored = PrototypeStore.restore(
        snapshot, StoreConfig(exemplar_capacity=16), clock=ManualClock()
    )
    probe = np.concatenate([blobs.around(c, 8) for c in range(6)])
    assert restored.states() == original.states()
    assert restored.version == original.version
    assert restored.dim == original.dim
    _assert_same_classification(restored.classify(probe), original.classify(probe))


def test_a_snapshot_with_vectors_as_float_lists_still_restores_the_samemake_store() -> None:
    """Snapshots written before vectors were float32 bytes (the JSON form, and before the
    metric fit was kept) restore the same: the metric is fitted on the states."""
    blobs = Blobs()
    original, _ = _history(blobs)
    snapshot = {
        **{k: v for k, v in original.snapshot().items() if k not in ("metric", "refit")},
        "classes": [s.model_dump(mode="json") for s in original.states().values()],
    }
    restored = PrototypeStore.restore(
        json.loads(json.dumps(snapshot)), StoreConfig(exemplar_capacity=16), clock=ManualClock()
    )
    probe = np.concatenate([blobs.around(c, 8) for c in range(6)])
    assert restored.states() == original.states()
    assert restored.version == original.version
    _assert_same_classification(restored.classify(probe), original.classify(probe))


def test_a_snapshot_holds_vectors_as_float32_bytes() -> None:
    """A class's exemplars cost 4 bytes a value in a snapshot, not 9 (msgpack float64)."""
    original, _ = _history(Blobs())
    state = original.snapshot()["classes"][0]
    assert state["exemplars"]
    assert all(isinstance(r, bytes) for r in state["exemplars"])
    assert all(len(r) == 4 * DIM for r in state["exemplars"])
    assert isinstance(state["mean"], bytes)


@functools.cache
def _bad_snapshots() -> dict[str, object]:
    good = _history(Blobs())[0].snapshot()
    wrong_dim = dict(good, dim=DIM + 1)
    bad_class = dict(good, classes=[dict(good["classes"][0], count=-1)])
    missing = {k: v for k, v in good.items() if k != "classes"}
    return {
        "future-format": dict(good, format=99),
        "wrong-dim": wrong_dim,
        "zero-dim": dict(good, dim=0),
        "invalid-class": bad_class,
        "missing-classes": missing,
        "not-a-dict": "snapshot",
        "none": None,
        "classes-not-a-list": dict(good, classes=5),
        "version-not-a-number": dict(good, version="v3"),
    }


@pytest.mark.parametrize("name", list(_bad_snapshots()))
def test_restore_of_a_bad_snapshot_raises_snapshot_error(name: str) -> None:
    """Unknown formats and inconsistent content raise SnapshotError (never a bare KeyError...)."""
    with pytest.raises(SnapshotError):
        PrototypeStore.restore(_bad_snapshots()[name], clock=ManualClock())  # type: ignore[arg-type]
