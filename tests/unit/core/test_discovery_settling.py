"""Discovery on fine-grained data: fragments merged into one class, the residue settled.

Scene (from test_discovery): two labelled classes (``python``, ``sql``) around
orthonormal centres in 32 dims; the buffer gets items around them or around a
new centre. The clustering is pinned (``FixedClustering``) or agglomerative, so
these tests check the rules, not a clustering algorithm.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_discovery import DIM, Scene

from streamlabel.core.clustering import AgglomerativeClustering
from streamlabel.core.discovery import (
    Discoverer,
    DiscoveryConfig,
    UnknownBuffer,
    merge_fragments,
    separation_bar,
)
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.store import PrototypeStore
from streamlabel.testing import ManualClock


class FixedClustering:
    """Hands discovery a fixed partition (``-1`` = noise)."""

    def __init__(self, labels: list[int]) -> None:
        self.labels = labels

    def fit_predict(self, points: np.ndarray) -> np.ndarray:
        assert len(points) == len(self.labels)
        return np.asarray(self.labels, np.int64)


def _discoverer(clustering: object, **overrides: object) -> Discoverer:
    config = {"persistence": 1, "settle_after": 2, **overrides}
    return Discoverer(DiscoveryConfig(clustering=clustering, **config))  # type: ignore[arg-type]


def _tail(scene: Scene, c: int, n: int, spread: float) -> np.ndarray:
    """Items of class ``c`` farther from its centre than its labelled examples."""
    return scene.around(c, n, spread=spread)


# ---------------------------------------------------------------- merging
def test_two_halves_of_one_class_are_merged_and_two_classes_are_not() -> None:
    """Centres closer than the bar are one cluster; a third, far cluster stays apart."""
    scene = Scene()
    a = scene.around(2, 20, spread=0.3)
    b = scene.around(2, 20, spread=0.3)
    c = scene.around(3, 20, spread=0.3)
    z = np.concatenate([a, b, c])
    labels = np.repeat([0, 1, 2], 20)
    merged = merge_fragments(labels, z, bar=0.9)
    assert len(set(merged[:40].tolist())) == 1
    assert merged[40] != merged[0]
    assert merged.max() == 1


def test_merging_keeps_noise_and_is_off_without_a_bar() -> None:
    """Noise stays -1; ``bar=None`` returns the labels unchanged."""
    labels = np.array([0, -1, 1, 1, -1])
    z = l2_normalize(np.ones((5, 4), np.float32))
    assert merge_fragments(labels, z, None).tolist() == labels.tolist()
    assert merge_fragments(labels, z, 0.5).tolist() == [0, -1, 0, 0, -1]


def test_the_separation_bar_is_never_below_the_labelled_classes_cohesion() -> None:
    """With orthogonal labelled classes (nearest-class similarity ≈ 0) the bar is their
    members' typical similarity to their centre, so unrelated clusters never merge."""
    scene = Scene()
    store = PrototypeStore(DIM, clock=ManualClock())
    for c in range(3):
        store.learn(f"c{c}", scene.around(c, 30))
    bar = separation_bar(store, 0.9)
    assert bar is not None
    assert bar > 0.5
    assert separation_bar(store, None) is None
    two = PrototypeStore(DIM, clock=ManualClock())
    two.learn("a", scene.around(0, 30))
    two.learn("b", scene.around(1, 30))
    assert separation_bar(two, 0.9) is None  # fewer than three labelled classes


def test_a_class_split_by_the_clustering_becomes_one_finding() -> None:
    """Two fragments of one new class (pinned as two clusters) are accepted as one class."""
    scene = Scene()
    store = PrototypeStore(DIM, clock=ManualClock())
    for c in (0, 1, 3):
        store.learn(f"c{c}", scene.around(c, 30))
    buffer = UnknownBuffer(capacity=100, dim=DIM)
    buffer.add([f"k{i}" for i in range(40)], scene.around(2, 40, spread=0.3), ["kafka lag"] * 40)
    report = _discoverer(FixedClustering([0] * 20 + [1] * 20)).run(buffer, store)
    assert report.proposed == 2
    assert report.clusters == 1
    assert len(report.findings) == 1
    assert len(report.findings[0].item_ids) == 40


# ---------------------------------------------------------------- settling
def test_a_rejected_tail_of_a_labelled_class_settles_into_that_class() -> None:
    """A cluster the python class owns is not a new class: its members take ``python``."""
    scene = Scene()
    store = scene.store()
    buffer = UnknownBuffer(capacity=100, dim=DIM)
    ids = [f"t{i}" for i in range(25)]
    buffer.add(ids, _tail(scene, 0, 25, spread=0.9), ["python"] * 25)
    report = _discoverer(FixedClustering([0] * 25)).run(buffer, store)
    assert report.findings == ()
    assert report.rejected["known_class"] == 1
    assert report.settled == dict.fromkeys(ids, "python")


def test_tails_stay_unknown_when_settling_tails_is_off() -> None:
    scene = Scene()
    store = scene.store()
    buffer = UnknownBuffer(capacity=100, dim=DIM)
    buffer.add([f"t{i}" for i in range(25)], _tail(scene, 0, 25, spread=0.9), ["x"] * 25)
    report = _discoverer(FixedClustering([0] * 25), settle_tails=False).run(buffer, store)
    assert report.settled == {}


def test_an_unclustered_item_settles_after_settle_after_runs_if_near_a_class() -> None:
    """Noise near ``sql`` settles on the second run it is seen in; scatter never does."""
    scene = Scene()
    store = scene.store()
    buffer = UnknownBuffer(capacity=100, dim=DIM)
    near = _tail(scene, 1, 5, spread=0.6)
    far = scene.scattered(5)
    buffer.add([f"n{i}" for i in range(5)], near, ["sql"] * 5)
    buffer.add([f"f{i}" for i in range(5)], far, ["x"] * 5)
    discoverer = _discoverer(FixedClustering([-1] * 10), settle_quantile=0.0, settle_stretch=0.0)
    assert discoverer.run(buffer, store).settled == {}  # seen once: not yet
    settled = discoverer.run(buffer, store).settled
    near_scores = store.classify(near).scores
    bar = store.member_score_quantile("sql", 0.0)
    assert bar is not None
    expected = {f"n{i}" for i in range(5) if near_scores[i] >= min(bar, store.thresholds()["sql"])}
    assert expected  # the scene puts most of them within the class's spread
    assert set(settled) == expected
    assert set(settled.values()) == {"sql"}
    assert not any(k.startswith("f") for k in settled)


def test_the_stretch_settles_items_below_the_least_typical_member_by_a_share_of_spread() -> None:
    """The bar drops below the least similar member by ``stretch`` × (median − least):
    items in that band settle with a stretch and stay ``unknown`` without one; items
    beyond it stay ``unknown`` either way."""
    scene = Scene()
    store = scene.store()
    low = store.member_score_quantile("sql", 0.0)
    median = store.member_score_quantile("sql", 0.5)
    assert low is not None
    assert median is not None
    assert median > low
    items = _tail(scene, 1, 60, spread=1.2)
    verdict = store.classify(items)
    scores, best, sql = verdict.scores, verdict.best, verdict.class_ids.index("sql")
    stretched = low - 1.0 * (median - low)
    in_band = [i for i in range(60) if best[i] == sql and stretched <= scores[i] < low]
    beyond = [i for i in range(60) if best[i] == sql and scores[i] < stretched]
    assert in_band  # the scene puts items on both sides of the stretched bar
    assert beyond
    settled: dict[float, dict[str, str]] = {}
    for stretch in (0.0, 1.0):
        buffer = UnknownBuffer(capacity=100, dim=DIM)
        buffer.add([f"n{i}" for i in range(60)], items, ["sql"] * 60)
        discoverer = _discoverer(FixedClustering([-1] * 60), settle_stretch=stretch)
        discoverer.run(buffer, store)
        settled[stretch] = discoverer.run(buffer, store).settled
    assert not any(f"n{i}" in settled[0.0] for i in in_band)
    assert all(settled[1.0].get(f"n{i}") == "sql" for i in in_band)
    assert not any(f"n{i}" in settled[1.0] for i in beyond)


def test_settling_is_off_without_a_quantile() -> None:
    scene = Scene()
    store = scene.store()
    buffer = UnknownBuffer(capacity=100, dim=DIM)
    buffer.add([f"n{i}" for i in range(5)], _tail(scene, 1, 5, spread=0.6), ["sql"] * 5)
    discoverer = _discoverer(FixedClustering([-1] * 5), settle_quantile=None)
    for _ in range(3):
        assert discoverer.run(buffer, store).settled == {}


def test_settled_items_are_not_settled_again_and_can_still_join_a_new_class() -> None:
    """A settled item keeps its label in the buffer; a later cluster of a new class takes it."""
    scene = Scene()
    store = scene.store()
    buffer = UnknownBuffer(capacity=200, dim=DIM)
    ids = [f"k{i}" for i in range(30)]
    buffer.add(ids, scene.around(2, 30, spread=0.3), ["kafka consumer lag"] * 30)
    buffer.settle(dict.fromkeys(ids[:10], ("python", 1)))  # settled by an earlier run
    assert buffer.labels[:10] == ["python"] * 10
    assert buffer.revision(0) == 1
    discoverer = _discoverer(AgglomerativeClustering(distance_threshold=0.25, min_cluster_size=20))
    report = discoverer.run(buffer, store)
    assert len(report.findings) == 1
    assert set(report.findings[0].item_ids) == set(ids)
    assert not set(report.settled) & set(ids[:10])


def test_buffer_labels_survive_state_and_old_states_load_as_unknown() -> None:
    buffer = UnknownBuffer(capacity=10, dim=2)
    buffer.add(["a", "b"], np.eye(2, dtype=np.float32), ["ta", "tb"])
    buffer.settle({"b": ("sql", 3)})
    twin = UnknownBuffer(capacity=10, dim=2)
    twin.load(buffer.state())
    assert twin.labels == ["", "sql"]
    assert twin.revision(1) == 3
    old = buffer.state()
    del old["labels"]  # a snapshot written before settling existed
    twin.load(old)
    assert twin.labels == ["", ""]
    bad = {**buffer.state(), "labels": ["x"]}
    with pytest.raises(ValueError, match="misaligned"):
        twin.load(bad)


def test_the_seen_counts_survive_the_discoverer_state() -> None:
    """A restored discoverer settles on the same run the original would have."""
    scene = Scene()
    store = scene.store()
    buffer = UnknownBuffer(capacity=100, dim=DIM)
    buffer.add([f"n{i}" for i in range(5)], _tail(scene, 1, 5, spread=0.6), ["sql"] * 5)
    clustering = FixedClustering([-1] * 5)
    original = _discoverer(clustering, settle_quantile=0.0)
    original.run(buffer, store)
    restored = _discoverer(clustering, settle_quantile=0.0)
    restored.load(original.state())
    assert restored.run(buffer, store).settled == original.run(buffer, store).settled != {}


def test_a_class_found_on_a_buffer_missing_its_newest_items_gets_the_same_id() -> None:
    """A learner restored from a snapshot may run discovery before it has read every
    unknown again: the id is named by the cluster's oldest central member, so it is
    the id the crashed learner gave."""
    clustering = AgglomerativeClustering(distance_threshold=0.25, min_cluster_size=20)
    ids = []
    for n in (60, 40):
        scene = Scene()
        store = scene.store()
        buffer = UnknownBuffer(capacity=1000, dim=DIM)
        vectors = scene.around(2, 60)
        buffer.add([f"k{i}" for i in range(n)], vectors[:n], ["kafka consumer lag"] * n)
        (finding,) = _discoverer(clustering).run(buffer, store).findings
        ids.append(finding.class_id)
    assert ids[0] == ids[1]
