"""Builds the records the pipeline publishes: labels, unknowns and drift alerts.

Every label record of one step carries the same :class:`Stamp` (when, against
which store version, by which model), so the builders take one instead of
three loose values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from streamlabel.core.drift import DriftSignal
from streamlabel.core.store import Classification, PrototypeStore
from streamlabel.schemas import UNKNOWN, DriftAlert, LabelRecord, ScoredClass, SourceRef

__all__ = [
    "Stamp",
    "broker_reset_alert",
    "drift_alert",
    "label_record",
    "snapshot_fallback_alert",
]


@dataclass(frozen=True)
class Stamp:
    """When a step labelled, against which store version, with which model."""

    now: float
    store_version: int
    model_id: str

    @classmethod
    def of(cls, clock: Callable[[], float], store: PrototypeStore, model_id: str) -> Stamp:
        """The stamp for a step taken now against ``store`` as it is."""
        return cls(clock(), store.version, model_id)


def label_record(
    store: PrototypeStore,
    result: Classification,
    row: int,
    item_id: str,
    stamp: Stamp,
    revision: int,
    *,
    forced: str | None = None,
    reason: str | None = None,
    source: SourceRef | None = None,
    timings: dict[str, float] | None = None,
) -> LabelRecord:
    """The label record of row ``row`` of ``result``.

    Args:
        store: the store ``result`` came from (names and origins of classes).
        forced: a class id that overrides the classification (feedback, a finding).
        reason: why a revision was made (``feedback``, ``discovered``, ...).
        timings: per-item stage times in milliseconds.
    """
    label = forced or result.label(row)
    best = int(result.best[row])
    top = tuple(
        ScoredClass(class_id=result.class_ids[int(c)], score=float(s))
        for c, s in zip(result.top_idx[row], result.top_scores[row], strict=True)
        if c >= 0
    )
    name = None
    novel = False
    score = float(result.scores[row])
    if label != UNKNOWN:
        state = store.get(label)
        name, novel = state.name, state.origin == "discovery"
        score = next((t.score for t in top if t.class_id == label), score)
    return LabelRecord(
        item_id=item_id,
        label=label,
        class_name=name,
        score=score,
        margin=float(result.margins[row]),
        threshold=float(result.thresholds[row]) if best >= 0 else None,
        top_k=top,
        is_unknown=label == UNKNOWN,
        is_novel=novel,
        revision=revision,
        store_version=stamp.store_version,
        model_id=stamp.model_id,
        reason=reason,
        source=source,
        timings_ms=timings or {},
        emitted_at=stamp.now,
    )


def drift_alert(
    signal: DriftSignal, *, seed: int, store_version: int, now: float, incarnation: str = ""
) -> DriftAlert:
    """The alert record of a detector's signal.

    Its id is stable for a seed, an incarnation and a position (``at_item``), so
    the same stream gives the same ids, and unique across incarnations: a
    restarted learner counts ``at_item`` from 0 again, and its alerts must not
    reuse the ids of the run before (consumers deduplicate by id).

    Args:
        incarnation: which run of the watcher raised it (the learner's start);
            empty in one process (an Engine, a replay): the ids of earlier releases.
    """
    key = f"{seed}:{signal.kind}:{signal.at_item}"
    if incarnation:
        key = f"{seed}:{incarnation}:{signal.kind}:{signal.at_item}"
    digest = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    return DriftAlert(
        alert_id=f"{signal.kind}-{digest}",
        kind=signal.kind,
        statistic=float(signal.statistic),
        threshold=float(signal.threshold),
        p_value=signal.p_value,
        window=signal.window,
        reference=signal.reference,
        at_item=signal.at_item,
        severity=signal.severity,
        affected_classes=tuple(signal.affected_classes),
        detail=signal.detail,
        store_version=store_version,
        emitted_at=now,
    )


def broker_reset_alert(*, classes: int, store_version: int, at_item: int, now: float) -> DriftAlert:
    """The critical alert raised when the broker lost its topics and every class is
    re-published from the learner's state."""
    return DriftAlert(
        alert_id=f"broker-reset-{store_version}-{int(now)}",
        kind="broker_reset",
        statistic=float(classes),
        threshold=0.0,
        window=0,
        reference=0,
        at_item=at_item,
        severity="critical",
        detail=(
            f"the broker lost its topics; {classes} classes re-published from the "
            "learner's state, inputs read from the new topics' beginning; records "
            "that were only on the old broker are gone"
        ),
        store_version=store_version,
        emitted_at=now,
    )


def snapshot_fallback_alert(
    *, skipped: list[str], restored_from: str, store_version: int, now: float
) -> DriftAlert:
    """The critical alert raised when the learner could not use its newest snapshot."""
    detail = (
        f"{len(skipped)} unusable snapshot(s) skipped ({'; '.join(skipped)}); restored from "
        f"{restored_from}"
    )
    return DriftAlert(
        alert_id=f"snapshot-fallback-{store_version}-{int(now)}",
        kind="snapshot_fallback",
        statistic=float(len(skipped)),
        threshold=0.0,
        window=0,
        reference=0,
        at_item=0,
        severity="critical",
        detail=detail[:4000],
        store_version=store_version,
        emitted_at=now,
    )
