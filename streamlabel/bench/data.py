"""Labelled text datasets as ``text<TAB>label`` TSV files."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from streamlabel.errors import StreamlabelError


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with their labels, in file order."""

    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def read_tsv(path: str | Path) -> LabelledTexts:
    """Reads a TSV with a ``text<TAB>label`` header.

    Raises:
        StreamlabelError: missing file, wrong header, or a malformed row (with its line number).
    """
    path = Path(path)
    if not path.is_file():
        raise StreamlabelError(f"{path}: no such file")
    texts: list[str] = []
    labels: list[str] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["text", "label"]:
            raise StreamlabelError(f"{path}: the first line must be the header 'text<TAB>label'")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise StreamlabelError(f"{path}:{line}: expected 'text<TAB>label'")
            texts.append(row[0])
            labels.append(row[1].strip())
    if not texts:
        raise StreamlabelError(f"{path}: no rows")
    return LabelledTexts(texts, labels)
