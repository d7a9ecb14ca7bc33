"""Generated reference pages: every setting and every command (``make docs``).

The settings page walks :class:`~streamlabel.settings.runtime.RuntimeSettings`
(the one model every entry point validates), so a setting cannot exist
without appearing there; the command page prints each ``streamlabel``
subcommand's ``--help``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from streamlabel.settings.runtime import RuntimeSettings

__all__ = ["SettingDoc", "cli_markdown", "settings_docs", "settings_markdown"]

ENV_PREFIX = "STREAMLABEL_"


@dataclass(frozen=True)
class SettingDoc:
    """One leaf setting: its dotted name, environment variable, type, default and meaning."""

    name: str
    env: str
    type: str
    default: str
    description: str


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    return text.replace("typing.", "").replace("NoneType", "None")


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, SecretStr):
        return "(secret)"
    return json.dumps(value)


def settings_docs(model: type[BaseModel] = RuntimeSettings, prefix: str = "") -> list[SettingDoc]:
    """Every leaf setting of ``model``, sections first-to-last as declared.

    Example:
        >>> docs = {d.name: d for d in settings_docs()}
        >>> docs["store.threshold_quantile"].env
        'STREAMLABEL_STORE__THRESHOLD_QUANTILE'
    """
    out: list[SettingDoc] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(settings_docs(ann, f"{prefix}{name}."))
            continue
        dotted = f"{prefix}{name}"
        out.append(
            SettingDoc(
                name=dotted,
                env=ENV_PREFIX + dotted.replace(".", "__").upper(),
                type=_type_name(ann),
                default=_default(field),
                description=field.description or "",
            )
        )
    return out


def settings_markdown() -> str:
    """The settings reference page."""
    lines = [
        "# Settings reference",
        "",
        "Generated from the settings model at build time. Every setting is read, highest",
        "priority first, from explicit overrides, the environment variable named here and a",
        "settings file (TOML or JSON, `streamlabel run --config FILE`), whose tables are the",
        "sections below (`[store]`, `[kafka]`, ...). An invalid value fails start-up naming",
        "the setting.",
    ]
    section = None
    for doc in settings_docs():
        head = doc.name.split(".")[0] if "." in doc.name else "general"
        if head != section:
            section = head
            lines += ["", f"## {section}", "", "| setting | default | meaning |", "|---|---|---|"]
        desc, kind = (text.replace("|", "\\|") for text in (doc.description, doc.type))
        lines.append(f"| `{doc.name}`<br>`{doc.env}`<br>*{kind}* | `{doc.default}` | {desc} |")
    lines += [
        "",
        "## Renamed settings",
        "",
        "Still read under the old name (key, table or environment variable) until the next",
        "release, with a warning; a new name given too wins.",
        "",
        "| old name | new name |",
        "|---|---|",
    ]
    lines += [f"| `{old}` | `{new}` |" for old, new in RuntimeSettings.renamed.items()]
    return "\n".join(lines) + "\n"


def _subcommands(parser: argparse.ArgumentParser, path: list[str]) -> list[tuple[str, str]]:
    found = [(" ".join(path), parser.format_help())]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(_subcommands(sub, [*path, name]))
    return found


def cli_markdown() -> str:
    """The command reference page: every subcommand's ``--help``."""
    from streamlabel.cli import build_parser

    lines = ["# Command reference", "", "Generated from the command line parser at build time."]
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: pin it
    try:
        pages = _subcommands(build_parser(), ["streamlabel"])
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    for path, text in pages:
        lines += ["", f"## `{path}`", "", "```text", text.rstrip(), "```"]
    return "\n".join(lines) + "\n"
