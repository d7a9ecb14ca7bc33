"""What the Engine emits for a batch."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamlabel.schemas import ClassEvent, DeadLetter, DriftAlert, LabelRecord, UnknownRecord


@dataclass
class EngineOutput:
    """Records to publish, one list per topic.

    Attributes:
        labels: first labels and revisions (``revision > 0``), keyed by item id.
        unknowns: items labelled unknown, with embeddings, for the learner.
        class_events: changes to the prototype store (the state changelog).
        alerts: drift alerts.
        dead_letters: inputs that could not be processed.
    """

    labels: list[LabelRecord] = field(default_factory=list)
    unknowns: list[UnknownRecord] = field(default_factory=list)
    class_events: list[ClassEvent] = field(default_factory=list)
    alerts: list[DriftAlert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def extend(self, other: EngineOutput) -> EngineOutput:
        """Appends another output's records to this one; returns self."""
        self.labels.extend(other.labels)
        self.unknowns.extend(other.unknowns)
        self.class_events.extend(other.class_events)
        self.alerts.extend(other.alerts)
        self.dead_letters.extend(other.dead_letters)
        return self
