"""Data files: labelled text datasets, the item files ``streamlabel produce`` sends,
and the demo stream built from a dataset.

Shared by the benches, the demo, the chaos suite and the CLI: :func:`read_tsv`
reads a labelled split (``text<TAB>label``, standard quoted TSV as ``csv`` and
pandas write it); :func:`read_items` reads the items to produce from a TSV, a
JSON Lines or a plain text file, labels optional, and :func:`to_records` turns
them into items and feedback; :func:`plan_demo` turns a dataset into a stream
with held-back classes that arrive late (the demo's and the chaos suite's
stream).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from streamlabel.errors import SettingsError, StreamlabelError
from streamlabel.schemas import Feedback, Item
from streamlabel.schemas.vectors import coerce_vector

__all__ = [
    "FORMATS",
    "DemoPlan",
    "FileFormat",
    "ItemRow",
    "JsonFields",
    "LabelledTexts",
    "infer_format",
    "plan_demo",
    "read_items",
    "read_tsv",
    "to_records",
]

FileFormat = Literal["tsv", "jsonl", "text"]
"""An item file's format: quoted TSV, JSON Lines, or plain text (one item a line)."""

FORMATS: tuple[FileFormat, ...] = ("tsv", "jsonl", "text")
_SUFFIXES: dict[str, FileFormat] = {
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".txt": "text",
}
_QUOTING_HINT = "a quoted field ends with a quote and doubles the quotes inside it"


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with their labels, in file order."""

    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def read_tsv(path: str | Path) -> LabelledTexts:
    """Reads a TSV with a ``text<TAB>label`` header (standard quoting: a quoted field
    may hold tabs, newlines and doubled quotes).

    Raises:
        StreamlabelError: missing file, wrong header, or a malformed row (with its line number).
    """
    path = _existing(path)
    texts: list[str] = []
    labels: list[str] = []
    for line, row in _tsv_rows(path, label_required=True):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise StreamlabelError(f"{path}:{line}: expected 'text<TAB>label'")
        texts.append(row[0])
        labels.append(row[1].strip())
    if not texts:
        raise StreamlabelError(f"{path}: no rows")
    return LabelledTexts(texts, labels)


@dataclass(frozen=True)
class ItemRow:
    """One item read from a file: an id, a text and/or a vector, maybe a label."""

    id: str
    line: int  # where the item starts in its file, for error messages
    text: str | None = None
    vector: tuple[float, ...] | None = None
    label: str | None = None


@dataclass(frozen=True)
class JsonFields:
    """Which keys of a JSON Lines object hold the item's id, text, label and vector."""

    id: str = "id"
    text: str = "text"
    label: str = "label"
    vector: str = "vector"


def infer_format(path: str | Path) -> FileFormat:
    """The format a file's suffix names (``.tsv``, ``.jsonl``/``.json``, ``.txt``).

    >>> infer_format("items.jsonl"), infer_format("rows.TSV"), infer_format("lines.txt")
    ('jsonl', 'tsv', 'text')

    Raises:
        StreamlabelError: the suffix names none of them.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise StreamlabelError(
            f"{path}: cannot tell the format from the suffix {suffix!r}: "
            f"name it ({', '.join(FORMATS)})"
        )
    return _SUFFIXES[suffix]


def read_items(
    path: str | Path, *, format: FileFormat | None = None, fields: JsonFields = JsonFields()
) -> list[ItemRow]:
    """Reads the items of a file, in file order; labels are optional.

    * ``tsv``: a ``text`` or ``text<TAB>label`` header (standard quoting); ids
      ``STEM-I`` with ``I`` the row's index from 0; an empty label is no label.
    * ``jsonl``: one object a line with a text or a vector (keys from ``fields``);
      a missing id is ``STEM-LINE``.
    * ``text``: one item a line, ids ``STEM-LINE``; blank lines are skipped.

    ``STEM`` is the file name without its suffix; ``format`` defaults to the
    suffix's (:func:`infer_format`).

    Raises:
        StreamlabelError: missing file, no items, or a malformed line (named).
    """
    path = _existing(path)
    fmt = format or infer_format(path)
    if fmt == "tsv":
        rows = list(_tsv_items(path))
    elif fmt == "jsonl":
        rows = [_json_item(path, line, raw, fields) for line, raw in _lines(path)]
    elif fmt == "text":
        rows = [
            ItemRow(id=f"{path.stem}-{line}", line=line, text=raw) for line, raw in _lines(path)
        ]
    else:
        raise StreamlabelError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    if not rows:
        raise StreamlabelError(f"{path}: no items")
    return rows


def to_records(
    path: str | Path, rows: Sequence[ItemRow], *, feedback_fraction: float = 0.0, seed: int = 0
) -> tuple[list[Item], list[Feedback]]:
    """The items and feedback ``streamlabel produce`` sends for ``rows``, in order.

    A labelled row is a feedback example (its text, vector and label) with
    probability ``feedback_fraction``, drawn once per row from ``seed``; every
    other row is an item.

    Raises:
        StreamlabelError: a row is not a valid record (naming ``path`` and its line).
    """
    rng = np.random.default_rng(seed)
    items: list[Item] = []
    feedback: list[Feedback] = []
    for row in rows:
        as_feedback = rng.random() < feedback_fraction
        try:
            if as_feedback and row.label is not None:
                feedback.append(
                    Feedback(text=row.text, vector=row.vector, label=row.label, source="produce")
                )
            else:
                items.append(Item(id=row.id, text=row.text, vector=row.vector))
        except ValidationError as exc:
            raise StreamlabelError(f"{path}:{row.line}: {exc.errors()[0]['msg']}") from None
    return items, feedback


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise StreamlabelError(f"{path}: no such file")
    return path


def _tsv_rows(path: Path, *, label_required: bool) -> Iterator[tuple[int, list[str]]]:
    """The rows after the header, each with the line it starts on (blank rows skipped)."""
    wanted = "text<TAB>label" if label_required else "text or text<TAB>label"
    start = 1
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, dialect="excel-tab", strict=True)
            header = next(reader, None)
            names = [h.strip() for h in header[:2]] if header else []
            if names != ["text", "label"] and (label_required or names != ["text"]):
                raise StreamlabelError(f"{path}: the first line must be the header '{wanted}'")
            start = reader.line_num + 1
            for row in reader:
                if row:
                    yield start, row
                start = reader.line_num + 1
    except csv.Error as exc:
        raise StreamlabelError(f"{path}:{start}: {exc} ({_QUOTING_HINT})") from None
    except UnicodeDecodeError:
        raise StreamlabelError(f"{path}: not UTF-8 text") from None


def _tsv_items(path: Path) -> Iterator[ItemRow]:
    for i, (line, row) in enumerate(_tsv_rows(path, label_required=False)):
        if not row[0].strip():
            raise StreamlabelError(f"{path}:{line}: expected 'text' or 'text<TAB>label'")
        label = row[1].strip() if len(row) > 1 else ""
        yield ItemRow(id=f"{path.stem}-{i}", line=line, text=row[0], label=label or None)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """The non-blank lines, numbered from 1, without their line ends."""
    try:
        with path.open(encoding="utf-8") as fh:
            for line, raw in enumerate(fh, start=1):
                if raw.strip():
                    yield line, raw.rstrip("\r\n")
    except UnicodeDecodeError:
        raise StreamlabelError(f"{path}: not UTF-8 text") from None


def _json_item(path: Path, line: int, raw: str, fields: JsonFields) -> ItemRow:
    where = f"{path}:{line}"
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StreamlabelError(
            f"{where}: not JSON ({exc.msg}); expected one object a line"
        ) from None
    if not isinstance(obj, Mapping):
        raise StreamlabelError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    text = _optional_str(obj, fields.text, where)
    vector = None
    if obj.get(fields.vector) is not None:
        try:
            vector = coerce_vector(obj[fields.vector])
        except ValueError as exc:
            raise StreamlabelError(f"{where}: {fields.vector!r}: {exc}") from None
    if text is None and vector is None:
        raise StreamlabelError(f"{where}: no {fields.text!r} or {fields.vector!r}")
    label = _optional_str(obj, fields.label, where)
    return ItemRow(
        id=_json_id(obj.get(fields.id), fields.id, where) or f"{path.stem}-{line}",
        line=line,
        text=text,
        vector=vector,
        label=label.strip() if label else None,
    )


def _json_id(value: Any, key: str, where: str) -> str | None:
    """A string or integer id as a string; None when missing or null."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    raise StreamlabelError(f"{where}: {key!r} must be a non-empty string or an integer")


def _optional_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    """``obj[key]`` when it is a non-blank string; None when missing, null or blank."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise StreamlabelError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    return value if value.strip() else None


@dataclass(frozen=True)
class DemoPlan:
    """What the demo streams."""

    known: list[str]
    held_back: list[str]
    feedback: list[Feedback]
    items: list[Item]
    truth: dict[str, str]
    shift_at: int
    confirm: list[Feedback]


def plan_demo(
    train: LabelledTexts,
    test: LabelledTexts,
    *,
    n_items: int,
    seed: int = 0,
    known_ratio: float = 0.75,
    labeled_ratio: float = 0.1,
    shift_fraction: float = 0.4,
) -> DemoPlan:
    """Builds the demo's feedback and stream from a dataset (seeded)."""
    rng = np.random.default_rng(seed)
    classes = sorted(set(train.labels))
    if len(classes) < 2:
        raise SettingsError("the demo dataset needs at least two classes")
    n_known = max(1, min(len(classes) - 1, round(len(classes) * known_ratio)))
    known = sorted(str(c) for c in rng.choice(classes, n_known, replace=False))
    held = [c for c in classes if c not in known]
    y = np.asarray(train.labels, dtype=object)
    feedback = []
    for c in known:
        idx = np.flatnonzero(y == c)
        for i in rng.choice(idx, max(1, round(len(idx) * labeled_ratio)), replace=False):
            feedback.append(Feedback(text=train.texts[i], label=c, source="demo"))
    ty = np.asarray(test.labels, dtype=object)
    known_idx = rng.permutation(np.flatnonzero(np.isin(ty, known)))
    novel_idx = rng.permutation(np.flatnonzero(~np.isin(ty, known)))
    shift_at = int(n_items * shift_fraction)
    before = list(known_idx[:shift_at])
    rest_known = list(known_idx[shift_at:])
    after: list[int] = []
    n_after = n_items - shift_at
    n_novel = min(len(novel_idx), n_after // 2)  # after the shift, half the stream is new
    after = list(novel_idx[:n_novel]) + rest_known[: n_after - n_novel]
    after = [after[i] for i in rng.permutation(len(after))]
    order = before + after
    items = [Item(id=f"demo-{i}", text=test.texts[i]) for i in order]
    truth = {f"demo-{i}": test.labels[i] for i in order}
    # confirmed by a person once labelled: drawn from the first quarter of the stream,
    # sent when half of the pre-shift part is labelled
    confirm_idx = [i for i in before[: len(before) // 4] if rng.random() < 0.08]
    confirm = [
        Feedback(item_id=f"demo-{i}", label=test.labels[i], source="demo") for i in confirm_idx
    ]
    return DemoPlan(known, held, feedback, items, truth, len(before), confirm)
