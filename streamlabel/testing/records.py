"""Wire records with plain defaults, for tests that need many of them.

Example:
    >>> label("i1", "unknown", top_k=[("c1", 0.4)]).is_unknown
    True
    >>> event("c1", version=3, kind="renamed", name="billing").state.updated_version
    3
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamlabel.schemas import (
    UNKNOWN,
    ClassEvent,
    ClassEventKind,
    ClassState,
    LabelRecord,
    ScoredClass,
    UnknownRecord,
)

__all__ = ["event", "label", "state", "unknown"]


def label(
    item_id: str,
    class_id: str,
    *,
    revision: int = 0,
    store_version: int = 1,
    emitted_at: float = 0.0,
    score: float = 0.5,
    top_k: Sequence[tuple[str, float]] = (),
    **fields: Any,
) -> LabelRecord:
    """The label ``class_id`` (``unknown`` makes it an unknown) of an item."""
    return LabelRecord(
        item_id=item_id, label=class_id, score=score, margin=0.1,
        top_k=tuple(ScoredClass(class_id=c, score=s) for c, s in top_k),
        is_unknown=class_id == UNKNOWN, revision=revision, store_version=store_version,
        model_id="hash", emitted_at=emitted_at, **fields,
    )  # fmt: skip


def state(class_id: str, *, version: int = 1, name: str | None = None, **fields: Any) -> ClassState:
    """A class's state (no vectors) at store version ``version``."""
    values: dict[str, Any] = {
        "class_id": class_id, "name": name or class_id, "status": "known",
        "origin": "feedback", "count": 1, "created_version": 1, "updated_version": version,
        "created_at": 0.0, "updated_at": float(version),
    }  # fmt: skip
    values.update(fields)
    return ClassState(**values)


def event(
    class_id: str,
    *,
    version: int = 1,
    kind: ClassEventKind = "created",
    cause: str | None = "feedback",
    related: Sequence[str] = (),
    **fields: Any,
) -> ClassEvent:
    """An event carrying :func:`state` of ``class_id`` at ``version``."""
    return ClassEvent(
        kind=kind, class_id=class_id, state=state(class_id, version=version, **fields),
        store_version=version, cause=cause, related=tuple(related),
    )  # fmt: skip


def unknown(item_id: str, text: str | None, *, revision: int = 0) -> UnknownRecord:
    """An item labelled unknown, with a two-value vector."""
    return UnknownRecord(
        item_id=item_id, text=text, vector=[1.0, 0.0], score=0.1, revision=revision,
        store_version=1,
    )  # fmt: skip
