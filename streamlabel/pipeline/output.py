"""What the Engine emits for a batch."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from streamlabel.core.discovery import DiscoveryReport
from streamlabel.schemas import ClassEvent, DeadLetter, DriftAlert, LabelRecord, UnknownRecord
from streamlabel.schemas.commands import CommandResult


@dataclass(frozen=True)
class Observed:
    """The items a batch labelled, with their embeddings (for drift and the item cache).

    A stream worker sends this to the learner: every row goes to its item
    cache (so feedback can name any recent item by id), the rows marked in
    ``drift`` to its drift detectors.

    Attributes:
        item_ids: ids, one per row.
        vectors: ``(n, dim)`` unit embeddings.
        texts: texts (None for vector-only items).
        labels: class id or ``unknown`` per row.
        revisions: label revision per row.
        scores: similarity to the nearest class per row.
        is_unknown: True where the label is ``unknown``.
        drift: True where the drift detectors should see the row; None: every row.
    """

    item_ids: list[str]
    vectors: np.ndarray
    texts: list[str | None]
    labels: list[str]
    revisions: list[int]
    scores: np.ndarray
    is_unknown: np.ndarray
    drift: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.item_ids)

    def sample(self, fraction: float, rng: np.random.Generator) -> Observed:
        """A random subset of about ``fraction`` of the rows (all when ``fraction >= 1``)."""
        if fraction >= 1.0 or not len(self):
            return self
        return self.rows(np.flatnonzero(rng.random(len(self)) < fraction))

    def rows(self, keep: np.ndarray) -> Observed:
        """The rows at the indices ``keep``, in that order."""
        return Observed(
            item_ids=[self.item_ids[i] for i in keep],
            vectors=self.vectors[keep],
            texts=[self.texts[i] for i in keep],
            labels=[self.labels[i] for i in keep],
            revisions=[self.revisions[i] for i in keep],
            scores=self.scores[keep],
            is_unknown=self.is_unknown[keep],
            drift=None if self.drift is None else self.drift[keep],
        )

    def mark_drift(self, fraction: float, rng: np.random.Generator) -> Observed:
        """Every row, about ``fraction`` of them marked for the drift detectors."""
        if fraction >= 1.0:
            return replace(self, drift=None)
        return replace(self, drift=rng.random(len(self)) < fraction)

    def without_drift(self) -> Observed:
        """Every row, none for the drift detectors (e.g. sent a second time)."""
        return replace(self, drift=np.zeros(len(self), bool))

    def for_drift(self) -> Observed:
        """The rows the drift detectors should see."""
        return self if self.drift is None else self.rows(np.flatnonzero(self.drift))

    @property
    def drift_rows(self) -> int:
        """How many rows are for the drift detectors."""
        return len(self) if self.drift is None else int(np.count_nonzero(self.drift))

    def then(self, later: Observed) -> Observed:
        """These rows followed by ``later``'s (one call to the learner instead of two)."""
        drift = None
        if self.drift is not None or later.drift is not None:
            drift = np.concatenate([_drift_mask(self), _drift_mask(later)])
        return Observed(
            item_ids=self.item_ids + later.item_ids,
            vectors=np.concatenate([self.vectors, later.vectors]),
            texts=self.texts + later.texts,
            labels=self.labels + later.labels,
            revisions=self.revisions + later.revisions,
            scores=np.concatenate([self.scores, later.scores]),
            is_unknown=np.concatenate([self.is_unknown, later.is_unknown]),
            drift=drift,
        )


def _drift_mask(o: Observed) -> np.ndarray:
    return np.ones(len(o), bool) if o.drift is None else o.drift


@dataclass
class EngineOutput:
    """Records to publish, one list per topic.

    Attributes:
        labels: first labels and revisions (``revision > 0``), keyed by item id.
        unknowns: items labelled unknown, with embeddings, for the learner.
        class_events: changes to the prototype store (the state changelog).
        alerts: drift alerts.
        dead_letters: inputs that could not be processed.
        observed: the items this batch labelled, with embeddings (``process`` only).
        stage_s: seconds this batch spent per stage (``decode``, ``embed``,
            ``classify``; ``process`` only).
        discoveries: reports of the discovery runs adopted while producing this output.
        command_results: the answers to the commands applied (or refused).
    """

    labels: list[LabelRecord] = field(default_factory=list)
    unknowns: list[UnknownRecord] = field(default_factory=list)
    class_events: list[ClassEvent] = field(default_factory=list)
    alerts: list[DriftAlert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    observed: Observed | None = None
    stage_s: dict[str, float] = field(default_factory=dict)
    discoveries: list[DiscoveryReport] = field(default_factory=list)
    command_results: list[CommandResult] = field(default_factory=list)

    def has_records(self) -> bool:
        """True when there is something to publish."""
        parts = (self.labels, self.unknowns, self.class_events, self.alerts, self.dead_letters)
        return any(parts) or bool(self.command_results)

    def extend(self, other: EngineOutput) -> EngineOutput:
        """Appends another output's records to this one; returns self."""
        self.labels.extend(other.labels)
        self.unknowns.extend(other.unknowns)
        self.class_events.extend(other.class_events)
        self.alerts.extend(other.alerts)
        self.dead_letters.extend(other.dead_letters)
        self.discoveries.extend(other.discoveries)
        self.command_results.extend(other.command_results)
        return self

    def clear(self) -> None:
        """Empties every list (after the records were checkpointed and published)."""
        for part in (self.labels, self.unknowns, self.class_events, self.alerts):
            part.clear()
        self.dead_letters.clear()
        self.discoveries.clear()
        self.command_results.clear()
        self.observed = None
        self.stage_s = {}
