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
from streamlabel.pipeline.incidents import IncidentUpdate
from streamlabel.schemas import UNKNOWN, DriftAlert, LabelRecord, ScoredClass, SourceRef

__all__ = [
    "Stamp",
    "actor_exhausted_alert",
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
    signal: DriftSignal,
    *,
    seed: int,
    store_version: int,
    now: float,
    incarnation: str = "",
    incident: IncidentUpdate | None = None,
) -> DriftAlert:
    """The alert record of a detector's signal.

    Its id is stable for a seed, an incarnation and a position (``at_item``), so
    the same stream gives the same ids, and unique across incarnations: a
    restarted learner counts ``at_item`` from 0 again, and its alerts must not
    reuse the ids of the run before (consumers deduplicate by id).

    Args:
        incarnation: which run of the watcher raised it (the learner's start);
            empty in one process (an Engine, a replay): the ids of earlier releases.
        incident: the incident the signal belongs to, as the signal left it: the
            record then carries its id (derived like an alert id, from the signal
            that opened it), update number, evidence, share changes and examples;
            its severity is the incident's highest and its detail the incident's.
    """
    alert_id = f"{signal.kind}-{_stable_digest(seed, incarnation, signal.kind, signal.at_item)}"
    alert = DriftAlert(
        alert_id=alert_id,
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
    if incident is None:
        return alert
    first = incident.opened
    digest = _stable_digest(seed, incarnation, f"incident:{first.kind}", first.at_item)
    return DriftAlert.model_validate(
        alert.model_dump()
        | {
            "severity": incident.severity,
            "affected_classes": incident.affected_classes,
            "detail": incident.detail,
            "incident_id": f"incident-{digest}",
            "incident_update": incident.update,
            "evidence": incident.evidence,
            "share_changes": incident.share_changes,
            "examples_before": incident.examples_before,
            "examples_after": incident.examples_after,
        }
    )


def _stable_digest(seed: int, incarnation: str, kind: str, at_item: int) -> str:
    key = f"{seed}:{kind}:{at_item}"
    if incarnation:
        key = f"{seed}:{incarnation}:{kind}:{at_item}"
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


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


def actor_exhausted_alert(
    *, actor: str, max_restarts: int, window_s: float, retry_in_s: float, error: str, now: float
) -> DriftAlert:
    """The critical alert raised when an actor failed past its restart budget: it is
    set aside and tried again ``retry_in_s`` later; the other actors keep running."""
    if actor == "learner":
        role = "The learner (no feedback, commands, discovery or drift until it is back)"
    else:
        role = f"Stream worker {actor} (its partitions move to the other workers)"
    detail = (
        f"{role} failed again after {max_restarts} restarts within {window_s:g} s and is "
        f"set aside; tried again in {retry_in_s:.0f} s. Last error: {error}"
    )
    return DriftAlert(
        alert_id=f"actor-exhausted-{actor}-{int(now)}",
        kind="actor_exhausted",
        statistic=float(max_restarts + 1),
        threshold=float(max_restarts),
        window=0,
        reference=0,
        at_item=0,
        severity="critical",
        detail=detail[:4000],
        store_version=0,
        emitted_at=now,
    )
