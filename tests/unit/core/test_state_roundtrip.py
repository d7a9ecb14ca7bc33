"""Core state for background runs and snapshots: buffer copies, buffer/discoverer state, versions.

Synthetic data: unit vectors around orthonormal centres in 32 dims; centre 0 is
``python``, 1 is ``sql`` (both labelled), 2 is a novel topic that only the
unknown buffer holds.
"""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from streamlabel.core.clustering import AgglomerativeClustering
from streamlabel.core.discovery import Discoverer, DiscoveryConfig, UnknownBuffer
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.store import PrototypeStore
from streamlabel.testing import ManualClock

DIM = 32
CLUSTERING = AgglomerativeClustering(distance_threshold=0.25, min_cluster_size=20)


def around(centre: int, n: int, seed: int) -> np.ndarray:
    centres = np.linalg.qr(np.random.default_rng(0).standard_normal((DIM, 4)))[0].T
    noise = np.random.default_rng(seed).standard_normal((n, DIM)) * 0.5 / np.sqrt(DIM)
    return l2_normalize(centres[centre] + noise).astype(np.float32)


def labelled_store() -> PrototypeStore:
    store = PrototypeStore(DIM, clock=ManualClock(100.0))
    store.learn("python", around(0, 30, seed=1), ["python list sort"] * 30)
    store.learn("sql", around(1, 30, seed=2), ["sql join index"] * 30)
    return store


def novel_buffer(n: int = 60) -> UnknownBuffer:
    buffer = UnknownBuffer(capacity=500, dim=DIM)
    buffer.add(
        [f"k{i}" for i in range(n)],
        around(2, n, seed=3),
        [f"kafka consumer lag partition {i}" for i in range(n)],
    )
    return buffer


def small_buffer() -> UnknownBuffer:
    buffer = UnknownBuffer(capacity=10, dim=4)
    buffer.add(
        ["a", "b", "c"],
        l2_normalize(np.arange(12, dtype=np.float32).reshape(3, 4) + 1),
        ["alpha", None, "gamma"],
        [0, 2, 5],
    )
    return buffer


def msgpack_round_trip(state: dict) -> dict:
    return msgpack.unpackb(msgpack.packb(state, use_bin_type=True), raw=False, strict_map_key=False)


def contents(buffer: UnknownBuffer) -> tuple[list[str], list[str], list[int], list[list[float]]]:
    revisions = [buffer.revision(i) for i in range(len(buffer))]
    return buffer.ids, buffer.texts, revisions, buffer.vectors.tolist()


# ------------------------------------------------------------ UnknownBuffer
def test_buffer_copy_has_the_same_content() -> None:
    buffer = small_buffer()
    twin = buffer.copy()
    assert contents(twin) == contents(buffer)
    assert (twin.capacity, twin.dim) == (buffer.capacity, buffer.dim)


def test_changes_to_the_buffer_after_a_copy_do_not_reach_the_copy() -> None:
    buffer = small_buffer()
    twin = buffer.copy()
    snapshot = contents(twin)
    buffer.add(["d"], np.ones((1, 4), np.float32), ["delta"])
    buffer.remove({"a"})
    assert contents(twin) == snapshot
    assert not np.shares_memory(np.asarray(twin.vectors), np.asarray(buffer.vectors))


def test_changes_to_a_copy_do_not_reach_the_buffer() -> None:
    buffer = small_buffer()
    before = contents(buffer)
    twin = buffer.copy()
    twin.remove({"b", "c"})
    twin.add(["z"], np.ones((1, 4), np.float32), ["zeta"], [9])
    assert contents(buffer) == before


def test_buffer_state_survives_msgpack() -> None:
    buffer = small_buffer()
    restored = UnknownBuffer(capacity=10, dim=4)
    restored.load(msgpack_round_trip(buffer.state()))
    assert contents(restored) == contents(buffer)
    vector, text, revision = restored.get("c")  # type: ignore[misc]
    np.testing.assert_array_equal(vector, buffer.vectors[2])
    assert (text, revision) == ("gamma", 5)
    assert restored.texts[1] == ""  # an item without text


def test_loading_a_buffer_state_replaces_the_previous_content() -> None:
    restored = UnknownBuffer(capacity=10, dim=4)
    restored.add(["old"], np.ones((1, 4), np.float32), ["old text"])
    restored.load(small_buffer().state())
    assert restored.ids == ["a", "b", "c"]


def test_loading_a_state_bigger_than_the_capacity_keeps_the_newest_items() -> None:
    restored = UnknownBuffer(capacity=2, dim=4)
    restored.load(small_buffer().state())
    assert restored.ids == ["b", "c"]
    assert [restored.revision(i) for i in range(2)] == [2, 5]
    np.testing.assert_array_equal(restored.vectors, small_buffer().vectors[1:])


def test_an_empty_buffer_state_loads_as_an_empty_buffer() -> None:
    restored = UnknownBuffer(capacity=10, dim=4)
    restored.load(msgpack_round_trip(UnknownBuffer(capacity=10, dim=4).state()))
    assert len(restored) == 0
    assert restored.vectors.shape == (0, 4)


@pytest.mark.parametrize("field", ["ids", "texts", "revisions"])
def test_a_buffer_state_with_misaligned_fields_is_rejected(field: str) -> None:
    state = small_buffer().state()
    state[field] = state[field][:-1]
    with pytest.raises(ValueError, match="misaligned"):
        UnknownBuffer(capacity=10, dim=4).load(state)


def test_a_buffer_state_of_another_dimension_is_rejected() -> None:
    # 3 rows of 4 floats read as 6-dim vectors: 2 rows for 3 ids
    with pytest.raises(ValueError, match="misaligned"):
        UnknownBuffer(capacity=10, dim=6).load(small_buffer().state())


# --------------------------------------------------------------- Discoverer
def test_discoverer_state_carries_the_run_count_and_the_candidates() -> None:
    store, buffer = labelled_store(), novel_buffer()
    discoverer = Discoverer(DiscoveryConfig(clustering=CLUSTERING, persistence=2))
    assert discoverer.run(buffer, store).findings == ()  # seen once: not persistent yet
    state = msgpack_round_trip(discoverer.state())

    assert state["runs"] == 1
    assert len(state["candidates"]) == 1
    candidate = state["candidates"][0]
    assert candidate["id"].startswith("novel-")
    assert candidate["sightings"] == 1
    assert sorted(candidate["members"]) == sorted(buffer.ids)


def test_a_restored_discoverer_continues_the_persistence_count() -> None:
    store, buffer = labelled_store(), novel_buffer()
    original = Discoverer(DiscoveryConfig(clustering=CLUSTERING, persistence=2))
    original.run(buffer, store)
    restored = Discoverer(DiscoveryConfig(clustering=CLUSTERING, persistence=2))
    restored.load(msgpack_round_trip(original.state()))
    assert restored.runs == 1

    report = restored.run(buffer, store)
    expected = original.run(buffer, store)
    assert [f.class_id for f in report.findings] == [f.class_id for f in expected.findings]
    assert len(report.findings) == 1
    assert report.run == 2
    assert restored.state() == original.state()


def test_a_fresh_discoverer_without_the_state_needs_the_sightings_again() -> None:
    store, buffer = labelled_store(), novel_buffer()
    Discoverer(DiscoveryConfig(clustering=CLUSTERING, persistence=2)).run(buffer, store)
    fresh = Discoverer(DiscoveryConfig(clustering=CLUSTERING, persistence=2))
    report = fresh.run(buffer, store)
    assert report.findings == ()
    assert report.rejected["persistence"] == 1


def test_loading_a_discoverer_state_replaces_its_candidates() -> None:
    store, buffer = labelled_store(), novel_buffer()
    busy = Discoverer(DiscoveryConfig(clustering=CLUSTERING, persistence=2))
    busy.run(buffer, store)
    busy.load(Discoverer().state())
    assert busy.state() == {"runs": 0, "candidates": [], "seen": {}}


# ------------------------------------------------------- PrototypeStore version
def test_advance_version_moves_the_version_forward() -> None:
    store = labelled_store()
    store.advance_version(40)
    assert store.version == 40


def test_advance_version_never_moves_the_version_back() -> None:
    store = labelled_store()
    store.advance_version(40)
    store.advance_version(7)
    store.advance_version(store.version - 1)
    assert store.version == 40


def test_events_emitted_after_advance_version_supersede_earlier_ones() -> None:
    store = labelled_store()
    store.advance_version(40)
    event = store.learn("python", around(0, 3, seed=9))
    assert event.store_version == 41
    assert store.get("python").updated_version == 41
    assert store.retire("sql").store_version == 42


def test_a_replica_applies_events_emitted_after_advance_version() -> None:
    leader = labelled_store()
    replica = PrototypeStore.restore(leader.snapshot(), clock=ManualClock(100.0))
    leader.advance_version(40)  # e.g. a restarted leader catching up with the changelog
    events = [leader.learn("kafka", around(2, 10, seed=4)), leader.retire("sql")]
    assert [replica.apply(e) for e in events] == [True, True]
    assert replica.version == leader.version == 42
    assert replica.active_ids() == leader.active_ids() == ["kafka", "python"]
    probe = around(2, 5, seed=6)
    assert replica.classify(probe).class_ids == leader.classify(probe).class_ids


def test_an_older_event_for_a_new_class_still_applies_after_advance_version() -> None:
    source = labelled_store()
    created = source.learn("kafka", around(2, 10, seed=4))
    assert created.store_version < 40
    store = labelled_store()
    store.advance_version(40)
    assert store.apply(created)
    assert "kafka" in store.active_ids()
    assert store.version == 40


def test_the_advanced_version_survives_a_snapshot() -> None:
    store = labelled_store()
    store.advance_version(40)
    restored = PrototypeStore.restore(
        msgpack_round_trip(store.snapshot()), clock=ManualClock(100.0)
    )
    assert restored.version == 40
    assert restored.learn("sql", around(1, 2, seed=5)).store_version == 41
