"""Novel-class discovery: the unknown buffer, and which clusters become (or extend) classes.

The scene: a store with two labelled classes (``python``, ``sql``) around
orthonormal centres in 32 dims, and an unknown buffer holding a dense cluster
of 60 items about Kafka consumer lag around a third centre, plus 40 scattered
items. Most tests pin the clustering to ``AgglomerativeClustering`` with a cut
that keeps the scattered items out, so they check the discovery rules rather
than a clustering algorithm; ``test_default_discoverer_finds_a_lone_new_cluster``
runs the default configuration on the same scene.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamlabel.core.clustering import AgglomerativeClustering
from streamlabel.core.discovery import Discoverer, DiscoveryConfig, UnknownBuffer, adopt
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.store import PrototypeStore
from streamlabel.testing import ManualClock

DIM = 32
CLUSTERING = AgglomerativeClustering(distance_threshold=0.25, min_cluster_size=20)
WORDS = ["apple", "banana", "cherry", "delta", "echo", "fig", "grape", "hotel", "india"]


class Scene:
    """Seeded vectors around orthonormal centres: 0 python, 1 sql, 2 kafka (novel)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(self.rng.standard_normal((DIM, 4)))
        self.centres = q.T

    def around(self, c: int, n: int, spread: float = 0.5) -> np.ndarray:
        noise = self.rng.standard_normal((n, DIM)) * spread / np.sqrt(DIM)
        return l2_normalize(self.centres[c] + noise)

    def scattered(self, n: int) -> np.ndarray:
        return l2_normalize(self.rng.standard_normal((n, DIM)))

    def store(self) -> PrototypeStore:
        store = PrototypeStore(DIM, clock=ManualClock(100.0))
        store.learn("python", self.around(0, 30), ["python list sort"] * 30)
        store.learn("sql", self.around(1, 30), ["sql join index"] * 30)
        return store

    def add_kafka(self, buffer: UnknownBuffer, n: int = 60, prefix: str = "k") -> list[str]:
        ids = [f"{prefix}{i}" for i in range(n)]
        texts = [f"kafka consumer lag on partition {i}" for i in range(n)]
        buffer.add(ids, self.around(2, n), texts)
        return ids

    def add_noise(self, buffer: UnknownBuffer, n: int = 40) -> list[str]:
        ids = [f"n{i}" for i in range(n)]
        texts = [" ".join(self.rng.choice(WORDS, 3)) for _ in range(n)]
        buffer.add(ids, self.scattered(n), texts)
        return ids


def _discoverer(**overrides: object) -> Discoverer:
    """Persistence 2 unless overridden: most tests follow a candidate across two runs."""
    config = {"persistence": 2, **overrides}
    return Discoverer(DiscoveryConfig(clustering=CLUSTERING, **config))  # type: ignore[arg-type]


def _scene_buffer(scene: Scene) -> tuple[UnknownBuffer, list[str]]:
    buffer = UnknownBuffer(capacity=1000, dim=DIM)
    kafka = scene.add_kafka(buffer)
    scene.add_noise(buffer)
    return buffer, kafka


# ------------------------------------------------------------- discoverer
def test_a_new_cluster_needs_two_runs_then_becomes_one_finding() -> None:
    """First sighting is held back (persistence 2); the second run accepts it, named and listed."""
    scene = Scene()
    store = scene.store()
    buffer, kafka = _scene_buffer(scene)
    assert not store.classify(buffer.vectors[:60]).accepted.any()  # they are unknowns
    discoverer = _discoverer()

    first = discoverer.run(buffer, store)
    assert first.findings == ()
    assert first.clusters == 1
    assert first.rejected["persistence"] == 1

    second = discoverer.run(buffer, store)
    assert second.run == 2
    assert len(second.findings) == 1
    finding = second.findings[0]
    assert finding.class_id.startswith("novel-")
    assert not finding.extends
    assert set(finding.item_ids) == set(kafka)
    assert finding.texts == tuple(buffer.texts[buffer.ids.index(i)] for i in finding.item_ids)
    np.testing.assert_array_equal(
        finding.vectors, buffer.vectors[[buffer.ids.index(i) for i in finding.item_ids]]
    )
    assert set(finding.keywords) <= {"kafka", "consumer", "lag", "partition"}
    assert len(finding.keywords) == 3
    assert finding.name == "-".join(finding.keywords)
    assert finding.cohesion > 0.5


def test_default_discoverer_finds_a_lone_new_cluster() -> None:
    """The default configuration (HDBSCAN) finds the scene's single new cluster on the 2nd run.

    The unknown buffer usually holds one emerging class among scattered items;
    a default that cannot report a single cluster never discovers anything there.
    """
    scene = Scene()
    store = scene.store()
    buffer, kafka = _scene_buffer(scene)
    discoverer = Discoverer()
    discoverer.run(buffer, store)
    report = discoverer.run(buffer, store)
    assert len(report.findings) == 1
    assert len(set(report.findings[0].item_ids) & set(kafka)) >= 0.9 * len(kafka)


def test_the_new_class_id_is_stable_across_discoverers() -> None:
    """The id derives from the anchoring item, so two learners find the same id."""
    ids = set()
    for _ in range(2):
        scene = Scene()
        store = scene.store()
        buffer, _ = _scene_buffer(scene)
        discoverer = _discoverer()
        discoverer.run(buffer, store)
        ids.add(discoverer.run(buffer, store).findings[0].class_id)
    assert len(ids) == 1


def test_persistence_counts_consecutive_runs_only() -> None:
    """A cluster missing from one run is forgotten and must persist again from scratch."""
    scene = Scene()
    store = scene.store()
    buffer, kafka = _scene_buffer(scene)
    vectors, texts = buffer.vectors[:60].copy(), buffer.texts[:60]
    discoverer = _discoverer()
    assert discoverer.run(buffer, store).rejected["persistence"] == 1
    buffer.remove(kafka)
    assert discoverer.run(buffer, store).findings == ()
    buffer.add(kafka, vectors, texts)
    third = discoverer.run(buffer, store)
    assert third.findings == ()
    assert third.rejected["persistence"] == 1
    assert len(discoverer.run(buffer, store).findings) == 1


def test_persistence_one_accepts_on_first_sight() -> None:
    """With ``persistence=1`` a single run is enough."""
    scene = Scene()
    store = scene.store()
    buffer, _ = _scene_buffer(scene)
    assert len(_discoverer(persistence=1).run(buffer, store).findings) == 1


def test_a_known_class_rejected_tail_is_not_a_new_class() -> None:
    """Items around a labelled class's centre cluster, but belong to that class: ``known_class``."""
    scene = Scene()
    store = scene.store()
    buffer = UnknownBuffer(capacity=1000, dim=DIM)
    buffer.add([f"t{i}" for i in range(60)], scene.around(0, 60), ["python tail"] * 60)
    scene.add_noise(buffer)
    discoverer = _discoverer()
    for _ in range(3):
        report = discoverer.run(buffer, store)
        assert report.clusters == 1
        assert report.findings == ()
        assert report.rejected["known_class"] == 1


@dataclasses.dataclass(frozen=True)
class FixedClustering:
    """A strategy that returns given labels (to hand discovery a cluster of our choosing)."""

    labels: tuple[int, ...]

    def fit_predict(self, points: np.ndarray) -> np.ndarray:
        assert len(points) == len(self.labels)
        return np.asarray(self.labels, np.int64)


@pytest.mark.parametrize("n_labelled", [2, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_low_cohesion_cluster_is_rejected(n_labelled: int, seed: int) -> None:
    """A 'cluster' of scattered points is rejected for cohesion; a tight one beside it is kept.

    The store holds ``n_labelled`` labelled classes (64 dims); the clustering hands
    discovery two groups: 40 uniformly scattered unknowns (cohesion ≈ 0.15 in the
    raw space) and 40 items around a new centre (≈ 0.9). Only the tight one may pass.
    """
    dim = 64
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, n_labelled + 1)))
    store = PrototypeStore(dim, clock=ManualClock())
    for c in range(n_labelled):
        store.learn(f"c{c}", l2_normalize(q[:, c] + 0.5 / 8 * rng.standard_normal((30, dim))))
    buffer = UnknownBuffer(capacity=1000, dim=dim)
    buffer.add(
        [f"s{i}" for i in range(40)], l2_normalize(rng.standard_normal((40, dim))), ["x"] * 40
    )
    tight = l2_normalize(q[:, n_labelled] + 0.5 / 8 * rng.standard_normal((40, dim)))
    buffer.add([f"k{i}" for i in range(40)], tight, ["kafka"] * 40)
    clustering = FixedClustering((0,) * 40 + (1,) * 40)
    discoverer = Discoverer(DiscoveryConfig(clustering=clustering, persistence=1))
    report = discoverer.run(buffer, store)
    assert report.clusters == 2
    assert report.rejected["cohesion"] == 1
    assert [set(f.item_ids) for f in report.findings] == [{f"k{i}" for i in range(40)}]


def test_without_labelled_classes_the_absolute_cohesion_floor_applies() -> None:
    """With no labelled class to compare with, ``min_cohesion`` is the bar."""
    scene = Scene()
    store = PrototypeStore(DIM, clock=ManualClock())
    buffer, _ = _scene_buffer(scene)
    strict = _discoverer(persistence=1, min_cohesion=0.99).run(buffer, store)
    lenient = _discoverer(persistence=1, min_cohesion=0.2).run(buffer, store)
    assert strict.findings == ()
    assert strict.rejected["cohesion"] == 1
    assert len(lenient.findings) == 1


def test_an_adopted_discovered_class_is_extended_under_the_same_id() -> None:
    """Once adopted as a provisional class, more items of the cluster extend it (stable id)."""
    scene = Scene()
    store = scene.store()
    buffer, _ = _scene_buffer(scene)
    discoverer = _discoverer()
    discoverer.run(buffer, store)
    (finding,) = discoverer.run(buffer, store).findings
    adopt(store, finding)
    buffer.remove(finding.item_ids)
    more = scene.add_kafka(buffer, n=30, prefix="m")

    report = discoverer.run(buffer, store)
    assert len(report.findings) == 1
    again = report.findings[0]
    assert again.extends
    assert again.class_id == finding.class_id
    assert set(again.item_ids) == set(more)


def test_an_empty_buffer_finds_nothing() -> None:
    """Running on an empty buffer counts the run and reports nothing."""
    discoverer = _discoverer()
    report = discoverer.run(UnknownBuffer(10, DIM), Scene().store())
    assert (report.run, report.clusters, report.findings) == (1, 0, ())
    assert discoverer.runs == 1


# ------------------------------------------------------------------ buffer
def _vectors(n: int) -> np.ndarray:
    return np.arange(n * 2, dtype=np.float32).reshape(n, 2)


def test_buffer_evicts_the_oldest_items_beyond_capacity() -> None:
    """A full buffer drops its oldest items first (FIFO) and never exceeds capacity."""
    buffer = UnknownBuffer(capacity=3, dim=2)
    buffer.add(["a", "b"], _vectors(2), ["ta", "tb"])
    buffer.add(["c", "d"], _vectors(2) + 10, ["tc", "td"], revisions=[1, 2])
    assert len(buffer) == 3
    assert buffer.ids == ["b", "c", "d"]
    assert buffer.texts == ["tb", "tc", "td"]
    np.testing.assert_array_equal(buffer.vectors, [[2, 3], [10, 11], [12, 13]])
    assert [buffer.revision(i) for i in range(3)] == [0, 1, 2]
    buffer.add(["e", "f", "g", "h"], _vectors(4), list("efgh"))
    assert buffer.ids == ["f", "g", "h"]


def test_buffer_remove_drops_only_the_given_ids() -> None:
    """Removing ids keeps the others aligned and in order; absent ids are ignored."""
    buffer = UnknownBuffer(capacity=10, dim=2)
    buffer.add(["a", "b", "c", "d"], _vectors(4), ["ta", None, "tc", "td"], revisions=[0, 1, 2, 3])
    buffer.remove({"b", "d", "zz"})
    assert buffer.ids == ["a", "c"]
    assert buffer.texts == ["ta", "tc"]
    np.testing.assert_array_equal(buffer.vectors, [[0, 1], [4, 5]])
    assert [buffer.revision(i) for i in range(2)] == [0, 2]


def test_buffer_replaces_an_item_added_again() -> None:
    """Re-adding a buffered id replaces it (new vector, text, revision) and makes it newest."""
    buffer = UnknownBuffer(capacity=10, dim=2)
    buffer.add(["a", "b", "c"], _vectors(3), ["ta", "tb", "tc"])
    buffer.add(["a"], np.array([[9.0, 9.0]], np.float32), ["ta2"], revisions=[1])
    assert buffer.ids == ["b", "c", "a"]
    assert buffer.texts == ["tb", "tc", "ta2"]
    np.testing.assert_array_equal(buffer.vectors[-1], [9.0, 9.0])
    assert buffer.revision(2) == 1
    assert len(buffer) == 3


def test_buffer_texts_default_to_empty_and_vectors_are_read_only() -> None:
    """Missing texts read as ""; the exposed vectors cannot be written through."""
    buffer = UnknownBuffer(capacity=10, dim=2)
    buffer.add(["a"], _vectors(1), [None])
    assert buffer.texts == [""]
    with pytest.raises(ValueError, match="read-only"):
        buffer.vectors[0, 0] = 5.0
    buffer.add([], np.zeros((0, 2), np.float32), [])
    assert buffer.ids == ["a"]


def test_a_class_an_operator_retired_is_not_brought_back_by_discovery() -> None:
    """Retiring a discovered class is a decision: finding its cluster again does not revive it."""
    scene = Scene()
    store = scene.store()
    buffer, _ = _scene_buffer(scene)
    discoverer = _discoverer()
    discoverer.run(buffer, store)
    (finding,) = discoverer.run(buffer, store).findings
    adopt(store, finding)
    store.retire(finding.class_id)

    report = discoverer.run(buffer, store)
    assert report.findings == ()
    assert report.rejected["retired"] == 1
    assert store.get(finding.class_id).status == "retired"
