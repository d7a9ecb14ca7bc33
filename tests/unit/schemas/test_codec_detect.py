"""A reader takes either wire format on every topic: the first byte tells them apart.

A writer uses its topic's ``kafka.format.<topic>``; a reader configured for the
other format must still decode what it wrote (a JSON producer on a msgpack
deployment, a topic switched from one format to the other with old messages
still retained). The topic's format only names the failure of bytes that are
in neither format.
"""

from __future__ import annotations

import json

import msgpack
import pytest
from test_corpus import CORPUS

from streamlabel.errors import DecodeError
from streamlabel.schemas import Format, Item, Record, decode, encode
from streamlabel.schemas.codec import decode_body, detect, is_envelope, parse

FORMATS: tuple[Format, ...] = ("msgpack", "json")


def _reason(data: bytes, topic_format: Format, record_type: type[Record] = Item) -> str:
    with pytest.raises(DecodeError) as info:
        decode(data, record_type, format=topic_format)
    return info.value.reason


@pytest.mark.parametrize("topic_format", FORMATS)
@pytest.mark.parametrize("written", FORMATS)
@pytest.mark.parametrize("name", CORPUS)
def test_every_record_type_round_trips_whatever_format_the_topic_is_configured_for(
    name: str, written: Format, topic_format: Format
) -> None:
    """Each record written in one format decodes equal on a topic of either format."""
    record = CORPUS[name]
    raw = encode(record, format=written)
    assert decode(raw, type(record), format=topic_format) == record
    body, detected = parse(raw, format=topic_format)
    assert detected == written
    assert decode_body(body, type(record), format=detected) == record


def test_json_is_the_format_of_bytes_starting_with_a_brace_after_whitespace() -> None:
    """Pretty-printed or newline-led JSON is still recognised as JSON."""
    raw = b' \n\t\r{"v": 1, "t": "item", "d": {"id": "a", "text": "x"}}\n'
    assert detect(raw) == "json"
    assert decode(raw, Item).id == "a"


@pytest.mark.parametrize(
    "header",
    [bytes([0x80]), bytes([0x83]), bytes([0x8F]), b"\xde\x00\x10", b"\xdf\x00\x00\x00\x10"],
    ids=["fixmap-0", "fixmap-3", "fixmap-15", "map16", "map32"],
)
def test_every_msgpack_map_header_is_msgpack(header: bytes) -> None:
    """fixmap, map 16 and map 32 headers are read as msgpack."""
    assert detect(header) == "msgpack"


def test_a_large_msgpack_envelope_is_detected_by_its_map16_header() -> None:
    """An envelope body with many keys (a map 16) is still detected and decoded."""
    metadata = {f"k{i}": i for i in range(40)}
    raw = msgpack.packb({"v": 1, "t": "item", "d": {"id": "a", "text": "x"}, **metadata})
    assert raw[0] == 0xDE
    assert decode(raw, Item, format="json").id == "a"


@pytest.mark.parametrize("data", [b"plain text", b"42", b'"item"', b"\xc1", b"[1, 2]"])
def test_bytes_that_are_neither_a_json_object_nor_a_msgpack_map_are_undetected(
    data: bytes,
) -> None:
    assert detect(data) is None


@pytest.mark.parametrize(
    ("data", "topic_format", "reason"),
    [
        (b"plain text", "msgpack", "not_msgpack"),
        (b"plain text", "json", "not_json"),
        (b"[1, 2]", "json", "bad_envelope"),  # valid JSON, not an object
        (b'"item"', "json", "bad_envelope"),
        (msgpack.packb([1, 2]), "msgpack", "bad_envelope"),
        (b'{"v": 1, "t": "item", "d": ', "msgpack", "not_json"),  # broken JSON stays JSON
        (b"\x81\xa1v", "json", "not_msgpack"),  # a truncated msgpack map stays msgpack
    ],
)
def test_a_message_in_neither_format_is_reported_in_the_format_it_looks_like_or_the_topics(
    data: bytes, topic_format: Format, reason: str
) -> None:
    """Bytes that start like one format fail as that format; others as the topic's."""
    assert _reason(data, topic_format) == reason


@pytest.mark.parametrize("topic_format", FORMATS)
def test_the_checks_after_the_framing_are_the_same_in_both_formats(topic_format: Format) -> None:
    """Envelope, version and type are checked alike for a message of the other format."""
    other: Format = "json" if topic_format == "msgpack" else "msgpack"

    def pack(body: object) -> bytes:
        return json.dumps(body).encode() if other == "json" else msgpack.packb(body)

    assert _reason(pack({"v": 1, "t": "item"}), topic_format) == "bad_envelope"
    assert _reason(pack({"v": 9, "t": "item", "d": {}}), topic_format) == "schema_version"
    assert _reason(pack({"v": 1, "t": "label", "d": {}}), topic_format) == "wrong_type"
    assert _reason(pack({"v": 1, "t": "item", "d": {"id": "a"}}), topic_format) == "invalid"


def test_size_and_emptiness_are_checked_before_detection() -> None:
    assert _reason(b"", "json") == "empty"
    with pytest.raises(DecodeError, match="oversized"):
        decode(b"{" + b" " * 100, Item, max_bytes=10)


def test_an_envelope_is_a_map_with_v_t_and_d() -> None:
    assert is_envelope({"v": 1, "t": "item", "d": {}, "extra": 0})
    assert not is_envelope({"v": 1, "t": "item"})
    assert not is_envelope([1, "item", {}])


def test_an_unknown_topic_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="wire format"):
        parse(encode(Item(id="a", text="x")), format="xml")  # type: ignore[arg-type]
