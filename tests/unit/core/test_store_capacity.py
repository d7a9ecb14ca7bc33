"""What a store may hold: ``max_classes``, and what each class costs in memory and snapshots."""

from __future__ import annotations

import gc
import tracemalloc

import msgpack
import numpy as np
import pytest

from streamlabel.core.discovery import ClusterFinding, adopt
from streamlabel.core.store import PrototypeStore, StoreConfig
from streamlabel.errors import StoreError
from streamlabel.testing import ManualClock

DIM = 8


def _store(**config: object) -> PrototypeStore:
    return PrototypeStore(DIM, StoreConfig(**config), clock=ManualClock())  # type: ignore[arg-type]


def _vectors(seed: int, n: int = 4, dim: int = DIM) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_max_classes_defaults_to_ten_thousand() -> None:
    """A store is capped unless told otherwise (None = no cap)."""
    assert StoreConfig().max_classes == 10_000


def test_a_store_at_max_classes_refuses_a_new_class_of_every_kind() -> None:
    """learn of a new label, add_class and register_zero_shot raise a clear StoreError."""
    store = _store(max_classes=2)
    store.learn("a", _vectors(0))
    store.learn("b", _vectors(1))
    with pytest.raises(StoreError, match=r"store.max_classes=2 reached: cannot create class 'c'"):
        store.learn("c", _vectors(2))
    with pytest.raises(StoreError, match="max_classes=2"):
        store.add_class("d", "d", _vectors(3), status="provisional", origin="discovery")
    with pytest.raises(StoreError, match="max_classes=2"):
        store.register_zero_shot("e", _vectors(4, 1)[0], "a description")
    assert sorted(store.states()) == ["a", "b"]
    assert store.version == 2


def test_a_store_at_max_classes_still_teaches_and_revives_its_classes() -> None:
    """The cap counts retired classes too; examples for existing ones still apply."""
    store = _store(max_classes=2)
    store.learn("a", _vectors(0))
    store.learn("b", _vectors(1))
    store.retire("b")
    assert store.learn("a", _vectors(2)).kind == "updated"
    assert store.learn("b", _vectors(3)).state.status == "known"  # revived, not created
    with pytest.raises(StoreError, match="max_classes=2"):
        store.learn("c", _vectors(4))


def test_discovery_cannot_adopt_a_new_class_past_max_classes() -> None:
    """Adopting a finding that would create a class raises the same error."""
    store = _store(max_classes=1)
    store.learn("a", _vectors(0))
    finding = ClusterFinding(
        class_id="d1", name="d1", keywords=(), item_ids=tuple(f"u{i}" for i in range(8)),
        vectors=_vectors(1, 8), texts=("",) * 8, extends=False, cohesion=0.9,
    )  # fmt: skip
    with pytest.raises(StoreError, match="max_classes=1"):
        adopt(store, finding)


def test_no_cap_when_max_classes_is_none() -> None:
    store = _store(max_classes=None)
    for k in range(20):
        store.learn(f"c{k}", _vectors(k))
    assert len(store.states()) == 20


def test_a_class_costs_its_exemplars_once_in_memory() -> None:
    """64 exemplars of 384 dims held as one float32 array (state and store share it)."""
    dim, examples, classes = 384, 64, 20
    xs = [_vectors(k, examples, dim) for k in range(classes)]
    store = PrototypeStore(dim, StoreConfig(exemplar_capacity=examples), clock=ManualClock())
    gc.collect()
    tracemalloc.start()
    try:
        for k, x in enumerate(xs):
            store.learn(f"c{k}", x)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    exemplar_bytes = examples * dim * 4
    assert held / classes < 1.5 * exemplar_bytes, held / classes


def test_a_snapshot_costs_about_four_bytes_a_value_per_class() -> None:
    """Vectors go into snapshots as float32 bytes, not 9-byte msgpack floats; so does the
    metric fit (three ``dim x dim`` matrices: the metric and its two fold metrics)."""
    dim, examples = 384, 64
    store = PrototypeStore(dim, StoreConfig(exemplar_capacity=examples), clock=ManualClock())
    for k in range(5):
        store.learn(f"c{k}", _vectors(k, examples, dim))
    snapshot = store.snapshot()
    fit = snapshot.pop("metric")
    per_class = len(msgpack.packb(snapshot, use_bin_type=True)) / 5
    assert per_class < 1.2 * (examples + 1) * dim * 4, per_class
    assert fit["folds"] is not None
    assert len(msgpack.packb(fit, use_bin_type=True)) < 1.05 * 3 * (dim + 1) * dim * 4
