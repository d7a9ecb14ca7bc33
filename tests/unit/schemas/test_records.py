"""Validation rules of the wire records and of the vector field types."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from streamlabel.schemas import (
    ClassEvent,
    ClassState,
    DeadLetter,
    DriftAlert,
    Feedback,
    Item,
    LabelRecord,
    ScoredClass,
    SourceRef,
    UnknownRecord,
    to_array,
)
from streamlabel.schemas.vectors import MAX_DIM
from streamlabel.testing.records import label


def _state(**update: object) -> ClassState:
    fields: dict[str, object] = {
        "class_id": "c1",
        "name": "sorting",
        "status": "known",
        "origin": "feedback",
        "count": 2,
        "mean": [0.6, 0.8],
        "exemplars": [[1.0, 0.0], [0.0, 1.0]],
        "created_version": 1,
        "updated_version": 1,
        "created_at": 10.0,
        "updated_at": 10.0,
    }
    fields.update(update)
    return ClassState.model_validate(fields)


def _one_of_each() -> list[object]:
    source = SourceRef(topic="items", partition=0, offset=3)
    return [
        source,
        Item(id="a", text="hello"),
        LabelRecord(
            item_id="a",
            label="c1",
            score=0.9,
            margin=0.2,
            top_k=(ScoredClass(class_id="c1", score=0.9),),
            is_unknown=False,
            store_version=1,
            model_id="m",
            emitted_at=1.0,
        ),
        Feedback(text="hello", label="greeting"),
        _state(),
        ClassEvent(kind="created", class_id="c1", state=_state(), store_version=1),
        DriftAlert(
            alert_id="x",
            kind="embedding",
            statistic=1.0,
            threshold=0.5,
            window=10,
            reference=10,
            at_item=20,
            severity="warning",
            detail="shift",
            store_version=1,
            emitted_at=1.0,
        ),
        UnknownRecord(item_id="a", vector=[1.0, 0.0], score=0.1, store_version=1),
        DeadLetter(value=b"\x00", reason="not_msgpack", error="bad"),
    ]


@pytest.mark.parametrize("record", _one_of_each(), ids=lambda r: type(r).__name__)
def test_records_are_frozen(record: object) -> None:
    """Assigning to any field of any record fails: records are immutable values."""
    field = next(iter(type(record).model_fields))  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="frozen"):
        setattr(record, field, getattr(record, field))


@pytest.mark.parametrize("record", _one_of_each(), ids=lambda r: type(r).__name__)
def test_records_reject_unknown_fields(record: object) -> None:
    """A field the schema does not name is an error, not silently dropped."""
    data = record.model_dump()  # type: ignore[attr-defined]
    data["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        type(record).model_validate(data)  # type: ignore[attr-defined]


def test_item_needs_a_text_or_a_vector() -> None:
    """An item with neither text nor vector is invalid; either one alone is enough."""
    with pytest.raises(ValidationError, match="text or a vector"):
        Item(id="a")
    assert Item(id="a", text="x").vector is None
    assert Item(id="a", vector=[1.0]).text is None


@pytest.mark.parametrize("text", ["", " ", "\n\t  "])
def test_item_text_must_not_be_blank(text: str) -> None:
    """Empty or whitespace-only texts are rejected (there is nothing to embed)."""
    with pytest.raises(ValidationError, match="empty"):
        Item(id="a", text=text)


def test_item_id_must_be_non_empty() -> None:
    """The item id is the Kafka key: an empty one is rejected."""
    with pytest.raises(ValidationError):
        Item(id="", text="x")


@pytest.mark.parametrize("label", ["unknown", "Unknown", "  UNKNOWN "])
def test_feedback_cannot_teach_the_reserved_unknown_label(label: str) -> None:
    """'unknown' (any case, any padding) is reserved for open-set rejection."""
    with pytest.raises(ValidationError, match="reserved"):
        Feedback(text="x", label=label)


def test_feedback_label_must_not_be_blank() -> None:
    """A whitespace-only label names no class."""
    with pytest.raises(ValidationError, match="empty"):
        Feedback(text="x", label="   ")


def test_feedback_needs_an_example() -> None:
    """Feedback needs an item id, a text or a vector to learn from."""
    with pytest.raises(ValidationError, match="item_id, a text or a vector"):
        Feedback(label="sorting")
    assert Feedback(item_id="a", label="sorting").item_id == "a"


def test_class_event_class_id_must_match_its_state() -> None:
    """An event keyed by one class but carrying another's state is rejected."""
    with pytest.raises(ValidationError, match="differs"):
        ClassEvent(kind="created", class_id="other", state=_state(), store_version=1)


def test_class_event_store_version_starts_at_one() -> None:
    """Version 0 is the empty store; no event can produce it."""
    with pytest.raises(ValidationError):
        ClassEvent(kind="created", class_id="c1", state=_state(), store_version=0)


def test_source_ref_rejects_negative_partition_and_offset() -> None:
    """Partitions and offsets are non-negative."""
    with pytest.raises(ValidationError):
        SourceRef(topic="t", partition=-1, offset=0)
    with pytest.raises(ValidationError):
        SourceRef(topic="t", partition=0, offset=-1)


# ------------------------------------------------------------------ vectors
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=64)
)
def test_vector_values_are_float32(values: list[float]) -> None:
    """A vector field holds exactly the float32 values of its input, as a tuple."""
    item = Item(id="a", vector=values)
    assert isinstance(item.vector, tuple)
    np.testing.assert_array_equal(np.asarray(item.vector), np.asarray(values, np.float32))


def test_vector_values_are_rounded_to_float32() -> None:
    """A float64 that float32 cannot represent is stored rounded, as it will travel."""
    item = Item(id="a", vector=[0.1])
    assert item.vector == (float(np.float32(0.1)),)
    assert item.vector != (0.1,)


@pytest.mark.parametrize(
    "vector",
    [
        np.arange(3, dtype=np.float64),
        np.arange(3, dtype=np.float32),
        [0.0, 1.0, 2.0],
        (0, 1, 2),
        np.arange(3, dtype="<f4").tobytes(),
        bytearray(np.arange(3, dtype="<f4").tobytes()),
    ],
    ids=["f64-array", "f32-array", "list", "int-tuple", "bytes", "bytearray"],
)
def test_vector_accepts_arrays_sequences_and_float32_bytes(vector: object) -> None:
    """Numpy arrays, sequences and little-endian float32 bytes all give the same vector."""
    assert Item(id="a", vector=vector).vector == (0.0, 1.0, 2.0)


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ([1.0, float("nan")], "NaN or infinity"),
        ([float("inf")], "NaN or infinity"),
        ([], "empty"),
        ([[1.0, 2.0]], "one-dimensional"),
        (["a", "b"], "not numeric"),
        (b"\x00\x00\x80", "multiple of 4"),
        (np.zeros(MAX_DIM + 1, np.float32), "more than"),
    ],
    ids=["nan", "inf", "empty", "2d", "strings", "odd-bytes", "too-long"],
)
def test_vector_rejects_malformed_values(vector: object, message: str) -> None:
    """Non-finite, empty, multi-dimensional, non-numeric or oversized vectors are rejected."""
    with pytest.raises(ValidationError, match=message):
        Item(id="a", vector=vector)


def test_matrix_rows_must_have_equal_length() -> None:
    """A matrix field (exemplars, sub-prototypes) rejects ragged rows."""
    with pytest.raises(ValidationError, match="different lengths"):
        _state(exemplars=[[1.0, 0.0], [1.0]])


def test_matrix_accepts_a_2d_array_and_rejects_other_ranks() -> None:
    """A 2-D numpy array becomes rows of float32 tuples; a 1-D array is not a matrix."""
    state = _state(exemplars=np.eye(2, dtype=np.float64))
    assert state.exemplars == ((1.0, 0.0), (0.0, 1.0))
    with pytest.raises(ValidationError, match="two-dimensional"):
        _state(exemplars=np.ones(2))


def test_to_array_gives_a_zero_row_matrix_for_an_empty_field() -> None:
    """An empty matrix field becomes a ``(0, dim)`` float32 array when the dim is known."""
    arr = to_array(_state(exemplars=()).exemplars, 5)
    assert arr.shape == (0, 5)
    assert arr.dtype == np.float32
    assert to_array((1.0, 2.0)).dtype == np.float32


def test_a_label_supersedes_a_lower_revision_and_store_version_in_any_order() -> None:
    """The guarantee: per item id, the highest ``(revision, store_version)`` wins."""
    first, revised = label("i", "a", store_version=3), label("i", "b", revision=1, store_version=2)
    assert first.supersedes(None)
    assert revised.supersedes(first)
    assert not first.supersedes(revised)
    redelivered_newer = label("i", "c", store_version=5)
    redelivered_older = label("i", "d", store_version=1)
    assert redelivered_newer.supersedes(first)
    assert not first.supersedes(redelivered_newer)
    assert not redelivered_older.supersedes(first)  # read later, made with an older store
    assert not redelivered_newer.supersedes(revised)  # a stream label never beats a revision
    again = label("i", "e", revision=1, store_version=2)
    assert again.supersedes(revised)  # an equal pair: the later one read
