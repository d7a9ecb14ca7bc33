"""Wire records and their msgpack codec."""

from streamlabel.schemas.codec import SCHEMA_VERSION, decode, encode
from streamlabel.schemas.records import (
    UNKNOWN,
    ClassEvent,
    ClassEventKind,
    ClassOrigin,
    ClassState,
    ClassStatus,
    DeadLetter,
    DriftAlert,
    DriftKind,
    Feedback,
    Item,
    LabelRecord,
    Record,
    ScoredClass,
    Severity,
    SourceRef,
    UnknownRecord,
)
from streamlabel.schemas.vectors import Matrix, Vector, to_array

__all__ = [
    "SCHEMA_VERSION",
    "UNKNOWN",
    "ClassEvent",
    "ClassEventKind",
    "ClassOrigin",
    "ClassState",
    "ClassStatus",
    "DeadLetter",
    "DriftAlert",
    "DriftKind",
    "Feedback",
    "Item",
    "LabelRecord",
    "Matrix",
    "Record",
    "ScoredClass",
    "Severity",
    "SourceRef",
    "UnknownRecord",
    "Vector",
    "decode",
    "encode",
    "to_array",
]
