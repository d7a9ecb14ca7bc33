"""Wire records: every message streamlabel reads from or writes to Kafka.

All records are frozen pydantic models with every field named and documented.
They travel as msgpack or JSON through :mod:`streamlabel.schemas.codec`, which
adds the schema version; vectors travel as float32 bytes in msgpack and number
arrays in JSON (see :mod:`.vectors`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from streamlabel.schemas.vectors import EMPTY_ROWS, Matrix, Vector

UNKNOWN = "unknown"
"""The label of an item that fits no class well enough (open-set rejection)."""

MetadataValue = str | int | float | bool | None
ClassStatus = Literal["known", "provisional", "retired"]
ClassOrigin = Literal["feedback", "discovery", "zero_shot"]
ClassEventKind = Literal["created", "updated", "renamed", "merged", "retired", "threshold_set"]
"""What happened to a class; ``threshold_set``: a person fixed (or cleared) its threshold."""
DriftKind = Literal[
    "embedding",
    "unknown_rate",
    "label_mix",
    "prototype_shift",
    "confidence",
    "broker_reset",
    "snapshot_fallback",
    "actor_exhausted",
]
"""Which detector fired; ``broker_reset`` (the broker lost its topics),
``snapshot_fallback`` (the learner could not use its newest snapshot) and
``actor_exhausted`` (an actor failed past its restart budget and is set aside for a
window) are operational."""
Severity = Literal["info", "warning", "critical"]


class Record(BaseModel):
    """Base of every wire record: frozen, strict about unknown fields.

    In JSON, byte fields are base64url strings (padded; standard base64 is read too).
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64"
    )


class SourceRef(Record):
    """Where an input record came from."""

    topic: str = Field(description="Source topic.")
    partition: int = Field(ge=0, description="Source partition.")
    offset: int = Field(ge=0, description="Offset of the record in its partition.")


class Item(Record):
    """One item to label: a text, a pre-computed vector, or both."""

    id: str = Field(min_length=1, max_length=512, description="Stable item id (the Kafka key).")
    text: str | None = Field(default=None, description="The text to embed.")
    vector: Vector | None = Field(
        default=None, description="A pre-computed embedding; when set the model is skipped."
    )
    metadata: dict[str, MetadataValue] = Field(
        default_factory=dict, description="Free-form attributes carried to the label record."
    )
    event_time: float | None = Field(default=None, description="Event time, epoch seconds.")

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("text is empty or only whitespace")
        return v

    @field_validator("metadata")
    @classmethod
    def _ints_fit_msgpack(cls, v: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
        for key, value in v.items():
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if is_int and not -(2**63) <= value < 2**64:  # type: ignore[operator]
                raise ValueError(f"metadata {key!r}: integer out of the 64-bit range")
        return v

    @model_validator(mode="after")
    def _has_content(self) -> Item:
        if self.text is None and self.vector is None:
            raise ValueError("an item needs a text or a vector")
        return self


class ScoredClass(Record):
    """One candidate class with its similarity."""

    class_id: str = Field(description="Class id.")
    score: float = Field(description="Similarity in the store's metric space, in [-1, 1].")


class LabelRecord(Record):
    """The label of one item. Revisions (revision > 0) supersede earlier labels of the item."""

    item_id: str = Field(description="Id of the labelled item (the Kafka key).")
    label: str = Field(description="Class id, or 'unknown'.")
    class_name: str | None = Field(default=None, description="Readable name of the class.")
    score: float = Field(description="Similarity to the chosen (or nearest) class.")
    margin: float = Field(description="Best minus second-best class similarity.")
    threshold: float | None = Field(
        default=None, description="Open-set acceptance threshold of the nearest class."
    )
    top_k: tuple[ScoredClass, ...] = Field(default=(), description="Best classes, best first.")
    is_unknown: bool = Field(description="True when the item fits no class (label 'unknown').")
    is_novel: bool = Field(
        default=False, description="True when the label is a class found by discovery."
    )
    revision: int = Field(default=0, ge=0, description="0 for the first label, +1 per revision.")
    store_version: int = Field(ge=0, description="Prototype-store version used.")
    model_id: str = Field(description="Embedding model id.")
    source: SourceRef | None = Field(default=None, description="Where the item was read.")
    reason: str | None = Field(
        default=None, description="Why a revision was made (e.g. 'discovered', 'feedback')."
    )
    timings_ms: dict[str, float] = Field(
        default_factory=dict, description="Per-stage milliseconds for the batch (amortised)."
    )
    emitted_at: float = Field(description="Wall-clock time of emission, epoch seconds.")

    def supersedes(self, current: LabelRecord | None) -> bool:
        """Whether this record replaces ``current`` as its item's label: the higher
        ``(revision, store_version)`` wins, whatever the order they were read in
        (a redelivered stream label made with a newer store beats the first, an
        older one does not); of equal pairs, the later one read."""
        if current is None:
            return True
        return (self.revision, self.store_version) >= (current.revision, current.store_version)


class Feedback(Record):
    """A labelled example: teaches the store a class (creating it if new)."""

    item_id: str | None = Field(
        default=None, description="Id of an item already seen (its embedding is looked up)."
    )
    text: str | None = Field(default=None, description="Text of the example.")
    vector: Vector | None = Field(default=None, description="Embedding of the example.")
    label: str = Field(min_length=1, max_length=256, description="The class name it belongs to.")
    source: str = Field(default="human", description="Who gave the label (person, system).")
    event_time: float | None = Field(default=None, description="Event time, epoch seconds.")

    @field_validator("label")
    @classmethod
    def _label_not_reserved(cls, v: str) -> str:
        if v.strip().lower() == UNKNOWN:
            raise ValueError("'unknown' is reserved and cannot be taught as a class")
        if not v.strip():
            raise ValueError("label is empty")
        return v

    @model_validator(mode="after")
    def _has_example(self) -> Feedback:
        if self.item_id is None and self.text is None and self.vector is None:
            raise ValueError("feedback needs an item_id, a text or a vector")
        return self


class ClassState(Record):
    """The FULL current state of one class.

    A ``ClassEvent`` carries this whole state, so replaying only the last event
    of each class (what log compaction keeps) rebuilds the same store as
    replaying every event.
    """

    class_id: str = Field(min_length=1, description="Stable class id.")
    name: str = Field(min_length=1, description="Readable name.")
    status: ClassStatus = Field(description="known, provisional (discovered) or retired.")
    origin: ClassOrigin = Field(description="How the class came to exist.")
    description: str | None = Field(default=None, description="Free text (zero-shot classes).")
    count: int = Field(ge=0, description="Examples absorbed into the mean.")
    mean: Vector | None = Field(default=None, description="Count-weighted mean of the examples.")
    sub_prototypes: Matrix = Field(default=EMPTY_ROWS, description="Up to P modes of the class.")
    exemplars: Matrix = Field(
        default=EMPTY_ROWS, description="Bounded reservoir of example vectors."
    )
    exemplar_texts: tuple[str, ...] = Field(default=(), description="Texts of some exemplars.")
    keywords: tuple[str, ...] = Field(default=(), description="Top keywords (discovered classes).")
    aliases: tuple[str, ...] = Field(default=(), description="Other names that map here.")
    merged_into: str | None = Field(default=None, description="Target when merged away.")
    threshold_override: float | None = Field(
        default=None, description="Fixed open-set threshold instead of the calibrated one."
    )
    created_version: int = Field(ge=0, description="Store version that created the class.")
    updated_version: int = Field(ge=0, description="Store version of the last change.")
    created_at: float = Field(description="Creation time, epoch seconds (from the clock).")
    updated_at: float = Field(description="Last change, epoch seconds (from the clock).")


class ClassEvent(Record):
    """A change to the prototype store, carrying the class's full new state."""

    kind: ClassEventKind = Field(description="What happened.")
    class_id: str = Field(description="The class concerned (the Kafka key).")
    state: ClassState = Field(description="The class's full state after the change.")
    store_version: int = Field(ge=1, description="Store version after applying the event.")
    cause: str | None = Field(default=None, description="feedback, discovery, operator...")
    related: tuple[str, ...] = Field(
        default=(), description="Other classes involved (merge source/target)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ClassEvent:
        if self.state.class_id != self.class_id:
            raise ValueError("event class_id differs from state.class_id")
        return self


class DriftEvidence(Record):
    """One detector's signal within a drift incident."""

    kind: DriftKind = Field(description="Which detector fired.")
    statistic: float = Field(description="Test statistic.")
    threshold: float = Field(description="Threshold the statistic crossed.")
    p_value: float | None = Field(default=None, description="p-value, when the test has one.")
    at_item: int = Field(ge=0, description="Stream position (items seen) when it fired.")
    detail: str = Field(description="One readable sentence.")
    emitted_at: float = Field(description="Wall-clock time, epoch seconds.")


class ShareChange(Record):
    """How much of the stream one class took before and after a shift."""

    class_id: str = Field(description="Class id, or 'unknown'.")
    before: float = Field(ge=0.0, le=1.0, description="Share in the reference window.")
    after: float = Field(ge=0.0, le=1.0, description="Share in the test window.")


class DriftAlert(Record):
    """A shift detected in the stream.

    The signals of one shift form one incident: every alert of it carries the
    same ``incident_id`` (its Kafka key), a later signal updates the incident
    (``incident_update`` + 1, its ``evidence`` grown) rather than opening another.
    """

    alert_id: str = Field(description="Unique id of the alert.")
    kind: DriftKind = Field(description="Which detector fired.")
    statistic: float = Field(description="Test statistic.")
    threshold: float = Field(description="Threshold the statistic crossed.")
    p_value: float | None = Field(default=None, description="p-value, when the test has one.")
    window: int = Field(ge=0, description="Items in the test window.")
    reference: int = Field(ge=0, description="Items in the reference window.")
    at_item: int = Field(ge=0, description="Stream position (items seen) when it fired.")
    severity: Severity = Field(description="info, warning or critical.")
    affected_classes: tuple[str, ...] = Field(default=(), description="Classes concerned.")
    detail: str = Field(description="One readable sentence.")
    store_version: int = Field(ge=0, description="Store version when it fired.")
    emitted_at: float = Field(description="Wall-clock time, epoch seconds.")
    incident_id: str | None = Field(
        default=None, description="The shift this signal belongs to (None: not grouped)."
    )
    incident_update: int = Field(
        default=0, ge=0, description="0 for an incident's first signal, +1 per later one."
    )
    evidence: tuple[DriftEvidence, ...] = Field(
        default=(), description="Every detector's signal in the incident so far, oldest first."
    )
    share_changes: tuple[ShareChange, ...] = Field(
        default=(), description="The classes whose share of the stream moved most."
    )
    examples_before: tuple[str, ...] = Field(
        default=(), description="Texts of items from before the shift (reference window)."
    )
    examples_after: tuple[str, ...] = Field(
        default=(), description="Texts of items from after the shift (test window)."
    )


class UnknownRecord(Record):
    """An item labelled unknown, with its embedding, for the learner's discovery buffer."""

    item_id: str = Field(description="Item id (the Kafka key).")
    text: str | None = Field(default=None, description="The item's text.")
    vector: Vector = Field(description="The item's embedding.")
    score: float = Field(description="Similarity to the nearest class.")
    nearest_class: str | None = Field(default=None, description="Nearest class id.")
    revision: int = Field(default=0, ge=0, description="Revision of its current label.")
    store_version: int = Field(ge=0, description="Store version used.")
    source: SourceRef | None = Field(default=None, description="Where the item was read.")
    event_time: float | None = Field(default=None, description="Event time, epoch seconds.")


class DeadLetter(Record):
    """An input that could not be processed; goes to the dead-letter topic."""

    source: SourceRef | None = Field(default=None, description="Where the input was read.")
    key: bytes | None = Field(default=None, description="The raw key.")
    value: bytes = Field(description="The raw value, unchanged.")
    reason: str = Field(description="Machine-readable reason (not_msgpack, invalid, ...).")
    error: str = Field(description="Readable error.")
