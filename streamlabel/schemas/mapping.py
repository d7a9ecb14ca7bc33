"""Foreign records as items: a field mapping, so an existing topic works as ``items`` as it is.

A message on the items topic is either a streamlabel envelope (a map with
``v``, ``t`` and ``d``: decoded exactly as :func:`~streamlabel.schemas.codec.decode`
does, whatever the mapping) or a *foreign record*: any other JSON object or
msgpack map, read through an :class:`ItemMapping` (``kafka.items_mapping``):

* the id is the ``id_field`` (a string, or an integer written in decimal); a
  record without one (absent or null) gets the id ``<topic>:<partition>:<offset>``
  of the message it came in, stable across restarts and replays (an offset
  never changes), collision-free, and the same key as its dead letter's;
* the text is the ``text_field``, the vector the ``vector_field`` (a number
  array, or float32 bytes in msgpack); one of them is required;
* the ``metadata_fields`` (scalars) are copied into the item's metadata;
  every other field is ignored.

Example:
    >>> from streamlabel.schemas import SourceRef
    >>> mapping = ItemMapping(id_field="ticket_id", text_field="body")
    >>> raw = b'{"ticket_id": 17, "body": "printer on fire", "customer": "x"}'
    >>> item = decode_item(raw, mapping, source=SourceRef(topic="t", partition=0, offset=5))
    >>> item.id, item.text
    ('17', 'printer on fire')
    >>> where = SourceRef(topic="t", partition=2, offset=9)
    >>> decode_item(b'{"body": "no id"}', mapping, source=where).id
    't:2:9'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from streamlabel.errors import DecodeError
from streamlabel.schemas.codec import (
    DEFAULT_MAX_BYTES,
    Format,
    decode_body,
    is_envelope,
    parse,
    validation_problems,
)
from streamlabel.schemas.records import Item, SourceRef

__all__ = ["DEFAULT_MAPPING", "ItemMapping", "decode_item", "derived_id", "item_from_fields"]


@dataclass(frozen=True)
class ItemMapping:
    """Which top-level fields of a foreign record make an item.

    Attributes:
        id_field: the item id (a string or an integer); absent: derived from the position.
        text_field: the text to embed.
        vector_field: a pre-computed embedding; None reads none.
        metadata_fields: fields copied into the item's metadata (scalar values).
    """

    id_field: str = "id"
    text_field: str = "text"
    vector_field: str | None = "vector"
    metadata_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        named = [self.id_field, self.text_field, *self.metadata_fields]
        if self.vector_field is not None:
            named.append(self.vector_field)
        if any(not name for name in named):
            raise ValueError("a mapped field name is empty")
        twice = sorted({name for name in named if named.count(name) > 1})
        if twice:
            raise ValueError(f"field {twice[0]!r} is mapped twice (each field maps to one part)")

    def describe(self) -> str:
        """The mapping in one phrase, for an error message."""
        return f"id {self.id_field!r}, text {self.text_field!r}, vector {self.vector_field!r}"


DEFAULT_MAPPING = ItemMapping()
"""Streamlabel's own field names: a bare item object (no envelope) reads as an item."""


def derived_id(source: SourceRef) -> str:
    """The id of a foreign record that has none: where it was read.

    Example:
        >>> derived_id(SourceRef(topic="tickets", partition=3, offset=1042))
        'tickets:3:1042'
    """
    return f"{source.topic}:{source.partition}:{source.offset}"


def decode_item(
    data: bytes | None,
    mapping: ItemMapping = DEFAULT_MAPPING,
    *,
    source: SourceRef | None,
    format: Format = "msgpack",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Item:
    """An item from a message on the items topic: an envelope, or a foreign record.

    Args:
        data: the raw message value.
        mapping: how a foreign record's fields make an item.
        source: where the message was read (a foreign record without an id takes
            its id from it).
        format: the topic's format (names the failure of bytes in neither format).
        max_bytes: larger messages are rejected as ``oversized``.

    Raises:
        DecodeError: the reasons of :func:`~streamlabel.schemas.codec.decode`;
            a foreign record that makes no item is ``invalid`` (it names the field).
    """
    body, written = parse(data, format=format, max_bytes=max_bytes)
    if is_envelope(body):
        return decode_body(body, Item, format=written)
    if not isinstance(body, dict):
        raise DecodeError(
            "bad_envelope",
            f"expected a streamlabel envelope or a record object, got a {type(body).__name__}",
        )
    return item_from_fields(body, mapping, source=source)


def item_from_fields(
    fields: Mapping[str, Any], mapping: ItemMapping, *, source: SourceRef | None
) -> Item:
    """The item a foreign record's fields make under ``mapping``.

    Raises:
        DecodeError: ``invalid``, naming the record's field (its id is not a string
            or an integer, it has neither text nor vector, a value has the wrong type).
    """
    text = fields.get(mapping.text_field)
    vector = fields.get(mapping.vector_field) if mapping.vector_field is not None else None
    if text is None and vector is None:
        fields_named = repr(mapping.text_field) + (
            f" or {mapping.vector_field!r}" if mapping.vector_field is not None else ""
        )
        raise _invalid(mapping, f"no text or vector: the record has no {fields_named}")
    values: dict[str, Any] = {
        "id": _item_id(fields.get(mapping.id_field), mapping, source),
        "text": text,
        "vector": vector,
        "metadata": _metadata(fields, mapping),
    }
    names = {"id": mapping.id_field, "text": mapping.text_field}
    if mapping.vector_field is not None:
        names["vector"] = mapping.vector_field
    try:
        return Item.model_validate(values)
    except ValidationError as exc:
        raise _invalid(mapping, validation_problems(exc, names)) from None


def _invalid(mapping: ItemMapping, problem: str) -> DecodeError:
    return DecodeError("invalid", f"foreign record (mapped by {mapping.describe()}): {problem}")


def _metadata(fields: Mapping[str, Any], mapping: ItemMapping) -> dict[str, Any]:
    metadata = {name: fields[name] for name in mapping.metadata_fields if name in fields}
    for name, value in metadata.items():
        if not isinstance(value, _SCALARS):
            raise _invalid(
                mapping,
                f"metadata field {name!r} must be a string, number, boolean or null, "
                f"got {type(value).__name__}",
            )
    return metadata


_SCALARS = (str, int, float, bool, type(None))


def _item_id(value: Any, mapping: ItemMapping, source: SourceRef | None) -> str:
    if value is None:
        if source is None:
            raise _invalid(mapping, f"no {mapping.id_field!r} and no position to derive an id from")
        return derived_id(source)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _invalid(
        mapping,
        f"id {mapping.id_field!r} must be a string or an integer, got {type(value).__name__}",
    )
