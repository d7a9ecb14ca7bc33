"""Foreign records on the items topic: the field mapping (``kafka.items_mapping``).

* an envelope decodes exactly as :func:`decode` does, whatever the mapping;
* any other JSON object or msgpack map is read through the mapping: ids become
  strings, a record without one takes ``<topic>:<partition>:<offset>``;
* a foreign record that makes no item fails ``invalid``, naming its own field.
"""

from __future__ import annotations

import json

import msgpack
import numpy as np
import pytest

from streamlabel.errors import DecodeError
from streamlabel.schemas import Feedback, Item, SourceRef, decode, encode
from streamlabel.schemas.mapping import (
    DEFAULT_MAPPING,
    ItemMapping,
    decode_item,
    derived_id,
    item_from_fields,
)

TICKETS = ItemMapping(id_field="ticket_id", text_field="body", metadata_fields=("customer",))
AT = SourceRef(topic="support.tickets", partition=2, offset=1042)


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


def _invalid(data: bytes, mapping: ItemMapping = TICKETS) -> str:
    with pytest.raises(DecodeError) as info:
        decode_item(data, mapping, source=AT)
    assert info.value.reason == "invalid"
    return info.value.message


def test_a_foreign_json_record_becomes_an_item_with_its_id_as_a_string() -> None:
    raw = _json({"ticket_id": 17, "body": "printer on fire", "customer": "x", "priority": 1})
    item = decode_item(raw, TICKETS, source=AT)
    assert item == Item(id="17", text="printer on fire", metadata={"customer": "x"})


def test_a_foreign_msgpack_map_with_a_float32_vector_becomes_an_item() -> None:
    vec = np.array([0.5, -1.0, 2.0], np.float32)
    raw = msgpack.packb({"ticket_id": "t-1", "vector": vec.tobytes()}, use_bin_type=True)
    assert decode_item(raw, TICKETS, source=AT) == Item(id="t-1", vector=(0.5, -1.0, 2.0))


def test_the_default_mapping_reads_a_bare_item_object() -> None:
    """Streamlabel's own field names without the envelope: id, text, vector."""
    item = decode_item(_json({"id": "a", "text": "x", "vector": [1, 2]}), source=AT)
    assert item == Item(id="a", text="x", vector=(1.0, 2.0))


@pytest.mark.parametrize("missing", [{}, {"ticket_id": None}], ids=["absent", "null"])
def test_a_record_without_an_id_takes_its_position_as_id(missing: dict[str, object]) -> None:
    item = decode_item(_json({"body": "no id here", **missing}), TICKETS, source=AT)
    assert item.id == derived_id(AT) == "support.tickets:2:1042"


def test_a_derived_id_is_stable_across_replays_and_distinct_per_position() -> None:
    """The same message read again (a restart, a replay) gets the same id; another offset not."""
    raw = _json({"body": "same text"})
    first = decode_item(raw, TICKETS, source=AT)
    again = decode_item(raw, TICKETS, source=SourceRef(topic=AT.topic, partition=2, offset=1042))
    other = decode_item(raw, TICKETS, source=SourceRef(topic=AT.topic, partition=2, offset=1043))
    other_partition = decode_item(raw, TICKETS, source=SourceRef(topic=AT.topic, partition=3,
                                                                 offset=1042))  # fmt: skip
    assert first.id == again.id
    assert len({first.id, other.id, other_partition.id}) == 3


def test_a_record_without_an_id_or_a_position_is_invalid() -> None:
    with pytest.raises(DecodeError, match="ticket_id"):
        item_from_fields({"body": "x"}, TICKETS, source=None)


@pytest.mark.parametrize("bad_id", [1.5, True, ["a"], {"n": 1}])
def test_an_id_that_is_not_a_string_or_an_integer_is_invalid(bad_id: object) -> None:
    message = _invalid(_json({"ticket_id": bad_id, "body": "x"}))
    assert "'ticket_id' must be a string or an integer" in message


def test_a_record_with_neither_text_nor_vector_is_invalid_naming_both_fields() -> None:
    message = _invalid(_json({"ticket_id": 1, "subject": "printer"}))
    assert "no 'body' or 'vector'" in message


def test_without_a_vector_field_a_vector_is_not_read() -> None:
    no_vectors = ItemMapping(text_field="body", vector_field=None)
    message = _invalid(_json({"id": "a", "vector": [1.0]}), no_vectors)
    assert message.endswith("the record has no 'body'")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"ticket_id": 1, "body": 42}, "body: Input should be a valid string"),
        ({"ticket_id": 1, "body": "   "}, "body: Value error, text is empty"),
        ({"ticket_id": 1, "vector": [1, "x"]}, "vector: Value error, vector is not numeric"),
        ({"ticket_id": "", "body": "x"}, "ticket_id: String should have at least 1 character"),
        ({"ticket_id": 1, "body": "x", "customer": {"a": 1}}, "metadata field 'customer'"),
    ],
)
def test_a_wrong_type_is_invalid_and_names_the_records_own_field(
    fields: dict[str, object], named: str
) -> None:
    message = _invalid(_json(fields))
    assert named in message
    assert message.startswith("foreign record (mapped by id 'ticket_id', text 'body'")


def test_an_envelope_decodes_as_it_always_did_whatever_the_mapping() -> None:
    """Streamlabel's own item records are never mapped, even under a foreign mapping."""
    for fmt in ("msgpack", "json"):
        item = Item(id="own", text="an envelope", metadata={"customer": "y"}, event_time=3.0)
        raw = encode(item, format=fmt)
        assert decode_item(raw, TICKETS, source=AT) == decode(raw, Item) == item


def test_an_envelope_keeps_its_own_failures() -> None:
    """A broken envelope is not read as a foreign record: its reason is the codec's."""
    cases = {
        "wrong_type": encode(Feedback(text="x", label="y")),
        "schema_version": _json({"v": 99, "t": "item", "d": {"id": "a", "text": "x"}}),
        "invalid": _json({"v": 1, "t": "item", "d": {"ticket_id": 1, "body": "x"}}),
    }
    for reason, raw in cases.items():
        with pytest.raises(DecodeError) as info:
            decode_item(raw, TICKETS, source=AT)
        assert info.value.reason == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"printer on fire", "not_msgpack"),
        (b'{"ticket_id": 1, "body": ', "not_json"),
        (b'["printer on fire"]', "not_msgpack"),  # on a msgpack topic: not a JSON object
        (msgpack.packb(["a", "b"]), "bad_envelope"),
    ],
)
def test_bytes_that_are_no_record_keep_the_codecs_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_item(data, TICKETS, source=AT)
    assert info.value.reason == reason


def test_a_json_array_on_a_json_topic_is_a_bad_envelope_saying_what_it_got() -> None:
    with pytest.raises(DecodeError, match="got a list") as info:
        decode_item(b'["printer on fire"]', TICKETS, source=AT, format="json")
    assert info.value.reason == "bad_envelope"


def test_an_oversized_foreign_record_is_refused_before_it_is_parsed() -> None:
    raw = _json({"ticket_id": 1, "body": "x" * 100})
    with pytest.raises(DecodeError, match="oversized"):
        decode_item(raw, TICKETS, source=AT, max_bytes=50)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id_field": "text"},
        {"text_field": "vector"},
        {"metadata_fields": ("id",)},
        {"metadata_fields": ("a", "a")},
        {"id_field": ""},
        {"vector_field": ""},
    ],
)
def test_a_mapping_maps_each_field_once_and_names_none_empty(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"mapped twice|empty"):
        ItemMapping(**kwargs)  # type: ignore[arg-type]


def test_the_default_mapping_uses_streamlabels_own_field_names() -> None:
    assert ItemMapping("id", "text", "vector", ()) == DEFAULT_MAPPING
