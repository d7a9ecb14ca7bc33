"""``streamlabel replay`` streams its range (``runtime.replay``), without a broker.

* the labels are those of the whole range cut into ``worker.batch_size``
  chunks aligned on ``start`` (what replay computed when it read the range
  first), however the broker batches its answers and with gaps in the offsets;
* at most one chunk is read ahead of the labels handed on, each poll asks for
  at most one chunk, and the consumer is closed at the end;
* a missing snapshot fails at the call, before any record is read; a range the
  consumer cannot reach fails once its position stops moving.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from streamlabel.errors import SnapshotError, StreamlabelError
from streamlabel.kafka.io import to_raw
from streamlabel.pipeline.engine import Engine
from streamlabel.schemas import Feedback, Item, LabelRecord, encode
from streamlabel.settings.engine import DriftSettings
from streamlabel.settings.runtime import RuntimeSettings, load_runtime_settings
from streamlabel.testing import HashEmbedder, ManualClock
from streamlabel.testing.kafka import consumed
from streamlabel.workers.checkpoint import Checkpoint

with warnings.catch_warnings():  # kafka-python loads its protocol files with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    from streamlabel.runtime.replay import iter_replay, read_chunks, replay

TOPIC = "t.items"
CHUNK = 8
TEXTS = {
    "python": "python list dict pandas numpy pip",
    "java": "java jvm spring maven gradle jar",
}


class LogConsumer:
    """One partition's log in memory: ``poll`` returns the next records from the
    position (at most ``max_records`` and ``per_poll``) and moves the position."""

    def __init__(self, records: list[Any], end: int, per_poll: int = 1000) -> None:
        self.records = records
        self.end = end  # the high watermark
        self.per_poll = per_poll
        self.pos = 0
        self.delivered = -1  # the highest offset handed out
        self.asked: list[int | None] = []
        self.closed = False

    def assign(self, partitions: Any) -> None:
        (self.tp,) = partitions

    def seek(self, partition: Any, offset: int) -> None:
        self.pos = offset

    def position(self, partition: Any) -> int:
        return self.pos

    def highwater(self, partition: Any) -> int:
        return self.end

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        self.asked.append(max_records)
        n = min(self.per_poll, max_records or self.per_poll)
        out = [r for r in self.records if r.offset >= self.pos][:n]
        if out:
            self.pos = out[-1].offset + 1
            self.delivered = max(self.delivered, out[-1].offset)
        else:
            self.pos = max(self.pos, self.end)  # past a trailing gap, up to the watermark
        return {self.tp: out} if out else {}

    def close(self, autocommit: bool = True) -> None:
        self.closed = True


def log(n: int = 60, gaps: tuple[int, ...] = (5, 6, 17, 30, 31, 32)) -> list[Any]:
    """``n`` offsets of items (python, java, and one undecodable) with some offsets
    missing (a compacted topic, transaction markers)."""
    out = []
    for o in range(n):
        if o in gaps:
            continue
        topic = "python" if o % 3 else "java"
        value = b"\xc1junk" if o == 40 else encode(Item(id=f"i{o}", text=f"{TEXTS[topic]} {o}"))
        out.append(consumed(TOPIC, 0, o, value, key=f"i{o}".encode()))
    return out


@pytest.fixture
def settings() -> RuntimeSettings:
    return load_runtime_settings(
        kafka={"topic_prefix": "t."}, worker={"batch_size": CHUNK}, logging={"level": "warning"}
    )


@pytest.fixture
def snapshot(tmp_path: Path, settings: RuntimeSettings) -> Path:
    """A learner snapshot whose store knows python and java."""
    engine = Engine(settings, HashEmbedder(), clock=ManualClock(0.0))
    engine.learn([Feedback(text=f"{t} {i}", label=k) for k, t in TEXTS.items() for i in range(5)])
    path = tmp_path / "learner.snapshot"
    Checkpoint(path).write(engine.state(), {}, 0, [])
    return path


def reference(
    settings: RuntimeSettings, snapshot: Path, records: list[Any], start: int, end: int
) -> list[LabelRecord]:
    """What replay returned when it read the whole range first: sort, cut, label."""
    from streamlabel.workers.checkpoint import read_snapshot

    pinned = settings.model_copy(
        update={
            "discovery": settings.discovery.model_copy(update={"enabled": False}),
            "drift": DriftSettings(enabled=False),
        }
    )
    engine = Engine(pinned, HashEmbedder())
    snap = read_snapshot(snapshot)
    assert snap is not None
    engine.load_state(snap["engine"])
    inside = sorted((m for m in records if start <= m.offset < end), key=lambda m: m.offset)
    labels: list[LabelRecord] = []
    for lo in range(start, end, CHUNK):
        batch = [to_raw(m) for m in inside if lo <= m.offset < lo + CHUNK]
        if batch:
            labels.extend(engine.process(batch).labels)
    return sorted(labels, key=lambda r: r.source.offset if r.source else -1)


def key(r: LabelRecord) -> tuple[Any, ...]:
    return (r.item_id, r.label, round(r.score, 6), r.store_version, r.source)


@pytest.mark.parametrize("per_poll", [1, 3, CHUNK, 1000])
@pytest.mark.parametrize(("start", "end"), [(0, 60), (3, 45), (10, 11), (5, 7)])
def test_the_streamed_labels_are_those_of_the_whole_range_in_aligned_chunks(
    settings: RuntimeSettings, snapshot: Path, per_poll: int, start: int, end: int
) -> None:
    records = log()
    consumer = LogConsumer(records, end=60, per_poll=per_poll)
    got = replay(settings, snapshot, TOPIC, 0, start, end, embedder=HashEmbedder(),
                 consumer=consumer)  # fmt: skip
    want = reference(settings, snapshot, records, start, end)
    assert [key(r) for r in got] == [key(r) for r in want]
    assert all(start <= r.source.offset < end for r in got if r.source)
    assert consumer.closed


def test_at_most_one_chunk_is_read_ahead_of_the_labels(
    settings: RuntimeSettings, snapshot: Path
) -> None:
    consumer = LogConsumer(log(200, gaps=()), end=200)
    labels = iter_replay(settings, snapshot, TOPIC, 0, 0, 200, embedder=HashEmbedder(),
                         consumer=consumer)  # fmt: skip
    seen = 0
    for r in labels:
        assert r.source is not None
        chunk_start = r.source.offset // CHUNK * CHUNK
        # the chunk being handed on, and at most one poll (<= one chunk) past it
        assert consumer.delivered < chunk_start + 2 * CHUNK, (r.source.offset, consumer.delivered)
        seen += 1
    assert seen == 199  # offset 40 does not decode
    assert set(consumer.asked) == {CHUNK}
    assert consumer.closed


def test_a_consumer_stopped_early_is_closed(settings: RuntimeSettings, snapshot: Path) -> None:
    consumer = LogConsumer(log(), end=60)
    labels = iter_replay(settings, snapshot, TOPIC, 0, 0, 60, embedder=HashEmbedder(),
                         consumer=consumer)  # fmt: skip
    next(labels)
    labels.close()
    assert consumer.closed


def test_a_missing_snapshot_fails_at_the_call_before_reading(
    settings: RuntimeSettings, tmp_path: Path
) -> None:
    consumer = LogConsumer(log(), end=60)
    with pytest.raises(SnapshotError, match="no snapshot"):
        iter_replay(settings, tmp_path / "none", TOPIC, 0, 0, 60, embedder=HashEmbedder(),
                    consumer=consumer)  # fmt: skip
    assert consumer.asked == []


def test_an_empty_range_reads_nothing(settings: RuntimeSettings, snapshot: Path) -> None:
    consumer = LogConsumer(log(), end=60)
    assert replay(settings, snapshot, TOPIC, 0, 9, 9, embedder=HashEmbedder(),
                  consumer=consumer) == []  # fmt: skip
    assert consumer.asked == []


def test_a_range_past_the_end_fails_once_the_position_stops_moving() -> None:
    consumer = LogConsumer(log(20, gaps=()), end=20)
    with pytest.raises(StreamlabelError, match=r"offsets 0\.\.29 \(stopped at 20, high watermark"):
        list(read_chunks(consumer, TOPIC, 0, 0, 30, CHUNK, timeout_s=0.3))
