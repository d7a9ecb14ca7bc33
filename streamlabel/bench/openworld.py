"""The open-world benchmark: class-incremental + open-set + discovery, scored like NCD papers.

Protocol (per seed): pick ``known_ratio`` of the classes as known; feed
``labeled_ratio`` of their training items as feedback; stream the rest of the
training items (all of the unknown classes' included), then the test items,
through the Engine in batches; let background discovery run twice more once the
stream ends; score the FINAL label (latest revision) of every test item, and the
first-emitted label too. The Engine is never told how many classes exist.

Texts are embedded once per run (the same texts recur in every seed) and the
items then carry their vectors; ``items_per_s`` charges each item its share of
that embedding time plus the Engine's own time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamlabel.core.discovery import DiscoveryReport
from streamlabel.core.embedder import Embedder
from streamlabel.datasets import LabelledTexts
from streamlabel.pipeline import Engine, EngineSettings
from streamlabel.schemas import UNKNOWN, Feedback, Item, LabelRecord
from streamlabel.scoring import open_world_scores

METRIC_KEYS = ("acc", "nmi", "ari", "known_acc", "novel_acc")


@dataclass(frozen=True)
class SeedResult:
    """Scores of one seed (percentages) and counts."""

    seed: int
    final: dict[str, float]
    first: dict[str, float]
    novel_found: int
    novel_true: int
    items: int
    seconds: float
    discovered: list[tuple[str, str, int]] = field(default_factory=list)
    diagnostics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Split:
    """Which classes are known and which training items are labelled."""

    known: list[str]
    labelled: np.ndarray
    stream: np.ndarray


def choose_known(labels: Sequence[str], known_ratio: float, rng: np.random.Generator) -> list[str]:
    """The ``known_ratio`` of the classes a protocol treats as known (sorted).

    Both benchmarks choose with the seed's generator first, so a seed holds the
    same classes back in ``bench openworld`` and ``bench openset``.
    """
    classes = sorted(set(labels))
    n_known = max(1, min(len(classes), round(len(classes) * known_ratio)))
    return sorted(
        str(c) for c in rng.choice(np.asarray(classes, dtype=object), n_known, replace=False)
    )


def split_protocol(
    labels: list[str], *, known_ratio: float, labeled_ratio: float, seed: int
) -> Split:
    """Chooses known classes, the labelled training items, and the stream order."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels, dtype=object)
    known = choose_known(labels, known_ratio, rng)
    labelled = np.zeros(len(y), bool)
    for c in known:
        idx = np.flatnonzero(y == c)
        k = max(1, round(len(idx) * labeled_ratio))
        labelled[rng.choice(idx, k, replace=False)] = True
    stream = rng.permutation(np.flatnonzero(~labelled))
    return Split(known, np.flatnonzero(labelled), stream)


def protocol_feedback(
    train: LabelledTexts, train_vectors: np.ndarray, split: Split
) -> list[Feedback]:
    """The labelled training items, as feedback carrying their vectors."""
    return [
        Feedback(
            item_id=f"train-{i}",
            text=train.texts[i],
            vector=train_vectors[i],
            label=train.labels[i],
            source="bench",
        )
        for i in split.labelled
    ]


def stream_order(split: Split, n_test: int, seed: int) -> list[tuple[str, int]]:
    """The stream: the unlabelled training items, then the test items shuffled."""
    rng = np.random.default_rng(seed + 1)
    return [("train", int(i)) for i in split.stream] + [
        ("test", int(i)) for i in rng.permutation(n_test)
    ]


def run_seed(
    train: LabelledTexts,
    test: LabelledTexts,
    train_vectors: np.ndarray,
    test_vectors: np.ndarray,
    *,
    settings: EngineSettings,
    embedder: Embedder,
    seed: int,
    known_ratio: float,
    labeled_ratio: float,
    batch_size: int = 64,
    progress: Callable[[str], None] | None = None,
) -> SeedResult:
    """Runs the protocol for one seed and scores it."""
    split = split_protocol(
        train.labels, known_ratio=known_ratio, labeled_ratio=labeled_ratio, seed=seed
    )
    engine = Engine(settings.model_copy(update={"seed": seed}), embedder)
    started = time.perf_counter()
    feedback = protocol_feedback(train, train_vectors, split)
    for lo in range(0, len(feedback), 512):
        engine.learn(feedback[lo : lo + 512])
    order = stream_order(split, len(test), seed)
    first: dict[str, LabelRecord] = {}
    final: dict[str, LabelRecord] = {}
    reports: list[DiscoveryReport] = []

    def collect(records: list[LabelRecord]) -> None:
        for r in records:
            first.setdefault(r.item_id, r)
            if r.supersedes(final.get(r.item_id)):
                final[r.item_id] = r

    for lo in range(0, len(order), batch_size):
        batch = []
        for part, i in order[lo : lo + batch_size]:
            data, vecs = (train, train_vectors) if part == "train" else (test, test_vectors)
            batch.append(Item(id=f"{part}-{i}", text=data.texts[i], vector=vecs[i]))
        out = engine.process(batch)
        collect(out.labels)
        reports.extend(out.discoveries)
        if progress and (lo // batch_size) % 50 == 0:
            n_classes = len(engine.store.active_ids())
            progress(f"seed {seed}: {lo + len(batch)}/{len(order)} items, {n_classes} classes")
    for _ in range(2):  # background discovery keeps running after the stream ends
        out = engine.discover()
        collect(out.labels)
        reports.extend(out.discoveries)
    seconds = time.perf_counter() - started
    ids = [f"test-{i}" for i in range(len(test))]
    known = set(split.known)
    discovered = [
        (cid, s.name, s.count)
        for cid, s in engine.store.states().items()
        if s.origin == "discovery" and s.status != "retired"
    ]
    final_labels = [_label(final, i) for i in ids]
    return SeedResult(
        seed=seed,
        # A dead-lettered test item (e.g. a text over limits.max_text_chars) has no
        # label: it counts as unknown.
        final=open_world_scores(test.labels, [_label(final, i) for i in ids], known),
        first=open_world_scores(test.labels, [_label(first, i) for i in ids], known),
        novel_found=len(discovered),
        novel_true=len(set(train.labels) - known),
        items=len(order),
        seconds=seconds,
        discovered=discovered,
        diagnostics=diagnose(test.labels, final_labels, known, reports),
    )


def diagnose(
    y_true: list[str],
    y_pred: list[str],
    known: set[str],
    reports: list[DiscoveryReport] | None,
) -> dict[str, float]:
    """Where the score goes: items left unknown, novel items absorbed, what discovery did.

    Shares are percentages of test items: ``unknown`` of all, ``unknown_known`` of
    the known classes' items, ``unknown_novel`` of the novel classes' items;
    ``absorbed`` is the share of novel items a known class took. Discovery counts
    sum over the runs (``proposed`` by the clustering, ``clusters`` after merging,
    ``accepted``, ``rejected_<reason>``); ``reports=None`` (runs made elsewhere,
    e.g. in the learner actor) leaves them out.

    Example:
        >>> d = diagnose(["a", "n", "n"], ["a", "unknown", "a"], {"a"}, [])
        >>> d["unknown"], d["absorbed"]
        (33.33, 50.0)
    """
    yt = np.asarray(y_true, dtype=object)
    yp = np.asarray(y_pred, dtype=object)
    is_known = np.array([y in known for y in yt], bool)
    unknown = yp == UNKNOWN

    def pct(mask: np.ndarray, within: np.ndarray) -> float:
        return round(100.0 * float(mask[within].mean()), 2) if within.any() else 0.0

    everything = np.ones(len(yt), bool)
    diag: dict[str, float] = {
        "unknown": pct(unknown, everything),
        "unknown_known": pct(unknown, is_known),
        "unknown_novel": pct(unknown, ~is_known),
        "absorbed": pct(np.array([p in known for p in yp], bool), ~is_known),
    }
    if reports is None:
        return diag
    diag |= {
        "runs": len(reports),
        "proposed": sum(r.proposed for r in reports),
        "clusters": sum(r.clusters for r in reports),
        "accepted": sum(len(r.findings) for r in reports),
        "accepted_new": sum(sum(not f.extends for f in r.findings) for r in reports),
    }
    for r in reports:
        for reason, n in r.rejected.items():
            diag[f"rejected_{reason}"] = diag.get(f"rejected_{reason}", 0) + n
    return diag


def _label(records: dict[str, LabelRecord], item_id: str) -> str:
    record = records.get(item_id)
    return UNKNOWN if record is None else record.label


def summarize(results: list[SeedResult], embed_seconds_per_item: float) -> dict[str, Any]:
    """Means over seeds, in the JSON shape of ``bench openworld --json``.

    Final-label metrics keep their plain names (``acc``...), first-emitted ones are
    ``first_<metric>``; ``unknown`` and ``absorbed`` are the shares of
    :func:`diagnose`; ``seeds`` holds the same figures per seed.
    """

    def mean(values: list[float]) -> float:
        return round(float(np.mean(values)), 2)

    items = float(np.mean([r.items for r in results]))
    per_item = float(np.mean([r.seconds / r.items for r in results])) + embed_seconds_per_item
    return {
        **{k: mean([r.final[k] for r in results]) for k in METRIC_KEYS},
        **{f"first_{k}": mean([r.first[k] for r in results]) for k in METRIC_KEYS},
        "novel_found": mean([r.novel_found for r in results]),
        "novel_true": mean([r.novel_true for r in results]),
        "unknown": mean([r.diagnostics.get("unknown", 0.0) for r in results]),
        "absorbed": mean([r.diagnostics.get("absorbed", 0.0) for r in results]),
        "items": int(items),
        "items_per_s": round(1.0 / per_item, 1),
        "seeds": [
            {
                "seed": r.seed,
                **{k: round(r.final[k], 2) for k in METRIC_KEYS},
                **{f"first_{k}": round(r.first[k], 2) for k in METRIC_KEYS},
                "novel_found": r.novel_found,
                "novel_true": r.novel_true,
                **r.diagnostics,
            }
            for r in results
        ],
    }


def format_table(results: list[SeedResult], summary: dict[str, float]) -> str:
    """A readable table: one row per seed plus the mean, final and first-emitted labels."""
    metrics = ("acc", "nmi", "ari", "known_acc", "novel_acc")
    head = (
        f"{'seed':>6} {'ACC':>6} {'NMI':>6} {'ARI':>6} {'known':>6} {'novel':>6} | "
        f"{'ACC':>6} {'NMI':>6} {'ARI':>6} {'known':>6} {'novel':>6} | "
        f"{'found':>5} {'true':>4} {'unk%':>5} {'abs%':>5} {'sec':>6}"
    )
    groups = f"{'':>6} {'final labels (latest revision)':<34} | {'first-emitted labels':<34} |"
    rule = "-" * len(head)

    def cells(scores: dict[str, float]) -> str:
        return " ".join(f"{scores[m]:6.2f}" for m in metrics)

    lines = [head, groups, rule]
    for r in results:
        lines.append(
            f"{r.seed:>6} {cells(r.final)} | {cells(r.first)} | "
            f"{r.novel_found:>5} {r.novel_true:>4} "
            f"{r.diagnostics.get('unknown', 0.0):5.1f} {r.diagnostics.get('absorbed', 0.0):5.1f} "
            f"{r.seconds:6.1f}"
        )
    first_mean = {m: float(np.mean([r.first[m] for r in results])) for m in metrics}
    s = summary
    lines.append(rule)
    lines.append(
        f"{'mean':>6} {cells({m: float(s[m]) for m in metrics})} | {cells(first_mean)} | "
        f"{s['novel_found']:>5} {s['novel_true']:>4} {s['unknown']:5.1f} {s['absorbed']:5.1f}"
    )
    lines.append("unk% = test items left unknown; abs% = novel-class test items a known class took")
    lines.append(
        f"{s['items']} items per seed, {s['items_per_s']} items/s end to end (embedding included)"
    )
    return "\n".join(lines)
