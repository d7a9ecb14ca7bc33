"""The codec for wire records: msgpack (the default) or JSON, one envelope for both.

Every message is a map ``{"v": <schema version>, "t": <type tag>, "d": <fields>}``:
a msgpack map whose vectors are float32 bytes, or a UTF-8 JSON object whose
vectors are number arrays (and whose byte fields are base64url strings). Decoding
checks, in order: empty input, size limit, framing, envelope, schema version,
type tag, field validation, and raises :class:`~streamlabel.errors.DecodeError`
with a machine-readable ``reason`` on the first failure, so a consumer can
dead-letter the raw bytes.

A writer chooses the format (a topic's ``kafka.format.<topic>``); a reader takes
either, whatever its topic is configured for: the first byte tells them apart
(a JSON object starts with ``{``, after optional whitespace; a msgpack map with
``0x80``-``0x8f``, ``0xde`` or ``0xdf``, never a printable character), so the
detection cannot mistake one envelope for the other.

Compatibility: a reader decodes every schema version from
:data:`OLDEST_SCHEMA_VERSION` to :data:`SCHEMA_VERSION` (an older body is
upgraded first) and ignores fields it does not know, so a newer writer may add
optional fields without breaking it; it refuses a newer version. Construction
stays strict: the models themselves forbid unknown fields.

Example:
    >>> from streamlabel.schemas import Item, decode, encode
    >>> raw = encode(Item(id="1", text="how do I sort a dict?"))
    >>> decode(raw, Item).text
    'how do I sort a dict?'
    >>> encode(Item(id="1", vector=[0.5, 1.0]), format="json")[:46]
    b'{"v":1,"t":"item","d":{"id":"1","text":null,"v'
    >>> raw = b'{"v":1,"t":"item","d":{"id":"2","text":"hi","colour":"red"}}'
    >>> decode(raw, Item).id  # JSON read on a msgpack topic; an unknown field is ignored
    '2'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeVar

import msgpack
from pydantic import ValidationError

from streamlabel.errors import DecodeError
from streamlabel.schemas.commands import Command, CommandResult
from streamlabel.schemas.records import (
    ClassEvent,
    DeadLetter,
    DriftAlert,
    Feedback,
    Item,
    LabelRecord,
    Record,
    UnknownRecord,
)

SCHEMA_VERSION: Final = 1
"""The version this writer stamps on every message."""
OLDEST_SCHEMA_VERSION: Final = 1
"""The oldest version a reader still decodes (every version up to SCHEMA_VERSION does)."""
DEFAULT_MAX_BYTES: Final = 1_000_000

Format = Literal["msgpack", "json"]
"""A wire format: ``msgpack`` (compact, vectors as float32 bytes) or ``json``."""

_TAGS: Final[dict[type[Record], str]] = {
    Item: "item",
    LabelRecord: "label",
    Feedback: "feedback",
    ClassEvent: "class_event",
    DriftAlert: "alert",
    UnknownRecord: "unknown",
    DeadLetter: "dead_letter",
    Command: "command",
    CommandResult: "command_result",
}

_UPGRADES: Final[dict[int, Callable[[str, Any], Any]]] = {}
"""``version -> f(tag, body)`` turning a body of that version into one of the next.

Empty while version 1 is the only one; a version 2 adds the entry for 1 here,
and the corpus of version-1 messages in the tests keeps it honest.
"""

R = TypeVar("R", bound=Record)


def wire_types() -> dict[str, type[Record]]:
    """Every record type that travels as a message, by its type tag."""
    return {tag: record_type for record_type, tag in _TAGS.items()}


def _tag(record_type: type[Record]) -> str:
    tag = _TAGS.get(record_type)
    if tag is None:
        raise TypeError(f"{record_type.__name__} is not a wire record")
    return tag


def encode(record: Record, *, format: Format = "msgpack") -> bytes:
    """Serialises a wire record, with its type tag and the schema version.

    Args:
        record: a message record (``Item``, ``LabelRecord``...).
        format: ``msgpack`` (vectors as float32 bytes) or ``json`` (vectors as
            number arrays, UTF-8, no spaces).

    Raises:
        TypeError: ``record`` is not a message of its own (a nested part).
        ValueError: ``format`` is neither ``msgpack`` nor ``json``.
    """
    tag = _tag(type(record))
    _parser(format)  # an unknown format is a programming error
    if format == "json":
        text = f'{{"v":{SCHEMA_VERSION},"t":{json.dumps(tag)},"d":{record.model_dump_json()}}}'
        return text.encode("utf-8")
    body = {"v": SCHEMA_VERSION, "t": tag, "d": record.model_dump(mode="python")}
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def decode(
    data: bytes | None,
    record_type: type[R],
    *,
    format: Format = "msgpack",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> R:
    """Parses a message into ``record_type``; fields it does not know are ignored.

    The message may be in either format (:func:`detect`); ``format`` is the
    topic's, which names the failure of a message that is in neither.

    Args:
        data: the raw message value.
        record_type: the expected record class (``Item``, ``Feedback``...).
        format: the topic's format, ``msgpack`` or ``json``.
        max_bytes: messages larger than this are rejected as ``oversized``.

    Raises:
        DecodeError: with ``reason`` one of ``empty``, ``oversized``, ``not_msgpack``
            (``not_json`` in JSON), ``bad_envelope``, ``schema_version``,
            ``wrong_type``, ``invalid``.
        TypeError: ``record_type`` is not a message type.
        ValueError: ``format`` is neither ``msgpack`` nor ``json``.
    """
    body, written = parse(data, format=format, max_bytes=max_bytes)
    return decode_body(body, record_type, format=written)


def detect(data: bytes) -> Format | None:
    """The format a message was written in, from its first byte; None if neither.

    Example:
        >>> detect(b'  {"v": 1}'), detect(bytes([0x83])), detect(b"plain text")
        ('json', 'msgpack', None)
    """
    first = data[0]
    if first in _MSGPACK_MAP:
        return "msgpack"
    if first == _JSON_OPEN:
        return "json"
    if first in _JSON_SPACE and data.lstrip(_JSON_SPACE)[:1] == b"{":
        return "json"
    return None


def parse(
    data: bytes | None, *, format: Format = "msgpack", max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[Any, Format]:
    """A message's body, and the format it was written in (a message that is neither
    a JSON object nor a msgpack map is parsed as ``format``, the topic's).

    Raises:
        DecodeError: ``empty``, ``oversized``, ``not_msgpack`` or ``not_json``.
        ValueError: ``format`` is neither ``msgpack`` nor ``json``.
    """
    parser = _parser(format)  # an unknown format is a programming error
    if not data:
        raise DecodeError("empty", "the message has no value")
    if len(data) > max_bytes:
        raise DecodeError("oversized", f"{len(data)} bytes is more than the {max_bytes} allowed")
    written = detect(data)
    if written is None:
        return parser(data), format
    return _PARSERS[written](data), written


def is_envelope(body: Any) -> bool:
    """Whether a parsed message is a streamlabel envelope (a map with ``v``, ``t``, ``d``)."""
    return isinstance(body, dict) and body.keys() >= _ENVELOPE


def decode_body(body: Any, record_type: type[R], *, format: Format) -> R:
    """A parsed message (:func:`parse`) as ``record_type``: the checks of :func:`decode`
    after the framing.

    Raises:
        DecodeError: ``bad_envelope``, ``schema_version``, ``wrong_type`` or ``invalid``.
        TypeError: ``record_type`` is not a message type.
    """
    if not is_envelope(body):
        raise DecodeError("bad_envelope", "expected a map with keys 'v', 't' and 'd'")
    version = _checked_version(body["v"])
    expected = _tag(record_type)
    if body["t"] != expected:
        raise DecodeError("wrong_type", f"expected a {expected!r} record, got {body['t']!r}")
    fields = body["d"]
    for v in range(version, SCHEMA_VERSION):
        fields = _UPGRADES[v](expected, fields)
    try:
        if format == "json":  # JSON-mode validation: byte fields are base64 there
            return record_type.model_validate_json(json.dumps(fields), extra="ignore")
        return record_type.model_validate(fields, extra="ignore")
    except ValidationError as exc:
        raise DecodeError("invalid", validation_problems(exc)) from None


def validation_problems(exc: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """One line naming each invalid field (``vector: vector is empty; ...``).

    Args:
        exc: the record's validation error.
        names: a field's name as the message spells it, by the record's name
            (a foreign record's mapped fields); the first part of a location only.
    """
    names = names or {}
    problems = []
    for e in exc.errors():
        loc = [str(p) for p in e["loc"]]
        if loc:
            loc[0] = names.get(loc[0], loc[0])
        problems.append(f"{'.'.join(loc) or '<record>'}: {e['msg']}")
    return "; ".join(problems)


def _parser(format: str) -> Callable[[bytes], Any]:
    parser = _PARSERS.get(format)
    if parser is None:
        raise ValueError(f"unknown wire format {format!r}, expected 'msgpack' or 'json'")
    return parser


def _parse_msgpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise DecodeError("not_msgpack", f"not a msgpack message ({exc})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(data: bytes) -> Any:
    try:
        return json.loads(bytes(data).decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise DecodeError("not_json", f"not a UTF-8 JSON message ({exc})") from None


_PARSERS: Final[dict[str, Callable[[bytes], Any]]] = {
    "msgpack": _parse_msgpack,
    "json": _parse_json,
}
_ENVELOPE: Final = frozenset({"v", "t", "d"})
_MSGPACK_MAP: Final = frozenset({*range(0x80, 0x90), 0xDE, 0xDF})
"""The first byte of a msgpack map: a fixmap, a map 16 or a map 32."""
_JSON_OPEN: Final = ord("{")
_JSON_SPACE: Final = b" \t\r\n"


def _checked_version(version: Any) -> int:
    """The message's schema version, when this reader decodes it."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise DecodeError("schema_version", f"schema version {version!r} is not an integer")
    if version > SCHEMA_VERSION:
        raise DecodeError(
            "schema_version",
            f"schema version {version} is newer than this reader's {SCHEMA_VERSION}: upgrade it",
        )
    if version < OLDEST_SCHEMA_VERSION:
        raise DecodeError(
            "schema_version",
            f"schema version {version}, this reader decodes {OLDEST_SCHEMA_VERSION} to "
            f"{SCHEMA_VERSION}",
        )
    return version
