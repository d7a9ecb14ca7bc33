"""A deployment's topics in memory, filled with records, for the console's tests."""

from __future__ import annotations

import numpy as np

from streamlabel.kafka.topics import Topics
from streamlabel.schemas import (
    ClassEvent,
    DriftAlert,
    DriftEvidence,
    Record,
    ShareChange,
    UnknownRecord,
    encode,
)
from streamlabel.testing.broker import MemoryBroker
from streamlabel.testing.records import event, label
from streamlabel.ui.views import ConsoleViews

TOPICS = Topics("sl.")
DIM = 8


def vector(seed: int) -> list[float]:
    return [float(v) for v in np.random.default_rng(seed).normal(size=DIM)]


def class_event(cid: str, name: str, *, version: int = 1, origin: str = "feedback",
                status: str = "known", kind: str = "created", cause: str = "feedback",
                exemplars: int = 3, **fields: object) -> ClassEvent:  # fmt: skip
    rows = [vector(hash((cid, j)) % 1000) for j in range(exemplars)]
    return event(cid, version=version, kind=kind, cause=cause, name=name, origin=origin,  # type: ignore[arg-type]
                 status=status, mean=vector(hash(cid) % 1000), exemplars=rows,
                 exemplar_texts=tuple(f"{name} example {j}" for j in range(exemplars)),
                 **fields)  # fmt: skip


def alert(aid: str, update: int, *, incident: str | None = "inc-1", kind: str = "unknown_rate",
          at: float = 1000.0) -> DriftAlert:  # fmt: skip
    ev = tuple(
        DriftEvidence(
            kind="unknown_rate" if j % 2 == 0 else "embedding",
            statistic=0.4,
            threshold=0.2,
            at_item=1200 + j,
            detail=f"signal {j}",
            emitted_at=at + j,
        )
        for j in range(update + 1)
    )
    return DriftAlert(
        alert_id=aid, kind=kind, statistic=0.4, threshold=0.2, window=200, reference=800,  # type: ignore[arg-type]
        at_item=1200 + update, severity="warning", detail=f"shift, update {update}",
        store_version=3, emitted_at=at + update, incident_id=incident, incident_update=update,
        evidence=ev if incident else (),
        share_changes=(ShareChange(class_id="c1", before=0.6, after=0.2),
                       ShareChange(class_id="unknown", before=0.1, after=0.5)),
        examples_before=("how do I pay",), examples_after=("my <b>card</b> broke",),
    )  # fmt: skip


def deployment() -> list[tuple[str, Record]]:
    """Two classes (one discovered, awaiting review), labels, three unknowns, an incident."""
    out: list[tuple[str, Record]] = [
        ("classes", class_event("c1", "billing", version=1)),
        (
            "classes",
            class_event(
                "d-7",
                "novel-d7",
                version=2,
                origin="discovery",
                status="provisional",
                cause="discovery",
                keywords=("card", "stolen"),
            ),
        ),
    ]
    for i in range(10):
        out.append(("labels", label(f"i{i}", "c1", emitted_at=1000.0 + i, class_name="billing")))
    for i in range(10, 13):
        out.append(("labels", label(f"i{i}", "unknown", emitted_at=1005.0 + i,
                                    top_k=[("c1", 0.31), ("d-7", 0.2)])))  # fmt: skip
        text = f"unknown text {i}"
        out.append(
            (
                "unknowns",
                UnknownRecord(
                    item_id=f"i{i}",
                    text=text,
                    vector=vector(i),
                    score=0.31,
                    store_version=2,
                ),
            )
        )
    out += [("alerts", alert("a1", 0)), ("alerts", alert("a2", 1))]
    return out


def views() -> ConsoleViews:
    v = ConsoleViews(clock=lambda: 1020.0)
    for kind, record in deployment():
        v.take(kind, record)
    return v


def broker() -> MemoryBroker:
    """A deployment's topics holding :func:`deployment`'s records and one dead letter."""
    b = MemoryBroker.deployment(TOPICS)
    for kind, record in deployment():
        b.append(TOPICS.name(kind), None, encode(record))
    b.append(TOPICS.dlq, None, b"\x00not a record")
    return b
