"""Synthetic labelled streams for the drift-watch tests: a mix of classes (and
``unknown``) per phase, each class an embedding cluster, each item a text that
says its phase and class (so a test can tell which side of a shift it came from)."""

from __future__ import annotations

import numpy as np

from streamlabel.pipeline.output import Observed
from streamlabel.schemas import UNKNOWN

DIM = 32
BEFORE = {"a": 0.45, "b": 0.45, "c": 0.05, UNKNOWN: 0.05}
"""The mix before the shift: a and b dominate, few unknowns."""
AFTER = {"a": 0.1, "b": 0.1, "c": 0.5, UNKNOWN: 0.3}
"""The mix after it: c took over (+45 points), unknowns rose (+25)."""

CLASSES = ("a", "b", "c", "d", UNKNOWN)
Phases = list[tuple[int, dict[str, float]]]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def labelled(phases: Phases, *, seed: int = 0) -> Observed:
    """One ``Observed`` of every item of ``phases`` (``(items, mix)`` each), in order."""
    rng = np.random.default_rng(seed)
    world = np.random.default_rng(0)  # the same clusters in every stream
    centres = {c: _unit(world.standard_normal(DIM)) for c in CLASSES}
    ids, texts, labels, vectors, scores = [], [], [], [], []
    for phase, (n, mix) in enumerate(phases):
        classes = list(mix)
        p = np.array([mix[c] for c in classes])
        drawn = rng.choice(classes, n, p=p / p.sum())
        noise = 0.8 * rng.standard_normal((n, DIM)) / np.sqrt(DIM)
        vectors.append(_unit(np.stack([centres[c] for c in drawn]) + noise))
        scores.append(np.where(drawn == UNKNOWN, 0.2, 0.7) + 0.05 * rng.standard_normal(n))
        ids += [f"p{phase}-{i}" for i in range(n)]
        texts += [f"phase {phase} item {i} about {c}" for i, c in enumerate(drawn)]
        labels += [str(c) for c in drawn]
    return Observed(
        item_ids=ids,
        vectors=np.concatenate(vectors).astype(np.float32),
        texts=list(texts),
        labels=labels,
        revisions=[0] * len(ids),
        scores=np.concatenate(scores).astype(np.float32),
        is_unknown=np.array([lab == UNKNOWN for lab in labels]),
    )


def batches(observed: Observed, size: int = 100) -> list[Observed]:
    """``observed`` cut into batches of ``size`` rows."""
    return [
        observed.rows(np.arange(i, min(i + size, len(observed))))
        for i in range(0, len(observed), size)
    ]


def as_the_learner_reads_partitions(*, seed: int = 0, poll: int = 256) -> list[Observed]:
    """One shift as the learner sees it in ``make demo``: four partitions, each with the
    shift 300 of its 750 items in; two workers read two partitions each, one after the
    other, in polls of ``poll`` items; the learner takes the workers' polls in turn. So
    what it reads rises (post-shift part of a first partition), falls (the pre-shift
    part of a second one) and rises again."""
    parts = [labelled([(300, BEFORE), (450, AFTER)], seed=seed * 10 + k) for k in range(4)]
    workers = [_concat(parts[:2]), _concat(parts[2:])]
    n = len(workers[0])
    return [w.rows(np.arange(i, min(i + poll, n))) for i in range(0, n, poll) for w in workers]


def _concat(parts: list[Observed]) -> Observed:
    return Observed(
        item_ids=[i for p in parts for i in p.item_ids],
        vectors=np.concatenate([p.vectors for p in parts]),
        texts=[t for p in parts for t in p.texts],
        labels=[lab for p in parts for lab in p.labels],
        revisions=[r for p in parts for r in p.revisions],
        scores=np.concatenate([p.scores for p in parts]),
        is_unknown=np.concatenate([p.is_unknown for p in parts]),
    )
