"""The msgpack codec for wire records.

Every message is a msgpack map ``{"v": SCHEMA_VERSION, "t": <type tag>, "d": <fields>}``.
Vectors inside ``d`` are float32 bytes. Decoding checks, in order: empty input,
size limit, msgpack framing, envelope, schema version, type tag, field validation,
and raises :class:`~streamlabel.errors.DecodeError` with a machine-readable
``reason`` on the first failure, so a consumer can dead-letter the raw bytes.

Example:
    >>> from streamlabel.schemas import Item, decode, encode
    >>> raw = encode(Item(id="1", text="how do I sort a dict?"))
    >>> decode(raw, Item).text
    'how do I sort a dict?'
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgpack
from pydantic import ValidationError

from streamlabel.errors import DecodeError
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
DEFAULT_MAX_BYTES: Final = 1_000_000

_TAGS: Final[dict[type[Record], str]] = {
    Item: "item",
    LabelRecord: "label",
    Feedback: "feedback",
    ClassEvent: "class_event",
    DriftAlert: "alert",
    UnknownRecord: "unknown",
    DeadLetter: "dead_letter",
}

R = TypeVar("R", bound=Record)


def encode(record: Record) -> bytes:
    """Serialises a wire record to msgpack bytes with the schema version."""
    tag = _TAGS.get(type(record))
    if tag is None:
        raise TypeError(f"{type(record).__name__} is not a wire record")
    body = {"v": SCHEMA_VERSION, "t": tag, "d": record.model_dump(mode="python")}
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def decode(data: bytes | None, record_type: type[R], *, max_bytes: int = DEFAULT_MAX_BYTES) -> R:
    """Parses msgpack bytes into ``record_type``.

    Args:
        data: the raw message value.
        record_type: the expected record class (``Item``, ``Feedback``...).
        max_bytes: messages larger than this are rejected as ``oversized``.

    Raises:
        DecodeError: with ``reason`` one of ``empty``, ``oversized``, ``not_msgpack``,
            ``bad_envelope``, ``schema_version``, ``wrong_type``, ``invalid``.
    """
    if not data:
        raise DecodeError("empty", "the message has no value")
    if len(data) > max_bytes:
        raise DecodeError("oversized", f"{len(data)} bytes is more than the {max_bytes} allowed")
    try:
        body: Any = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise DecodeError("not_msgpack", f"not a msgpack message ({exc})") from None
    if not isinstance(body, dict) or not {"v", "t", "d"} <= body.keys():
        raise DecodeError("bad_envelope", "expected a map with keys 'v', 't' and 'd'")
    if body["v"] != SCHEMA_VERSION:
        raise DecodeError(
            "schema_version", f"schema version {body['v']!r}, this reader speaks {SCHEMA_VERSION}"
        )
    expected = _TAGS.get(record_type)
    if expected is None:
        raise TypeError(f"{record_type.__name__} is not a wire record")
    if body["t"] != expected:
        raise DecodeError("wrong_type", f"expected a {expected!r} record, got {body['t']!r}")
    try:
        return record_type.model_validate(body["d"])
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<record>'}: {e['msg']}" for e in exc.errors()
        )
        raise DecodeError("invalid", problems) from None
