"""Regressions for defects found in review: each test names the behaviour that was broken."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from streamlabel.core.clustering import HDBSCANClustering
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.metric import Metric
from streamlabel.core.store import PrototypeStore, StoreConfig
from streamlabel.errors import DecodeError, StoreError
from streamlabel.schemas import ClassEvent, decode
from streamlabel.testing import ManualClock

DIM = 32


def blobs(n_classes: int, n: int, seed: int = 0, spread: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((DIM, n_classes)))
    return [l2_normalize(c + spread / np.sqrt(DIM) * rng.standard_normal((n, DIM))) for c in q.T]


def test_merge_refuses_a_retired_class_so_no_merge_cycle_can_form() -> None:
    store = PrototypeStore(DIM, clock=ManualClock(0))
    a, b = blobs(2, 10)
    store.learn("a", a)
    store.learn("b", b)
    store.merge("a", "b")
    with pytest.raises(StoreError, match="retired"):
        store.merge("b", "a")


def test_a_change_replicas_would_reject_is_refused_on_the_leader() -> None:
    store = PrototypeStore(DIM, clock=ManualClock(0))
    store.learn("a", blobs(1, 5)[0])
    version = store.version
    with pytest.raises(StoreError, match="invalid change"):
        store.rename("a", "")
    assert store.version == version
    assert store.get("a").name == "a"
    with pytest.raises(StoreError, match="invalid class"):
        store.add_class("", "", blobs(1, 2)[0], status="known", origin="feedback")


def test_thresholds_stay_in_the_metric_space_when_folds_are_too_small_to_learn_it() -> None:
    # 3 classes x 8 examples: the full set learns a metric (24 >= 20), a fold does not.
    groups = blobs(4, 8, seed=5)
    store = PrototypeStore(DIM, clock=ManualClock(0))
    for i, g in enumerate(groups[:3]):
        store.learn(f"k{i}", g)
    assert not store.metric.is_identity
    unseen = blobs(4, 200, seed=5)[3]
    assert store.classify(unseen).accepted.mean() < 0.2


@pytest.mark.parametrize("folds", [1, 2])
def test_discovered_class_threshold_is_capped_with_any_number_of_folds(folds: int) -> None:
    groups = blobs(5, 40, seed=2)
    store = PrototypeStore(DIM, StoreConfig(calibration_folds=folds), clock=ManualClock(0))
    for i, g in enumerate(groups[:4]):
        store.learn(f"k{i}", g)
    core = l2_normalize(groups[4][:1] + 0.05 * np.random.default_rng(0).standard_normal((60, DIM)))
    store.add_class("novel-x", "x", core, status="provisional", origin="discovery")
    t = store.thresholds()
    assert t["novel-x"] <= float(np.median([t[f"k{i}"] for i in range(4)])) + 1e-6


@pytest.mark.parametrize("bad", [5, None, 1.5, True])
def test_a_malformed_matrix_field_is_a_decode_error_not_a_crash(bad: object) -> None:
    store = PrototypeStore(DIM, clock=ManualClock(0))
    event = store.learn("a", blobs(1, 3)[0])
    body = {"v": 1, "t": "class_event", "d": event.model_dump(mode="python")}
    body["d"]["state"]["exemplars"] = bad
    with pytest.raises(DecodeError) as info:
        decode(msgpack.packb(body, use_bin_type=True), ClassEvent)
    assert info.value.reason == "invalid"


def test_metric_of_duplicate_examples_is_the_identity_and_copies_are_accepted() -> None:
    a, b, c = blobs(3, 1)
    groups = [np.repeat(a, 12, axis=0), np.repeat(b, 12, axis=0), np.repeat(c, 12, axis=0)]
    assert Metric.fit(groups).is_identity
    store = PrototypeStore(DIM, clock=ManualClock(0))
    for i, g in enumerate(groups):
        store.learn(f"c{i}", g)
    assert store.classify(np.concatenate([a, b, c])).accepted.all()


def test_single_cluster_fallback_never_swallows_the_buffer() -> None:
    for seed in range(5):
        x = l2_normalize(np.random.default_rng(seed).standard_normal((200, 8)))
        labels = HDBSCANClustering(min_cluster_size=20, min_samples=5).fit_predict(x)
        assert (labels >= 0).mean() < 0.5
