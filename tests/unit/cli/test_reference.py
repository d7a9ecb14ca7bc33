"""The generated reference pages: every setting documented, every command listed."""

from __future__ import annotations

import argparse

from streamlabel.cli import build_parser
from streamlabel.cli.reference import cli_markdown, settings_docs, settings_markdown
from streamlabel.settings.runtime import load_runtime_settings


def test_every_setting_has_a_description() -> None:
    undocumented = [d.name for d in settings_docs() if not d.description.strip()]
    assert undocumented == []


def test_the_settings_page_lists_every_setting_with_its_env_name_and_default() -> None:
    page = settings_markdown()
    docs = settings_docs()
    assert len(docs) > 100
    for doc in docs:
        assert f"`{doc.name}`<br>`{doc.env}`" in page
    by_name = {d.name: d for d in docs}
    s = load_runtime_settings()
    assert by_name["store.threshold_quantile"].default == str(s.store.threshold_quantile)
    assert by_name["kafka.sasl_password"].default == "null"
    assert by_name["discovery.selection"].default == f'"{s.discovery.selection}"'


def test_an_env_name_from_the_reference_sets_that_setting(monkeypatch) -> None:
    doc = {d.name: d for d in settings_docs()}["discovery.min_cluster_size"]
    monkeypatch.setenv(doc.env, "17")
    assert load_runtime_settings().discovery.min_cluster_size == 17


def _leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> list[str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [" ".join(path)]
    return [c for a in subs for n, p in a.choices.items() for c in _leaf_commands(p, (*path, n))]


def test_the_command_page_shows_every_command_and_its_usage() -> None:
    page = cli_markdown()
    commands = _leaf_commands(build_parser(), ("streamlabel",))
    assert "streamlabel bench openset" in commands
    for command in commands:
        assert f"## `{command}`" in page
    assert "usage: streamlabel bench openset" in page
