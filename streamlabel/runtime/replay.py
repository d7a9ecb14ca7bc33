"""Deterministic replay: relabel an offset range of ``items`` against a pinned snapshot.

The store comes from a learner snapshot (``learner.state_dir``), never from
the live changelog, and the range is cut into fixed chunks of
``worker.batch_size`` offsets, so the same range against the same snapshot
gives the same labels however often it runs, whichever process runs it. Labels
are returned, not published: a replay is for audits and for checking a model
or a store version against what was emitted live.

The range is streamed: one chunk is read, labelled and handed on before the
next is read (:func:`iter_replay`), so a replay of millions of offsets holds
one chunk at a time, not the range.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from streamlabel.core.embedder import Embedder
from streamlabel.errors import SnapshotError, StreamlabelError
from streamlabel.kafka.io import make_consumer, to_raw
from streamlabel.kafka.protocols import Consumer
from streamlabel.pipeline.engine import Engine
from streamlabel.schemas import LabelRecord
from streamlabel.settings.engine import DriftSettings
from streamlabel.settings.runtime import RuntimeSettings
from streamlabel.workers.checkpoint import read_snapshot
from streamlabel.workers.embedding import load_embedder

if TYPE_CHECKING:
    from kafka.consumer.fetcher import ConsumerRecord

__all__ = ["iter_replay", "read_chunks", "replay"]


def read_chunks(
    consumer: Consumer, topic: str, partition: int, start: int, end: int, chunk: int,
    timeout_s: float = 60.0,
) -> Iterator[list[ConsumerRecord]]:  # fmt: skip
    """The records of ``topic:partition`` with ``start <= offset < end``, chunk by chunk.

    Chunk ``k`` holds the records of offsets ``[start + k * chunk, start + (k + 1) *
    chunk)`` in offset order (chunks without records are skipped), so the cut
    does not depend on how the broker batches its answers. Each poll asks for
    at most ``chunk`` records and a chunk is handed on before the next is
    collected: one chunk (and one poll) is held at a time.

    Raises:
        StreamlabelError: the consumer's position did not move for ``timeout_s``
            before reaching ``end`` (the range is past the end of the partition,
            or the broker is away).
    """
    from kafka.structs import TopicPartition

    if end <= start:
        return
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    consumer.seek(tp, start)
    held: list[ConsumerRecord] = []
    held_end = start + chunk  # the offset after the held chunk
    taken = start  # the next offset to take (a record before it is a repeat)
    moved, deadline = start, time.monotonic() + timeout_s
    while (position := consumer.position(tp)) < end:
        if position > moved:
            moved, deadline = position, time.monotonic() + timeout_s
        elif time.monotonic() > deadline:
            raise StreamlabelError(
                f"could not read {topic}:{partition} offsets {start}..{end - 1} "
                f"(stopped at {position}, high watermark {consumer.highwater(tp)})"
            )
        for messages in consumer.poll(timeout_ms=500, max_records=chunk).values():
            for m in messages:
                if not taken <= m.offset < end:
                    continue
                taken = m.offset + 1
                if m.offset >= held_end:
                    if held:
                        yield held
                    held = []
                    held_end = start + ((m.offset - start) // chunk + 1) * chunk
                held.append(m)
    if held:
        yield held


def iter_replay(
    settings: RuntimeSettings,
    snapshot: str | Path,
    topic: str,
    partition: int,
    start: int,
    end: int,
    *,
    embedder: Embedder | None = None,
    consumer: Consumer | None = None,
) -> Iterator[LabelRecord]:
    """Labels ``topic:partition`` offsets ``[start, end)`` with the snapshot's store,
    yielding the labels chunk by chunk in offset order.

    Records that do not decode are skipped (live, they went to the DLQ).

    Args:
        consumer: reads the range (assigned here, closed at the end); a new one
            from ``kafka.*`` when None, built at the first label asked for.

    Raises:
        SnapshotError: the snapshot is missing or unreadable (at the call, before
            any record is read).
        StreamlabelError: the range cannot be read (while iterating).
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
    chunk = settings.worker.batch_size

    def labels() -> Iterator[LabelRecord]:
        reader = consumer or make_consumer(settings.kafka, group_id=None, max_poll_records=chunk)
        try:
            for records in read_chunks(reader, topic, partition, start, end, chunk):
                out = engine.process([to_raw(m) for m in records])
                yield from sorted(out.labels, key=_offset)
        finally:
            reader.close()

    return labels()


def replay(
    settings: RuntimeSettings,
    snapshot: str | Path,
    topic: str,
    partition: int,
    start: int,
    end: int,
    *,
    embedder: Embedder | None = None,
    consumer: Consumer | None = None,
) -> list[LabelRecord]:
    """Every label of :func:`iter_replay`, in offset order, in one list (to compare two
    replays; ``streamlabel replay`` streams them instead)."""
    return list(iter_replay(settings, snapshot, topic, partition, start, end,
                            embedder=embedder, consumer=consumer))  # fmt: skip


def _offset(record: LabelRecord) -> int:
    return record.source.offset if record.source else -1
