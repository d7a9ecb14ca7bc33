"""The prototype store's snapshot: a msgpack round trip, older forms, bad snapshots.

Synthetic data: classes are unit vectors scattered around orthonormal centres
in a small dimension, so the right answer is known for every vector.
"""

from __future__ import annotations

import functools
import json

import msgpack
import numpy as np
import pytest

from streamlabel.core.store import PrototypeStore, StoreConfig
from streamlabel.errors import SnapshotError
from streamlabel.testing import ManualClock

from store_world import DIM, Blobs, assert_same_classification, varied_history  # isort: skip  (tests/unit/core)


def test_snapshot_restore_gives_the_same_store() -> None:
    """A snapshot that went through msgpack restores the same states, version and classification."""
    blobs = Blobs()
    original, _ = varied_history(blobs)
    snapshot = msgpack.unpackb(msgpack.packb(original.snapshot(), use_bin_type=True), raw=False)
    restored = PrototypeStore.restore(
        snapshot, StoreConfig(exemplar_capacity=16), clock=ManualClock()
    )
    probe = np.concatenate([blobs.around(c, 8) for c in range(6)])
    assert restored.states() == original.states()
    assert restored.version == original.version
    assert restored.dim == original.dim
    assert_same_classification(restored.classify(probe), original.classify(probe))


def test_a_snapshot_with_vectors_as_float_lists_still_restores_the_same_store() -> None:
    """Snapshots written before vectors were float32 bytes (the JSON form, and before the
    metric fit was kept) restore the same: the metric is fitted on the states."""
    blobs = Blobs()
    original, _ = varied_history(blobs)
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
    assert_same_classification(restored.classify(probe), original.classify(probe))


def test_a_snapshot_holds_vectors_as_float32_bytes() -> None:
    """A class's exemplars cost 4 bytes a value in a snapshot, not 9 (msgpack float64)."""
    original, _ = varied_history(Blobs())
    state = original.snapshot()["classes"][0]
    assert state["exemplars"]
    assert all(isinstance(r, bytes) for r in state["exemplars"])
    assert all(len(r) == 4 * DIM for r in state["exemplars"])
    assert isinstance(state["mean"], bytes)


@functools.cache
def _bad_snapshots() -> dict[str, object]:
    good = varied_history(Blobs())[0].snapshot()
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
