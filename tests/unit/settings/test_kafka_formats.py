"""``kafka.format.<topic>`` and ``kafka.items_mapping.*``: read from every source, checked
at start-up naming the setting.

* every topic with records has a format, msgpack by default; ``kafka.format = "json"``
  sets all of them; the dlq has none (it carries the failed message's own bytes);
* the items mapping reads a TOML table; a field mapped twice or named empty fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamlabel.cli.reference import settings_docs
from streamlabel.errors import SettingsError
from streamlabel.kafka.topics import TOPIC_KINDS
from streamlabel.schemas.mapping import DEFAULT_MAPPING, ItemMapping
from streamlabel.settings.kafka import FORMATTED_TOPICS, KafkaSettings, TopicFormats
from streamlabel.settings.runtime import load_runtime_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STREAMLABEL_* variable from the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)


def test_every_topic_but_the_dlq_has_a_format_msgpack_by_default() -> None:
    assert set(FORMATTED_TOPICS) == set(TOPIC_KINDS) - {"dlq"}
    formats = load_runtime_settings().kafka.format
    assert {kind: formats.of(kind) for kind in FORMATTED_TOPICS} == dict.fromkeys(
        FORMATTED_TOPICS, "msgpack"
    )


@pytest.mark.parametrize("kind", FORMATTED_TOPICS)
def test_each_topics_format_is_set_on_its_own(kind: str) -> None:
    formats = load_runtime_settings(kafka={"format": {kind: "json"}}).kafka.format
    assert [k for k in FORMATTED_TOPICS if formats.of(k) == "json"] == [kind]


@pytest.mark.parametrize("kind", FORMATTED_TOPICS)
def test_an_unknown_format_fails_at_load_naming_the_topics_setting(kind: str) -> None:
    with pytest.raises(SettingsError, match=rf"kafka\.format\.{kind}: Input should be"):
        load_runtime_settings(kafka={"format": {kind: "avro"}})


def test_one_format_for_every_topic_at_once() -> None:
    formats = load_runtime_settings(kafka={"format": "json"}).kafka.format
    assert {formats.of(k) for k in FORMATTED_TOPICS} == {"json"}
    with pytest.raises(SettingsError, match=r"kafka\.format: .*'avro' is not a wire format"):
        load_runtime_settings(kafka={"format": "avro"})


def test_the_dlq_has_no_format_and_says_why() -> None:
    with pytest.raises(SettingsError, match=r"kafka\.format\.dlq is not a setting.*own bytes"):
        load_runtime_settings(kafka={"format": {"dlq": "json"}})
    with pytest.raises(ValueError, match="no wire format"):
        TopicFormats().of("dlq")


def test_a_misspelt_topic_fails_naming_it() -> None:
    with pytest.raises(SettingsError, match=r"kafka\.format\.label: Extra inputs"):
        load_runtime_settings(kafka={"format": {"label": "json"}})


def test_formats_and_the_mapping_are_read_from_a_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "streamlabel.toml"
    config.write_text(
        "[kafka]\n"
        'topic_prefix = "t."\n'
        'format.items = "json"\n'
        'format.labels = "json"\n'
        "\n"
        "[kafka.items_mapping]\n"
        'id_field = "ticket_id"\n'
        'text_field = "body"\n'
        'vector_field = ""\n'
        'metadata_fields = ["customer", "queue"]\n'
    )
    kafka = load_runtime_settings(config).kafka
    assert (kafka.format.items, kafka.format.labels, kafka.format.classes) == (
        "json", "json", "msgpack",
    )  # fmt: skip
    assert kafka.items_mapping.to_mapping() == ItemMapping(
        id_field="ticket_id", text_field="body", vector_field=None,
        metadata_fields=("customer", "queue"),
    )  # fmt: skip


def test_formats_and_the_mapping_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = {d.name: d.env for d in settings_docs()}
    monkeypatch.setenv(docs["kafka.format.command_results"], "json")
    monkeypatch.setenv(docs["kafka.items_mapping.text_field"], "body")
    monkeypatch.setenv(docs["kafka.items_mapping.metadata_fields"], '["customer"]')
    kafka = load_runtime_settings().kafka
    assert docs["kafka.format.command_results"] == "STREAMLABEL_KAFKA__FORMAT__COMMAND_RESULTS"
    assert kafka.format.command_results == "json"
    assert kafka.items_mapping.text_field == "body"
    assert kafka.items_mapping.metadata_fields == ("customer",)


def test_the_default_mapping_is_the_codecs() -> None:
    assert KafkaSettings().items_mapping.to_mapping() == DEFAULT_MAPPING


@pytest.mark.parametrize(
    ("mapping", "named"),
    [
        ({"id_field": "text"}, r"kafka\.items_mapping: .*'text' is mapped twice"),
        ({"metadata_fields": ["vector"]}, r"kafka\.items_mapping: .*'vector' is mapped twice"),
        ({"id_field": ""}, r"kafka\.items_mapping\.id_field: String should have at least"),
        ({"text_field": ""}, r"kafka\.items_mapping\.text_field"),
        ({"metadata_fields": [""]}, r"kafka\.items_mapping: .*empty"),
        ({"id": "ticket_id"}, r"kafka\.items_mapping\.id: Extra inputs"),
    ],
)
def test_an_invalid_mapping_fails_at_load_naming_the_setting(
    mapping: dict[str, object], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        load_runtime_settings(kafka={"items_mapping": mapping})


def test_the_reference_lists_every_format_and_mapping_setting_with_a_description() -> None:
    docs = {d.name: d for d in settings_docs()}
    for kind in FORMATTED_TOPICS:
        doc = docs[f"kafka.format.{kind}"]
        assert doc.default == '"msgpack"'
        assert "msgpack or json" in doc.description
    assert "kafka.format.dlq" not in docs
    for field in ("id_field", "text_field", "vector_field", "metadata_fields"):
        assert docs[f"kafka.items_mapping.{field}"].description
    assert docs["kafka.items_mapping.metadata_fields"].default == "[]"
