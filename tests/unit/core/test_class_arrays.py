"""A class's vectors: the count-weighted mean, the exemplar reservoir, seeded random choices.

Synthetic data: classes are unit vectors scattered around orthonormal centres
in a small dimension, so the right answer is known for every vector.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamlabel.core.class_arrays import arrays_of, with_arrays
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.store import PrototypeStore, StoreConfig
from streamlabel.errors import StoreError
from streamlabel.schemas import ClassEvent
from streamlabel.testing import ManualClock

from store_world import DIM, Blobs, make_store  # isort: skip  (tests/unit/core)


# ---------------------------------------------------------------- the mean
def test_later_examples_update_the_count_weighted_mean() -> None:
    """The class mean is the mean of all examples ever taught, whatever the batch sizes."""
    blobs = Blobs()
    store = make_store()
    first, second, third = blobs.around(0, 3), blobs.around(0, 5), blobs.around(0, 1)
    store.learn("python", first)
    store.learn("python", second)
    event = store.learn("python", third)
    assert event.kind == "updated"
    assert event.state.count == 9
    expected = np.concatenate([first, second, third]).mean(axis=0)
    np.testing.assert_allclose(np.asarray(event.state.mean), expected, atol=1e-6)
    assert store.active_ids() == ["python"]


# --------------------------------------------------------------- exemplars
def test_exemplar_reservoir_stays_bounded_by_capacity() -> None:
    """However many examples arrive, a class keeps at most ``exemplar_capacity`` of them."""
    blobs = Blobs()
    store = make_store(StoreConfig(exemplar_capacity=10))
    seen = 0
    for batch in [3, 4, 7, 20, 1, 15]:
        store.learn("a", blobs.around(0, batch), [f"t{seen + i}" for i in range(batch)])
        seen += batch
        state = store.get("a")
        assert len(state.exemplars) == min(seen, 10)
        assert len(state.exemplar_texts) == len(state.exemplars)
        assert state.count == seen


def test_long_exemplar_texts_are_cut_so_a_class_event_stays_bounded() -> None:
    """Two 600 KB feedback texts used to make a 1.1 MB class event (over Kafka's 1 MB)."""
    from streamlabel.schemas import encode

    blobs = Blobs(dim=384)
    store = make_store(StoreConfig(exemplar_text_chars=500), dim=384)
    event = store.learn("huge", blobs.around(0, 2), ["word " * 120_000, "term " * 120_000])
    assert [len(t) for t in event.state.exemplar_texts] == [500, 500]
    assert event.state.exemplar_texts[0] == ("word " * 100)
    assert len(encode(event)) < 50_000


def test_exemplar_texts_stay_aligned_with_their_vectors() -> None:
    """Each kept exemplar carries the text it was taught with."""
    store = make_store(StoreConfig(exemplar_capacity=5))
    vectors = l2_normalize(np.random.default_rng(1).standard_normal((30, DIM)))
    texts = [f"text {i}" for i in range(30)]
    for lo in range(0, 30, 6):
        store.learn("a", vectors[lo : lo + 6], texts[lo : lo + 6])
    state = store.get("a")
    for row, text in zip(state.exemplars, state.exemplar_texts, strict=True):
        i = int(text.split()[1])
        np.testing.assert_array_equal(np.asarray(row, np.float32), vectors[i])


# ------------------------------------------------------------- determinism
def _feed(seed: int) -> list[ClassEvent]:
    blobs = Blobs(seed=7)
    clock = ManualClock(5.0)
    store = PrototypeStore(
        DIM, StoreConfig(seed=seed, exemplar_capacity=8, max_sub_prototypes=2), clock=clock
    )
    events = []
    for step in range(6):
        events.append(store.learn(f"c{step % 3}", blobs.around(step % 3, 9)))
        clock.advance(1)
    events += store.merge("c2", "c1")
    return events


def test_same_inputs_and_seed_give_identical_events() -> None:
    """Two stores fed the same inputs with the same seed emit identical events."""
    assert _feed(seed=11) == _feed(seed=11)


def test_the_seed_drives_the_random_choices() -> None:
    """Another seed keeps other exemplars (so the determinism above is not vacuous)."""
    a, b = _feed(seed=11), _feed(seed=12)
    assert [e.state.exemplars for e in a] != [e.state.exemplars for e in b]
    assert [e.state.mean for e in a] == [e.state.mean for e in b]


# ---------------------------------------------------------------- packing
def test_packing_the_unpacked_arrays_gives_the_same_state() -> None:
    """A state's vectors unpacked into arrays and packed back are unchanged."""
    blobs = Blobs()
    store = make_store(StoreConfig(max_sub_prototypes=1, exemplar_capacity=6))
    store.learn("a", blobs.around(0, 9), [f"t{i}" for i in range(9)])
    state = store.get("a")
    arrays = arrays_of(state, DIM)
    assert arrays.exemplars.shape == (6, DIM)
    assert arrays.subs.shape == (1, DIM)
    assert with_arrays(state, arrays) == state


def test_unpacking_a_state_of_another_dimension_raises() -> None:
    """Vectors that do not match the store's dimension are refused with the class named."""
    state = make_store().learn("a", Blobs().around(0, 2)).state
    with pytest.raises(StoreError, match="'a': mean has dimension 32, the store has 16"):
        arrays_of(state, 16)
