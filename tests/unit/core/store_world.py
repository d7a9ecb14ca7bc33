"""A small vector world for the prototype store's tests: class centres, a store, a history."""

from __future__ import annotations

import numpy as np

from streamlabel.core.embedder import l2_normalize
from streamlabel.core.store import Classification, PrototypeStore, StoreConfig
from streamlabel.schemas import ClassEvent
from streamlabel.testing import ManualClock

DIM = 32


class Blobs:
    """Orthonormal class centres and a seeded generator of vectors around them."""

    def __init__(self, n_centres: int = 6, dim: int = DIM, spread: float = 0.6, seed: int = 0):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((dim, n_centres)))
        self.centres = q.T.astype(np.float32)
        self.dim = dim
        self.spread = spread
        self.rng = rng

    def around(self, c: int, n: int) -> np.ndarray:
        noise = self.rng.standard_normal((n, self.dim)) * self.spread / np.sqrt(self.dim)
        return l2_normalize(self.centres[c] + noise)


def make_store(config: StoreConfig | None = None, dim: int = DIM) -> PrototypeStore:
    """An empty store on a fixed clock."""
    return PrototypeStore(dim, config, clock=ManualClock(1_000.0))


def assert_same_classification(a: Classification, b: Classification) -> None:
    """Two classifications are identical, array by array."""
    assert a.class_ids == b.class_ids
    np.testing.assert_array_equal(a.best, b.best)
    np.testing.assert_array_equal(a.accepted, b.accepted)
    np.testing.assert_array_equal(a.top_idx, b.top_idx)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.thresholds, b.thresholds)
    np.testing.assert_array_equal(a.top_scores, b.top_scores)


def varied_history(blobs: Blobs) -> tuple[PrototypeStore, list[ClassEvent]]:
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
