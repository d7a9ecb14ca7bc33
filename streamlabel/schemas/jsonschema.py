"""JSON Schemas of the wire messages, one per record type, for producers in any language.

Each schema describes a whole JSON message, the envelope included:
``{"v": <schema version>, "t": "<tag>", "d": <record>}``, the record as the
pydantic model validates it in JSON mode (vectors as number arrays, byte fields
as base64url strings). Unknown fields are allowed, as readers ignore them
(``additionalProperties`` is left open). The checked-in copies live under
``docs/reference/schemas/<tag>.json``; regenerate them after a model change::

    python -m streamlabel.schemas.jsonschema            # writes docs/reference/schemas
    python -m streamlabel.schemas.jsonschema --check    # exit 1 when they are stale

Example:
    >>> schema = message_schema("item")
    >>> schema["properties"]["t"], schema["$defs"]["Item"]["required"]
    ({'const': 'item'}, ['id'])
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from streamlabel.schemas.codec import OLDEST_SCHEMA_VERSION, SCHEMA_VERSION, wire_types

DEFAULT_DIR: Final = Path("docs/reference/schemas")
_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_REF: Final = "#/$defs/{model}"


def message_schema(tag: str) -> dict[str, Any]:
    """The JSON Schema of one message type, by its type tag (``item``, ``label``...).

    Raises:
        KeyError: ``tag`` is not a wire record's tag.
    """
    record_type = wire_types()[tag]
    body = record_type.model_json_schema(ref_template=_REF, mode="validation")
    defs = body.pop("$defs", {})
    defs[record_type.__name__] = body
    return {
        "$schema": _DIALECT,
        "$id": f"{tag}.json",
        "title": f"{record_type.__name__} message",
        "description": f"The '{tag}' message: the envelope around one {record_type.__name__}.",
        "type": "object",
        "properties": {
            "v": {
                "type": "integer",
                "minimum": OLDEST_SCHEMA_VERSION,
                "maximum": SCHEMA_VERSION,
                "description": "Schema version of the writer.",
            },
            "t": {"const": tag},
            "d": {"$ref": _REF.format(model=record_type.__name__)},
        },
        "required": ["v", "t", "d"],
        "$defs": {name: _open(defs[name]) for name in sorted(defs)},
    }


def _open(schema: Any) -> Any:
    """``schema`` without ``additionalProperties: false`` (readers ignore unknown fields)."""
    if isinstance(schema, dict):
        return {
            k: _open(v)
            for k, v in schema.items()
            if not (k == "additionalProperties" and v is False)
        }
    if isinstance(schema, list):
        return [_open(v) for v in schema]
    return schema


def rendered() -> dict[str, str]:
    """File name -> text of every message schema (what :func:`write_schemas` writes)."""
    return {
        f"{tag}.json": json.dumps(message_schema(tag), indent=2, ensure_ascii=False) + "\n"
        for tag in sorted(wire_types())
    }


def stale(directory: Path = DEFAULT_DIR) -> list[str]:
    """The file names in ``directory`` that differ from the models, are missing or are extra."""
    expected = rendered()
    present = {p.name for p in directory.glob("*.json")} if directory.is_dir() else set()
    out = [n for n, text in expected.items() if not _same(directory / n, text)]
    return sorted(out + [n for n in present if n not in expected])


def _same(path: Path, text: str) -> bool:
    return path.is_file() and path.read_text(encoding="utf-8") == text


def write_schemas(directory: Path = DEFAULT_DIR) -> list[Path]:
    """Writes one ``<tag>.json`` per record type into ``directory``, removing stale ones."""
    directory.mkdir(parents=True, exist_ok=True)
    expected = rendered()
    for old in directory.glob("*.json"):
        if old.name not in expected:
            old.unlink()
    for name, text in expected.items():
        (directory / name).write_text(text, encoding="utf-8")
    return [directory / name for name in expected]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamlabel.schemas.jsonschema [--check] [DIR]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    rest = [a for a in args if a != "--check"]
    directory = Path(rest[0]) if rest else DEFAULT_DIR
    if check:
        names = stale(directory)
        for name in names:
            print(f"stale: {directory / name}", file=sys.stderr)
        return 1 if names else 0
    for path in write_schemas(directory):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
