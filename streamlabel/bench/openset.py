"""The open-set (open intent detection) benchmark, scored as ADB / DA-ADB papers do.

Protocol (per seed): pick ``known_ratio`` of the classes as known and teach the
Engine EVERY training item of those classes as feedback; stream the test items
once; an item's label is its first label. Test items of the other classes are
"open": the right answer for them is ``unknown``. Discovery is off, so the
figures measure the classifier and its open-set thresholds alone.

Metrics (percentages): accuracy over all test items (every open item counts as
one class, ``open``), macro-F1 over the known classes plus ``open``, the
open class's F1, and the macro-F1 of the known classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from streamlabel.bench.openworld import choose_known
from streamlabel.core.embedder import Embedder
from streamlabel.datasets import LabelledTexts
from streamlabel.pipeline import Engine, EngineSettings
from streamlabel.schemas import UNKNOWN, Feedback, Item

OPEN = "<open>"
METRIC_KEYS = ("acc", "f1", "open_f1", "known_f1")


def known_classes(labels: Sequence[str], known_ratio: float, seed: int) -> list[str]:
    """The classes a seed treats as known (sorted): the same as ``bench openworld``'s."""
    return choose_known(labels, known_ratio, np.random.default_rng(seed))


def open_set_scores(
    y_true: Sequence[str], y_pred: Sequence[str], known: set[str]
) -> dict[str, float]:
    """Accuracy, macro-F1, open-class F1 and known-class macro-F1 (percentages).

    ``y_pred`` holds class ids or ``unknown``; true labels outside ``known`` and
    predictions of ``unknown`` (or of any class not in ``known``) are "open".

    Example:
        >>> s = open_set_scores(["a", "b", "x"], ["a", "unknown", "unknown"], {"a", "b"})
        >>> s["acc"], s["open_f1"]
        (66.67, 66.67)
    """
    t = np.array([y if y in known else OPEN for y in y_true], dtype=object)
    p = np.array([y if y in known and y != UNKNOWN else OPEN for y in y_pred], dtype=object)
    classes = [*sorted(known), OPEN]
    per_class = f1_score(t, p, labels=classes, average=None, zero_division=0)
    return {
        "acc": round(100.0 * float((t == p).mean()), 2),
        "f1": round(100.0 * float(np.mean(per_class)), 2),
        "open_f1": round(100.0 * float(per_class[-1]), 2),
        "known_f1": round(100.0 * float(np.mean(per_class[:-1])), 2),
    }


def run_openset_seed(
    train: LabelledTexts,
    test: LabelledTexts,
    train_vectors: np.ndarray,
    test_vectors: np.ndarray,
    *,
    settings: EngineSettings,
    embedder: Embedder,
    seed: int,
    known_ratio: float,
    batch_size: int = 64,
) -> dict[str, float]:
    """Runs the open-set protocol for one seed; returns its scores and counts."""
    known = known_classes(train.labels, known_ratio, seed)
    update: dict[str, Any] = {
        "seed": seed,
        "discovery": settings.discovery.model_copy(update={"enabled": False}),
        "drift": settings.drift.model_copy(update={"enabled": False}),
    }
    engine = Engine(settings.model_copy(update=update), embedder)
    keep = set(known)
    feedback = [
        Feedback(text=train.texts[i], vector=train_vectors[i], label=y, source="bench")
        for i, y in enumerate(train.labels)
        if y in keep
    ]
    for lo in range(0, len(feedback), 512):
        engine.learn(feedback[lo : lo + 512])
    order = np.random.default_rng(seed + 1).permutation(len(test))
    predicted: dict[int, str] = {}
    for lo in range(0, len(order), batch_size):
        rows = [int(i) for i in order[lo : lo + batch_size]]
        items = [Item(id=f"test-{i}", text=test.texts[i], vector=test_vectors[i]) for i in rows]
        for row, record in zip(rows, engine.process(items).labels, strict=True):
            predicted[row] = record.label
    y_pred = [predicted.get(i, UNKNOWN) for i in range(len(test))]
    scores = open_set_scores(test.labels, y_pred, keep)
    return {
        "seed": seed,
        **scores,
        "known_classes": len(known),
        "open_items": sum(y not in keep for y in test.labels),
    }


def summarize_openset(results: list[dict[str, float]]) -> dict[str, Any]:
    """Means over seeds plus the per-seed rows (the JSON of ``bench openset --json``)."""
    return {
        **{k: round(float(np.mean([r[k] for r in results])), 2) for k in METRIC_KEYS},
        "seeds": results,
    }


def format_openset(results: list[dict[str, float]], summary: dict[str, Any]) -> str:
    """One row per seed and the mean: accuracy, macro-F1, open F1, known F1."""
    head = f"{'seed':>6} {'ACC':>6} {'F1':>6} {'open':>6} {'known':>6}"
    rule = "-" * len(head)
    lines = [head, f"{'':>6} {'(F1: macro over known + open; open / known F1)':<30}", rule]
    for r in results:
        lines.append(f"{r['seed']:>6} " + " ".join(f"{r[k]:6.2f}" for k in METRIC_KEYS))
    lines.append(rule)
    lines.append(f"{'mean':>6} " + " ".join(f"{summary[k]:6.2f}" for k in METRIC_KEYS))
    return "\n".join(lines)
