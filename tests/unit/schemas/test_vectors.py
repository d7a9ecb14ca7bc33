"""Matrix fields hold their rows as one read-only float32 array (:class:`Rows`).

They cost 4 bytes a value in memory (not a tuple of 32-byte Python floats),
read like the tuple of float tuples they replace, and travel on the wire
exactly as before.
"""

from __future__ import annotations

import copy
import pickle
import tracemalloc

import msgpack
import numpy as np
import pytest

from streamlabel.schemas import ClassEvent, ClassState, Rows, decode, encode, to_array


def _state(exemplars: object, **update: object) -> ClassState:
    return ClassState.model_validate({
        "class_id": "c", "name": "c", "status": "known", "origin": "feedback", "count": 2,
        "exemplars": exemplars, "created_version": 1, "updated_version": 1,
        "created_at": 0.0, "updated_at": 0.0, **update,
    })  # fmt: skip


def test_a_matrix_field_holds_a_read_only_float32_array() -> None:
    """Exemplars become one float32 array nobody can write, copied from the input."""
    source = np.eye(3, dtype=np.float64)
    rows = _state(source).exemplars
    assert isinstance(rows, Rows)
    assert rows.array.dtype == np.float32
    assert rows.array.shape == (3, 3)
    assert not rows.array.flags.writeable
    source[0, 0] = 5.0
    assert rows[0] == (1.0, 0.0, 0.0)
    assert to_array(rows) is rows.array  # read without a copy


def test_rows_read_and_compare_like_tuples_of_floats() -> None:
    """len, indexing, iteration, equality and hash are those of the tuple of tuples."""
    rows = _state([[1.0, 0.5], [0.25, -2.0]]).exemplars
    as_tuples = ((1.0, 0.5), (0.25, -2.0))
    assert len(rows) == 2
    assert rows[1] == (0.25, -2.0)
    assert list(rows) == list(as_tuples)
    assert rows == as_tuples
    assert as_tuples == rows
    assert hash(rows) == hash(as_tuples)
    assert rows != ((1.0, 0.5),)
    assert rows != Rows([[1.0, 0.5]])
    assert Rows([[-0.0, 1.0]]) == Rows([[0.0, 1.0]])  # as floats compare
    assert _state(()).exemplars == ()
    assert len(_state([]).exemplars) == 0
    assert np.asarray(rows, np.float64).dtype == np.float64


def test_states_with_equal_rows_are_equal_and_survive_pickle_and_copy() -> None:
    """ClassState equality (reconcile) and copies work on the array-backed rows."""
    a, b = _state([[1.0, 2.0]]), _state(np.asarray([[1.0, 2.0]], np.float32))
    assert a == b
    assert a != _state([[1.0, 3.0]])
    assert pickle.loads(pickle.dumps(a)) == a
    assert copy.deepcopy(a) == a


def test_a_class_event_is_byte_identical_on_the_wire() -> None:
    """Rows encode as before: one float32 byte string per row; JSON as lists of floats."""
    values = [[1.0, 2.0, 0.1], [3.0, 4.0, -0.3]]
    state = _state(values, sub_prototypes=values[:1])
    raw = encode(ClassEvent(kind="created", class_id="c", state=state, store_version=1))
    body = msgpack.unpackb(raw, raw=False)["d"]["state"]
    assert body["exemplars"] == [np.asarray(r, "<f4").tobytes() for r in values]
    assert body["sub_prototypes"] == [np.asarray(values[0], "<f4").tobytes()]
    as_floats = [[float(np.float32(v)) for v in r] for r in values]
    assert state.model_dump(mode="json")["exemplars"] == as_floats
    assert decode(raw, ClassEvent).state == state
    assert ClassState.model_validate_json(state.model_dump_json()) == state


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ([[1.0, float("nan")]], "NaN or infinity"),
        (np.array([[1e300, 0.0]]), "NaN or infinity"),
        (np.zeros((2, 0)), "empty"),
        ([[1.0], [1.0, 2.0]], "different lengths"),
        (np.ones(3), "two-dimensional"),
    ],
)
def test_a_matrix_is_checked_as_before(bad: object, match: str) -> None:
    """Rows are finite, non-empty and of equal length, whatever the input type."""
    with pytest.raises(ValueError, match=match):
        _state(bad)


def test_a_decoded_class_costs_about_four_bytes_a_value() -> None:
    """A class of 64 exemplars of 384 dimensions holds ~98 KB, not ~800 KB of Python floats."""
    x = np.random.default_rng(0).standard_normal((64, 384)).astype(np.float32)
    raw = encode(ClassEvent(kind="created", class_id="c", state=_state(x), store_version=1))
    tracemalloc.start()
    try:
        event = decode(raw, ClassEvent, max_bytes=10**7)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert event.state.exemplars == _state(x).exemplars
    assert held < 1.5 * x.nbytes, held
