"""The codec: exact round-trips in msgpack and JSON, float32 bytes, one reason per failure."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlabel.errors import DecodeError, StreamlabelError
from streamlabel.schemas import (
    SCHEMA_VERSION,
    ClassEvent,
    ClassState,
    DeadLetter,
    DriftAlert,
    Feedback,
    Item,
    LabelRecord,
    Record,
    ScoredClass,
    SourceRef,
    UnknownRecord,
    decode,
    encode,
)

# ------------------------------------------------------------- strategies
f32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
finite = st.floats(allow_nan=False, allow_infinity=False)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
non_blank = st.text(max_size=200).filter(lambda s: s.strip() != "")
vectors = st.lists(f32, min_size=1, max_size=48)


@st.composite
def matrices(draw: st.DrawFn) -> list[list[float]]:
    dim = draw(st.integers(1, 8))
    return draw(st.lists(st.lists(f32, min_size=dim, max_size=dim), max_size=5))


source_refs = st.builds(
    SourceRef,
    topic=st.text(min_size=1, max_size=30),
    partition=st.integers(0, 2**31),
    offset=st.integers(0, 2**62),
)
metadata = st.dictionaries(
    st.text(max_size=20),
    st.none() | st.booleans() | int64 | finite | st.text(max_size=30),
    max_size=5,
)


@st.composite
def items(draw: st.DrawFn) -> Item:
    text = draw(st.none() | non_blank)
    vector = draw(vectors if text is None else st.none() | vectors)
    return Item(
        id=draw(st.text(min_size=1, max_size=64)),
        text=text,
        vector=vector,
        metadata=draw(metadata),
        event_time=draw(st.none() | finite),
    )


label_records = st.builds(
    LabelRecord,
    item_id=st.text(max_size=40),
    label=st.text(max_size=40),
    class_name=st.none() | st.text(max_size=40),
    score=finite,
    margin=finite,
    threshold=st.none() | finite,
    top_k=st.lists(
        st.builds(ScoredClass, class_id=st.text(max_size=20), score=finite), max_size=5
    ).map(tuple),
    is_unknown=st.booleans(),
    is_novel=st.booleans(),
    revision=st.integers(0, 1000),
    store_version=st.integers(0, 10**9),
    model_id=st.text(max_size=40),
    source=st.none() | source_refs,
    reason=st.none() | st.text(max_size=20),
    timings_ms=st.dictionaries(st.text(max_size=10), finite, max_size=4),
    emitted_at=finite,
)

feedbacks = st.builds(
    Feedback,
    item_id=st.text(min_size=1, max_size=40),
    text=st.none() | non_blank,
    vector=st.none() | vectors,
    label=st.text(min_size=1, max_size=50).filter(
        lambda s: s.strip() != "" and s.strip().lower() != "unknown"
    ),
    source=st.text(max_size=20),
    event_time=st.none() | finite,
)


@st.composite
def class_states(draw: st.DrawFn) -> ClassState:
    dim = draw(st.integers(1, 8))
    row = st.lists(f32, min_size=dim, max_size=dim)
    return ClassState(
        class_id=draw(st.text(min_size=1, max_size=30)),
        name=draw(st.text(min_size=1, max_size=30)),
        status=draw(st.sampled_from(["known", "provisional", "retired"])),
        origin=draw(st.sampled_from(["feedback", "discovery", "zero_shot"])),
        description=draw(st.none() | st.text(max_size=50)),
        count=draw(st.integers(0, 10**6)),
        mean=draw(st.none() | row),
        sub_prototypes=draw(st.lists(row, max_size=3)),
        exemplars=draw(st.lists(row, max_size=5)),
        exemplar_texts=tuple(draw(st.lists(st.text(max_size=20), max_size=5))),
        keywords=tuple(draw(st.lists(st.text(max_size=10), max_size=3))),
        aliases=tuple(draw(st.lists(st.text(max_size=10), max_size=3))),
        merged_into=draw(st.none() | st.text(min_size=1, max_size=10)),
        threshold_override=draw(st.none() | finite),
        created_version=draw(st.integers(0, 10**6)),
        updated_version=draw(st.integers(0, 10**6)),
        created_at=draw(finite),
        updated_at=draw(finite),
    )


@st.composite
def class_events(draw: st.DrawFn) -> ClassEvent:
    state = draw(class_states())
    return ClassEvent(
        kind=draw(st.sampled_from(["created", "updated", "renamed", "merged", "retired"])),
        class_id=state.class_id,
        state=state,
        store_version=draw(st.integers(1, 10**9)),
        cause=draw(st.none() | st.text(max_size=20)),
        related=tuple(draw(st.lists(st.text(max_size=10), max_size=2))),
    )


drift_alerts = st.builds(
    DriftAlert,
    alert_id=st.text(max_size=30),
    kind=st.sampled_from(
        ["embedding", "unknown_rate", "label_mix", "prototype_shift", "confidence"]
    ),
    statistic=finite,
    threshold=finite,
    p_value=st.none() | finite,
    window=st.integers(0, 10**6),
    reference=st.integers(0, 10**6),
    at_item=st.integers(0, 10**9),
    severity=st.sampled_from(["info", "warning", "critical"]),
    affected_classes=st.lists(st.text(max_size=10), max_size=3).map(tuple),
    detail=st.text(max_size=80),
    store_version=st.integers(0, 10**6),
    emitted_at=finite,
)

unknown_records = st.builds(
    UnknownRecord,
    item_id=st.text(max_size=40),
    text=st.none() | st.text(max_size=80),
    vector=vectors,
    score=finite,
    nearest_class=st.none() | st.text(max_size=20),
    revision=st.integers(0, 100),
    store_version=st.integers(0, 10**6),
    source=st.none() | source_refs,
    event_time=st.none() | finite,
)


def _roundtrip(record: Record) -> None:
    assert decode(encode(record), type(record)) == record
    assert decode(encode(record, format="json"), type(record), format="json") == record


# ------------------------------------------- round trips, msgpack and JSON
@settings(max_examples=150, deadline=None)
@given(items())
def test_item_round_trips_exactly(item: Item) -> None:
    """Any valid item (text, float32 vector, metadata of every allowed type) decodes equal."""
    _roundtrip(item)


@settings(max_examples=60, deadline=None)
@given(label_records)
def test_label_record_round_trips_exactly(record: LabelRecord) -> None:
    """Label records, nested top-k classes and source refs included, decode equal."""
    _roundtrip(record)


@settings(max_examples=60, deadline=None)
@given(feedbacks)
def test_feedback_round_trips_exactly(record: Feedback) -> None:
    """Feedback records decode equal."""
    _roundtrip(record)


@settings(max_examples=60, deadline=None)
@given(class_events())
def test_class_event_round_trips_exactly(event: ClassEvent) -> None:
    """Class events, with their full class state (mean, sub-prototypes, exemplars), decode equal."""
    _roundtrip(event)


@settings(max_examples=60, deadline=None)
@given(drift_alerts)
def test_drift_alert_round_trips_exactly(alert: DriftAlert) -> None:
    """Drift alerts decode equal."""
    _roundtrip(alert)


@settings(max_examples=60, deadline=None)
@given(unknown_records)
def test_unknown_record_round_trips_exactly(record: UnknownRecord) -> None:
    """Unknown records (with their embedding) decode equal."""
    _roundtrip(record)


def test_dead_letter_round_trips_exactly() -> None:
    """Dead letters go to the dead-letter topic, so the codec carries them like every record.

    The records module says every message streamlabel writes to Kafka travels
    through this codec, and ``DeadLetter`` is one of them.
    """
    letter = DeadLetter(
        source=SourceRef(topic="items", partition=2, offset=41),
        key=b"item-7",
        value=b"\xc1not msgpack",
        reason="not_msgpack",
        error="not a msgpack message",
    )
    _roundtrip(letter)


def test_encode_refuses_a_record_that_is_not_a_message() -> None:
    """Nested parts (a source ref, a class state) are not messages of their own."""
    with pytest.raises(TypeError, match="not a wire record"):
        encode(SourceRef(topic="t", partition=0, offset=0))


# ------------------------------------------------------------ wire format
@settings(max_examples=50, deadline=None)
@given(vectors)
def test_vectors_are_little_endian_float32_bytes_on_the_wire(values: list[float]) -> None:
    """A vector travels as 4 bytes a dimension, exactly the float32 values."""
    raw = encode(UnknownRecord(item_id="a", vector=values, score=0.0, store_version=0))
    body = msgpack.unpackb(raw, raw=False)
    assert body["v"] == SCHEMA_VERSION
    assert body["t"] == "unknown"
    wire = body["d"]["vector"]
    assert isinstance(wire, bytes)
    assert wire == np.asarray(values, dtype="<f4").tobytes()


def test_matrices_travel_as_one_float32_byte_string_per_row() -> None:
    """Exemplars and sub-prototypes are lists of float32 byte strings."""
    state = ClassState(
        class_id="c",
        name="c",
        status="known",
        origin="feedback",
        count=2,
        exemplars=[[1.0, 2.0], [3.0, 4.0]],
        created_version=1,
        updated_version=1,
        created_at=0.0,
        updated_at=0.0,
    )
    raw = encode(ClassEvent(kind="created", class_id="c", state=state, store_version=1))
    rows = msgpack.unpackb(raw, raw=False)["d"]["state"]["exemplars"]
    assert rows == [np.asarray(r, "<f4").tobytes() for r in ([1.0, 2.0], [3.0, 4.0])]


def test_a_384_dim_vector_costs_four_bytes_a_dimension() -> None:
    """The wire size of an embedding is dominated by its 4·d bytes (not ~9·d msgpack floats)."""
    vec = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    raw = encode(Item(id="a", vector=vec))
    assert 4 * 384 < len(raw) < 4 * 384 + 64


# ------------------------------------------------------------ decode errors
def _envelope(data: object, *, v: object = SCHEMA_VERSION, t: object = "item") -> bytes:
    return msgpack.packb({"v": v, "t": t, "d": data}, use_bin_type=True)


def _reason(data: bytes | None, record_type: type[Record] = Item, **kwargs: int) -> str:
    with pytest.raises(DecodeError) as info:
        decode(data, record_type, **kwargs)
    assert isinstance(info.value, StreamlabelError)
    return info.value.reason


def _outcome(data: bytes) -> str:
    """The DecodeError reason for ``data`` as an item, or "ok" when it decodes."""
    try:
        decode(data, Item)
    except DecodeError as exc:
        return exc.reason
    return "ok"


REASONS = {
    "empty",
    "oversized",
    "not_msgpack",
    "not_json",  # bytes that start like a JSON object are read as JSON
    "bad_envelope",
    "schema_version",
    "wrong_type",
    "invalid",
}
GOOD = encode(Item(id="a", text="how do I sort a dict?"))


@pytest.mark.parametrize("data", [b"", None])
def test_empty_message_is_rejected_as_empty(data: bytes | None) -> None:
    """A tombstone or empty value has nothing to decode."""
    assert _reason(data) == "empty"


def test_message_over_the_limit_is_rejected_as_oversized() -> None:
    """One byte over ``max_bytes`` is oversized; exactly ``max_bytes`` is fine."""
    assert _reason(GOOD, max_bytes=len(GOOD) - 1) == "oversized"
    assert decode(GOOD, Item, max_bytes=len(GOOD)).id == "a"


def test_size_is_checked_before_framing() -> None:
    """Huge garbage is reported as oversized without being parsed."""
    assert _reason(b"\xc1" * 100, max_bytes=10) == "oversized"


@pytest.mark.parametrize(
    "data",
    [b"\xc1", b"\xc1\xc1\xc1\xc1", GOOD[:-3], GOOD + b"\x00", b"\x81\x01\x02"],
    ids=["reserved-byte", "garbage", "truncated", "trailing-bytes", "int-map-key"],
)
def test_bytes_that_are_not_one_msgpack_value_are_rejected_as_not_msgpack(data: bytes) -> None:
    """Invalid framing, truncation, trailing bytes and non-string map keys are not messages."""
    assert _reason(data) == "not_msgpack"


@pytest.mark.parametrize(
    "body",
    [[1, "item", {}], 7, "item", {"v": 1, "t": "item"}, {"d": {}, "t": "item"}],
    ids=["list", "int", "str", "no-d", "no-v"],
)
def test_msgpack_without_the_envelope_is_rejected_as_bad_envelope(body: object) -> None:
    """Valid msgpack that is not a ``{v, t, d}`` map is a bad envelope."""
    assert _reason(msgpack.packb(body)) == "bad_envelope"


@pytest.mark.parametrize("version", [0, SCHEMA_VERSION + 1, "1", None])
def test_other_schema_versions_are_rejected(version: object) -> None:
    """A message written by another schema version is refused, not misread."""
    assert _reason(_envelope({"id": "a", "text": "x"}, v=version)) == "schema_version"


def test_a_record_of_another_type_is_rejected_as_wrong_type() -> None:
    """Feedback on the items topic is refused even though it is a valid message."""
    feedback = encode(Feedback(text="x", label="sorting"))
    assert _reason(feedback, Item) == "wrong_type"
    assert decode(feedback, Feedback).label == "sorting"


@pytest.mark.parametrize(
    ("record_type", "data", "tag"),
    [
        (Item, {"text": "x"}, "item"),
        (Item, {"id": "a", "vector": np.array([1.0, np.nan], "<f4").tobytes()}, "item"),
        (Item, {"id": "a", "vector": b"\x00\x00\x80"}, "item"),
        (Item, {"id": "a", "text": ""}, "item"),
        (Item, {"id": "a", "text": "   "}, "item"),
        (Item, {"id": "a"}, "item"),
        (Item, ["a", "x"], "item"),
        (Feedback, {"text": "x", "label": "unknown"}, "feedback"),
        (Feedback, {"label": "sorting"}, "feedback"),
    ],
    ids=[
        "missing-id",
        "nan-vector",
        "odd-vector-bytes",
        "empty-text",
        "blank-text",
        "no-text-no-vector",
        "data-not-a-map",
        "feedback-unknown-label",
        "feedback-without-example",
    ],
)
def test_fields_that_fail_validation_are_rejected_as_invalid(
    record_type: type[Record], data: object, tag: str
) -> None:
    """A well-formed envelope whose fields break the schema is invalid."""
    assert _reason(_envelope(data, t=tag), record_type) == "invalid"


def test_invalid_message_names_the_offending_field() -> None:
    """The error message says which field failed, for the dead-letter record."""
    with pytest.raises(DecodeError, match="text") as info:
        decode(_envelope({"id": "a", "text": " "}), Item)
    assert info.value.message in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_of_arbitrary_bytes_raises_only_decode_error(data: bytes) -> None:
    """Whatever arrives on the topic, decode returns an item or raises a DecodeError."""
    assert _outcome(data) in {*REASONS, "ok"}


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | int64 | finite | st.text(max_size=10) | st.binary(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_decode_of_arbitrary_envelope_data_raises_only_decode_error(data: object) -> None:
    """Any msgpack value as the record's fields is either a valid item or ``invalid``."""
    assert _outcome(_envelope(data)) in {"invalid", "ok"}
