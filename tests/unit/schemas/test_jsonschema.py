"""The published JSON Schemas: current with the models, and true of real messages."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema as validator
import pytest

from streamlabel.schemas import wire_types
from streamlabel.schemas.jsonschema import main, message_schema, rendered, stale, write_schemas

ROOT = Path(__file__).resolve().parents[3]
PUBLISHED = ROOT / "docs" / "reference" / "schemas"
CORPUS = Path(__file__).parent / "corpus" / "v1"


def test_checked_in_schemas_match_the_models() -> None:
    """A model change without regenerating the schemas fails here."""
    assert stale(PUBLISHED) == [], (
        "docs/reference/schemas is stale: run `python -m streamlabel.schemas.jsonschema`"
    )


def test_there_is_one_schema_per_record_type() -> None:
    """Every type in the codec's tag table is published, under its tag."""
    assert set(rendered()) == {f"{tag}.json" for tag in wire_types()}


@pytest.mark.parametrize("tag", sorted(wire_types()))
def test_each_schema_is_a_valid_2020_12_schema(tag: str) -> None:
    """Generic JSON Schema tools can load what is published."""
    validator.Draft202012Validator.check_schema(message_schema(tag))


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.json")), ids=lambda p: p.stem)
def test_every_json_corpus_message_satisfies_its_schema(path: Path) -> None:
    """Messages the encoder writes are valid against the schema a producer would use."""
    message = json.loads(path.read_text(encoding="utf-8"))
    schema = message_schema(message["t"])
    checker = validator.Draft202012Validator(schema, format_checker=validator.FormatChecker())
    checker.validate(message)


def test_the_schema_allows_unknown_fields_and_refuses_a_newer_version() -> None:
    """The schema states the compatibility policy: extra fields pass, a newer ``v`` does not."""
    schema = message_schema("item")
    good = {"v": 1, "t": "item", "d": {"id": "a", "text": "x", "colour": "red"}}
    validator.validate(good, schema)
    with pytest.raises(validator.ValidationError):
        validator.validate({**good, "v": 2}, schema)
    with pytest.raises(validator.ValidationError):
        validator.validate({**good, "t": "label"}, schema)


def test_vectors_are_number_arrays_in_the_schema() -> None:
    """The schema is of the JSON format: a vector is an array of numbers, not bytes."""
    item = message_schema("item")["$defs"]["Item"]["properties"]["vector"]
    assert {"type": "array", "items": {"type": "number"}} in item["anyOf"]


def test_stale_files_are_found_and_rewritten(tmp_path: Path) -> None:
    """A changed, missing or extra file is stale; writing fixes all three."""
    write_schemas(tmp_path)
    assert stale(tmp_path) == []
    (tmp_path / "item.json").write_text("{}")
    (tmp_path / "label.json").unlink()
    (tmp_path / "old_record.json").write_text("{}")
    assert stale(tmp_path) == ["item.json", "label.json", "old_record.json"]
    assert main(["--check", str(tmp_path)]) == 1
    assert main([str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0
    assert not (tmp_path / "old_record.json").exists()
