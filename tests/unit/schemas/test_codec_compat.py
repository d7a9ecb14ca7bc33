"""The JSON format and the compatibility policy: unknown fields ignored, newer versions refused."""

from __future__ import annotations

import contextlib
import json

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlabel.errors import DecodeError
from streamlabel.schemas import (
    OLDEST_SCHEMA_VERSION,
    SCHEMA_VERSION,
    ClassEvent,
    ClassState,
    DeadLetter,
    Feedback,
    Format,
    Item,
    LabelRecord,
    Record,
    ScoredClass,
    SourceRef,
    UnknownRecord,
    codec,
    decode,
    encode,
)

FORMATS: tuple[Format, ...] = ("msgpack", "json")


def _pack(body: object, fmt: Format) -> bytes:
    if fmt == "json":
        return json.dumps(body).encode()
    return msgpack.packb(body, use_bin_type=True)


def _reason(data: bytes, record_type: type[Record] = Item, fmt: Format = "json") -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(data, record_type, format=fmt)
    return info.value


# ------------------------------------------------------------ JSON format
def test_json_is_the_same_envelope_with_vectors_as_number_arrays() -> None:
    """A JSON message is a UTF-8 object {v, t, d}; vectors and matrices are number arrays."""
    state = ClassState(
        class_id="c",
        name="c",
        status="known",
        origin="feedback",
        count=2,
        mean=[0.5, 0.25],
        exemplars=[[1.0, 2.0], [3.0, 4.0]],
        created_version=1,
        updated_version=1,
        created_at=0.0,
        updated_at=0.0,
    )
    raw = encode(
        ClassEvent(kind="created", class_id="c", state=state, store_version=1), format="json"
    )
    body = json.loads(raw.decode("utf-8"))
    assert (body["v"], body["t"]) == (SCHEMA_VERSION, "class_event")
    assert body["d"]["state"]["mean"] == [0.5, 0.25]
    assert body["d"]["state"]["exemplars"] == [[1.0, 2.0], [3.0, 4.0]]


def test_json_text_is_utf8_not_escaped() -> None:
    """Non-ASCII text is written as UTF-8 bytes, readable by any JSON parser."""
    raw = encode(Item(id="a", text="café ☕"), format="json")
    assert "café ☕".encode() in raw


def test_json_bytes_fields_are_base64_and_round_trip() -> None:
    """A dead letter's raw bytes (not UTF-8) travel as base64 in JSON."""
    letter = DeadLetter(key=None, value=b"\xc1\xff\x00", reason="not_msgpack", error="bad")
    raw = encode(letter, format="json")
    assert json.loads(raw)["d"]["value"] == "wf8A"
    assert decode(raw, DeadLetter, format="json") == letter


def test_a_json_producer_may_write_vectors_with_any_number_syntax() -> None:
    """Integers and exponents in a vector array decode to the same float32 vector."""
    raw = b'{"v": 1, "t": "item", "d": {"id": "a", "vector": [1, 2.5e-1, -3E0]}}'
    assert decode(raw, Item, format="json").vector == (1.0, 0.25, -3.0)


@pytest.mark.parametrize(
    "data",
    [b"{", b"\xff\xfe{}", b"[1, 2", b'{"v": NaN}', b'{"v": 1} trailing', b"\xc1"],
    ids=["truncated", "not-utf8", "unclosed-list", "nan-literal", "trailing", "msgpack-byte"],
)
def test_bytes_that_are_not_one_json_value_are_rejected_as_not_json(data: bytes) -> None:
    """Invalid UTF-8, broken framing and non-JSON literals are not JSON messages."""
    assert _reason(data).reason == "not_json"


@pytest.mark.parametrize("body", [[1, "item", {}], 7, "item", {"v": 1, "t": "item"}])
def test_json_without_the_envelope_is_rejected_as_bad_envelope(body: object) -> None:
    """Valid JSON that is not a ``{v, t, d}`` object is a bad envelope."""
    assert _reason(json.dumps(body).encode()).reason == "bad_envelope"


@pytest.mark.parametrize("fmt", FORMATS)
def test_json_and_msgpack_check_sizes_and_types_alike(fmt: Format) -> None:
    """Empty, oversized and wrong-type messages give the same reasons in both formats."""
    raw = encode(Feedback(text="x", label="sorting"), format=fmt)
    assert _reason(b"", fmt=fmt).reason == "empty"
    with pytest.raises(DecodeError, match="oversized"):
        decode(raw, Feedback, format=fmt, max_bytes=len(raw) - 1)
    assert _reason(raw, Item, fmt=fmt).reason == "wrong_type"


def test_an_unknown_format_is_a_programming_error() -> None:
    """A format other than msgpack or json raises ValueError, not a DecodeError."""
    with pytest.raises(ValueError, match="wire format"):
        encode(Item(id="a", text="x"), format="xml")
    with pytest.raises(ValueError, match="wire format"):
        decode(b"<item/>", Item, format="xml")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_json_decode_of_arbitrary_bytes_raises_only_decode_error(data: bytes) -> None:
    """Whatever arrives on a JSON topic, decode returns an item or raises a DecodeError."""
    with contextlib.suppress(DecodeError):
        decode(data, Item, format="json")


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_json_decode_of_arbitrary_envelope_data_is_valid_or_invalid(data: object) -> None:
    """Any JSON value as the record's fields is either a valid item or ``invalid``."""
    raw = json.dumps({"v": 1, "t": "item", "d": data}).encode()
    outcome = "ok"
    try:
        decode(raw, Item, format="json")
    except DecodeError as exc:
        outcome = exc.reason
    assert outcome in {"ok", "invalid", "not_json"}  # not_json: a NaN written by json.dumps


# --------------------------------------------------- compatibility policy
LABEL = {
    "item_id": "a",
    "label": "c",
    "score": 0.9,
    "margin": 0.1,
    "is_unknown": False,
    "store_version": 1,
    "model_id": "m",
    "emitted_at": 0.0,
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_fields_are_ignored_at_every_level(fmt: Format) -> None:
    """A newer writer's extra fields, top-level or nested, decode as if absent."""
    data = {
        **LABEL,
        "confidence_band": "high",
        "source": {"topic": "t", "partition": 0, "offset": 3, "leader_epoch": 7},
        "top_k": [{"class_id": "c", "score": 0.9, "rank": 1}],
    }
    got = decode(_pack({"v": 1, "t": "label", "d": data}, fmt), LabelRecord, format=fmt)
    assert got == LabelRecord(
        **LABEL,
        source=SourceRef(topic="t", partition=0, offset=3),
        top_k=(ScoredClass(class_id="c", score=0.9),),
    )


def test_the_models_stay_strict_when_constructed() -> None:
    """Only decoding is lenient: building a record with an unknown field is still an error."""
    with pytest.raises(ValueError, match="colour"):
        Item(id="a", text="x", colour="red")  # type: ignore[call-arg]


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_fields_do_not_hide_a_missing_or_invalid_field(fmt: Format) -> None:
    """Required fields and value checks still apply, and the error names only the real problem."""
    missing = _reason(_pack({"v": 1, "t": "item", "d": {"text": "x", "new": 1}}, fmt), fmt=fmt)
    assert missing.reason == "invalid"
    assert missing.message == "id: Field required"
    bad = _reason(_pack({"v": 1, "t": "item", "d": {"id": "a", "text": " ", "z": 0}}, fmt), fmt=fmt)
    assert bad.reason == "invalid"
    assert bad.message.startswith("text:")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_version_from_the_oldest_to_the_current_decodes(fmt: Format) -> None:
    """The reader decodes each schema version it knows (only 1 today)."""
    for version in range(OLDEST_SCHEMA_VERSION, SCHEMA_VERSION + 1):
        raw = _pack({"v": version, "t": "item", "d": {"id": "a", "text": "x"}}, fmt)
        assert decode(raw, Item, format=fmt).id == "a"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_newer_schema_version_is_refused_with_a_clear_reason(fmt: Format) -> None:
    """A message from a newer writer is refused (dead-lettered), not misread."""
    raw = _pack({"v": SCHEMA_VERSION + 1, "t": "item", "d": {"id": "a", "text": "x"}}, fmt)
    err = _reason(raw, fmt=fmt)
    assert err.reason == "schema_version"
    assert "newer" in err.message


@pytest.mark.parametrize("version", [0, -1, True, 1.0, "1", None])
def test_versions_that_never_existed_are_refused(version: object) -> None:
    """Below the oldest version, or not an integer, is not a schema version."""
    raw = _pack({"v": version, "t": "item", "d": {"id": "a", "text": "x"}}, "json")
    assert _reason(raw).reason == "schema_version"


def test_a_vector_decodes_the_same_from_either_format() -> None:
    """Float32 bytes and a JSON number array give the same vector."""
    vec = np.random.default_rng(1).standard_normal(16).astype(np.float32)
    record = UnknownRecord(item_id="a", vector=vec, score=0.0, store_version=0)
    from_json = decode(encode(record, format="json"), UnknownRecord, format="json")
    assert from_json == decode(encode(record), UnknownRecord) == record


def test_every_older_version_has_its_upgrade() -> None:
    """Each version from the oldest up to the current one has a step to the next."""
    assert set(codec._UPGRADES) == set(range(OLDEST_SCHEMA_VERSION, SCHEMA_VERSION))
