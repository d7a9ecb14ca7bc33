"""Deterministic replay: relabel an offset range of ``items`` against a pinned snapshot.

The store comes from a learner snapshot (``learner.state_dir``), never from
the live changelog, and the range is cut into fixed chunks of
``worker.batch_size`` offsets, so the same range against the same snapshot
gives the same labels however often it runs, whichever process runs it. Labels
are returned, not published: a replay is for audits and for checking a model
or a store version against what was emitted live.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from streamlabel.core.embedder import Embedder
from streamlabel.errors import SnapshotError, StreamlabelError
from streamlabel.kafka.io import make_consumer, to_raw
from streamlabel.pipeline.engine import Engine
from streamlabel.schemas import LabelRecord
from streamlabel.settings.engine import DriftSettings
from streamlabel.settings.runtime import RuntimeSettings
from streamlabel.workers.checkpoint import read_snapshot
from streamlabel.workers.embedding import load_embedder

if TYPE_CHECKING:
    from kafka.consumer.fetcher import ConsumerRecord

__all__ = ["read_range", "replay"]


def read_range(
    settings: RuntimeSettings, topic: str, partition: int, start: int, end: int,
    timeout_s: float = 60.0,
) -> list[ConsumerRecord]:  # fmt: skip
    """The records of ``topic:partition`` with ``start <= offset < end``.

    Raises:
        StreamlabelError: the range could not be read in ``timeout_s`` (it is
            past the end of the partition, or the broker is away).
    """
    from kafka.structs import TopicPartition

    if end <= start:
        return []
    consumer = make_consumer(settings.kafka, group_id=None, max_poll_records=5000)
    tp = TopicPartition(topic, partition)
    out: list[ConsumerRecord] = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        deadline = time.monotonic() + timeout_s
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise StreamlabelError(
                    f"could not read {topic}:{partition} offsets {start}..{end - 1} "
                    f"(stopped at {consumer.position(tp)}, high watermark {consumer.highwater(tp)})"
                )
            for messages in consumer.poll(timeout_ms=500).values():
                out.extend(m for m in messages if start <= m.offset < end)
    finally:
        consumer.close()
    return out


def replay(
    settings: RuntimeSettings,
    snapshot: str | Path,
    topic: str,
    partition: int,
    start: int,
    end: int,
    *,
    embedder: Embedder | None = None,
) -> list[LabelRecord]:
    """Labels ``topic:partition`` offsets ``[start, end)`` with the snapshot's store.

    Records that do not decode are skipped (live, they went to the DLQ).

    Raises:
        SnapshotError: the snapshot is missing or unreadable.
        StreamlabelError: the range cannot be read.
    """
    snap = read_snapshot(Path(snapshot))
    if snap is None:
        raise SnapshotError(f"no snapshot at {str(snapshot)!r}")
    pinned = settings.model_copy(
        update={
            "discovery": settings.discovery.model_copy(update={"enabled": False}),
            "drift": DriftSettings(enabled=False),
        }
    )
    engine = Engine(pinned, embedder or load_embedder(settings.model))
    engine.load_state(snap["engine"])
    records = sorted(read_range(settings, topic, partition, start, end), key=lambda m: m.offset)
    chunk = settings.worker.batch_size
    labels: list[LabelRecord] = []
    for lo in range(start, end, chunk):
        batch = [to_raw(m) for m in records if lo <= m.offset < lo + chunk]
        if batch:
            labels.extend(engine.process(batch).labels)
    return sorted(labels, key=lambda r: r.source.offset if r.source else -1)
