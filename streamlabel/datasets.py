"""Labelled text datasets (``text<TAB>label`` TSV files) and the streams built from them.

Shared by the benches, the demo, the chaos suite and the CLI: :func:`read_tsv`
reads a split; :func:`plan_demo` turns a dataset into a stream with held-back
classes that arrive late (the demo's and the chaos suite's stream).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamlabel.errors import SettingsError, StreamlabelError
from streamlabel.schemas import Feedback, Item

__all__ = ["DemoPlan", "LabelledTexts", "plan_demo", "read_tsv"]


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
