"""Replicas of the prototype store: the event changelog (replay, compaction, order).

Synthetic data: classes are unit vectors scattered around orthonormal centres
in a small dimension, so the right answer is known for every vector.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from streamlabel.core.store import PrototypeStore, StoreConfig
from streamlabel.errors import StoreError
from streamlabel.testing import ManualClock

from store_world import Blobs, assert_same_classification, make_store, varied_history  # isort: skip  (tests/unit/core)


# --------------------------------------------------------------- changelog
def test_replaying_every_event_rebuilds_the_same_store() -> None:
    """A replica that applies the whole changelog classifies, versions and states alike."""
    blobs = Blobs()
    original, events = varied_history(blobs)
    replica = make_store(StoreConfig(exemplar_capacity=16))
    for event in events:
        assert replica.apply(event)
    probe = np.concatenate([blobs.around(c, 8) for c in range(6)])
    assert replica.states() == original.states()
    assert replica.version == original.version
    assert replica.thresholds() == original.thresholds()
    assert_same_classification(replica.classify(probe), original.classify(probe))


@pytest.mark.parametrize("shuffle", [False, True], ids=["offset-order", "any-order"])
def test_replaying_only_the_last_event_per_class_rebuilds_the_same_store(shuffle: bool) -> None:
    """What log compaction keeps (the last event per class id) is enough to rebuild the store."""
    blobs = Blobs()
    original, events = varied_history(blobs)
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
    assert_same_classification(replica.classify(probe), original.classify(probe))


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
