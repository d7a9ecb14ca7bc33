"""The learner's checkpoint and restart on fake Kafka clients (no broker, no Ray).

* a snapshot that is corrupt, not a map, or of another format is not trusted
  (:class:`SnapshotError`): the previous snapshot is used, else the changelog,
  with a critical alert; snapshots are fsynced; a full disk is not fatal (nothing
  is committed until a snapshot is written); two learners cannot share a state
  directory;
* a snapshot is due after enough records or enough time, never without records;
* a crash after the snapshot and before the outbox was marked published: the
  restarted learner republishes the outbox exactly once (a second restart does not);
* a restored learner seeks its partitions to the snapshot's offsets when assigned;
* a broker reset generation is handled once: inputs read again from their
  beginning, every class re-published, one alert.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgpack
import pytest
from kafka.structs import TopicPartition

from streamlabel.errors import SnapshotError, StreamlabelError
from streamlabel.kafka.topics import Topics
from streamlabel.schemas import ClassEvent, DriftAlert, Feedback, decode, encode
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import HashEmbedder, ManualClock
from streamlabel.testing.kafka import FakeChangelog, FakeConsumer, FakePublisher, consumed
from streamlabel.workers.checkpoint import SNAPSHOT_FORMAT, Checkpoint, read_snapshot
from streamlabel.workers.learner import Learner

TOPICS = Topics("t.")
FEEDBACK = TopicPartition(TOPICS.feedback, 0)


def feedback(offset: int, text: str, label: str) -> Any:
    return consumed(TOPICS.feedback, 0, offset, encode(Feedback(text=text, label=label)))


class CrashError(Exception):
    """Stands for the process dying at a step point."""


class CrashAt:
    """A probe that 'kills' the learner at one step point."""

    def __init__(self, point: str) -> None:
        self.point = point

    def hit(self, point: str, note: Any = None) -> None:
        if point == self.point:
            raise CrashError(point)


class Rig:
    """A learner over fakes, its snapshot under ``state_dir``."""

    def __init__(
        self, state_dir: Path, *, polls: list[Any] = (), broker_generation: int = 0, **kw: Any
    ) -> None:
        settings = load_runtime_settings(
            None,
            kafka={"topic_prefix": "t."},
            learner={"state_dir": str(state_dir)},
            logging={"level": "warning"},
            metrics={"enabled": False},
        )
        self.consumer = FakeConsumer({FEEDBACK}, polls=list(polls))
        self.publisher = FakePublisher(TOPICS)
        self.changelog = FakeChangelog(**kw)
        self.learner = Learner(
            settings,
            embedder=HashEmbedder(dim=32),
            broker_generation=broker_generation,
            consumer=self.consumer,
            publisher=self.publisher,
            changelog=self.changelog,
        )

    def start(self) -> Learner:
        assert self.learner.ready()
        return self.learner

    def class_events(self) -> list[ClassEvent]:
        return [decode(r[2], ClassEvent) for r in self.publisher.on("classes")]


# ---------------------------------------------------------- the snapshot file
def test_no_snapshot_file_means_nothing_to_restore(tmp_path: Path) -> None:
    assert read_snapshot(tmp_path / "none.snapshot") is None
    assert Checkpoint(tmp_path / "none.snapshot").restore() == (None, [])


def test_a_corrupt_snapshot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "learner.snapshot"
    path.write_bytes(b"\xc1 not msgpack")
    with pytest.raises(SnapshotError, match="is corrupt"):
        read_snapshot(path)


@pytest.mark.parametrize(
    ("content", "found"),
    [({"format": SNAPSHOT_FORMAT - 1, "seq": 3}, "1"), ({"seq": 3}, "None"), ([1, 2], "'list'")],
    ids=["older-format", "no-format", "not-a-map"],
)
def test_a_snapshot_of_another_format_is_not_trusted(
    tmp_path: Path, content: Any, found: str
) -> None:
    path = tmp_path / "learner.snapshot"
    path.write_bytes(msgpack.packb(content))
    with pytest.raises(SnapshotError, match=f"has format {found}"):
        read_snapshot(path)
    checkpoint = Checkpoint(path)
    assert checkpoint.restore() == (None, [])
    assert len(checkpoint.skipped) == 1
    assert f"has format {found}" in checkpoint.skipped[0]


def test_an_unusable_snapshot_falls_back_to_the_one_before(tmp_path: Path) -> None:
    c = Checkpoint(tmp_path / "l.snapshot")
    c.write({"state": 1}, {"t.feedback:0": 3}, 0, [])
    c.write({"state": 2}, {"t.feedback:0": 9}, 0, [])
    assert c.previous.exists()
    c.path.write_bytes(b"\x00garbage")  # the newest is torn
    snap, _ = (restored := Checkpoint(c.path)).restore()
    assert snap is not None
    assert (snap.seq, snap.engine, snap.offsets) == (1, {"state": 1}, {"t.feedback:0": 3})
    assert len(restored.skipped) == 1
    assert "is corrupt" in restored.skipped[0]


def test_a_learner_on_a_corrupt_snapshot_starts_from_the_changelog_with_an_alert(
    tmp_path: Path,
) -> None:
    first = Rig(tmp_path, polls=[{FEEDBACK: [feedback(0, "python list dict", "python")]}])
    first.start().step()
    first.learner.close()
    events = first.class_events()
    first.learner.path.write_bytes(b"\x00garbage")
    first.learner.checkpoint.previous.unlink(missing_ok=True)

    rig = Rig(tmp_path, events=events)
    stats = rig.start().stats()
    assert (stats["restored_from"], stats["snapshots_skipped"]) == ("changelog", 1)
    assert stats["classes"] == 1
    alerts = [decode(r[2], DriftAlert) for r in rig.publisher.on("alerts")]
    assert [(a.kind, a.severity) for a in alerts] == [("snapshot_fallback", "critical")]
    assert "is corrupt" in alerts[0].detail


def test_a_snapshot_is_written_durably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    Checkpoint(tmp_path / "l.snapshot").write({}, {}, 0, [])
    assert len(synced) >= 2  # the file, then its directory


def test_a_snapshot_the_disk_refuses_is_not_fatal_and_nothing_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(tmp_path, polls=[{FEEDBACK: [feedback(0, "python list dict", "python")]}])
    learner = rig.start()

    def full(*args: Any, **kwargs: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(learner.checkpoint, "write", full)
    assert learner.step() == 1  # the step completes
    stats = learner.stats()
    assert stats["snapshot_failures"] == 1
    assert [e.class_id for e in rig.class_events()] == ["python"]  # published anyway
    assert rig.consumer.commit_history() == []  # a restart reads the feedback again


def test_two_learners_cannot_share_a_state_directory(tmp_path: Path) -> None:
    first = Rig(tmp_path)
    first.start()
    second = Rig(tmp_path)
    with pytest.raises(StreamlabelError, match="another learner holds"):
        second.start()
    first.learner.close()  # released on close (and when the process dies)
    assert second.start().stats()["running"] is False


def test_a_snapshot_round_trips_with_its_outbox_until_marked_published(tmp_path: Path) -> None:
    outbox = [("t.classes", b"python", b"\x01", [("learner.offsets", b"{}")])]
    first = Checkpoint(tmp_path / "l.snapshot")
    assert first.write({"k": 1}, {"t.feedback:0": 7}, 2, outbox) == 1
    snap, pending = Checkpoint(tmp_path / "l.snapshot").restore()
    assert snap is not None
    assert (snap.seq, snap.engine, snap.offsets, snap.broker_generation) == (
        1, {"k": 1}, {"t.feedback:0": 7}, 2,
    )  # fmt: skip
    assert pending == outbox == snap.outbox
    first.mark_published()
    again = Checkpoint(tmp_path / "l.snapshot")
    assert again.restore()[1] == []
    assert again.published_seq() == again.seq == 1


def test_a_snapshot_is_due_after_enough_records_or_time_never_without_records(
    tmp_path: Path,
) -> None:
    clock = ManualClock(0.0)
    c = Checkpoint(tmp_path / "l.snapshot", every_s=30.0, every_records=100, clock=clock)
    clock.advance(3600)
    assert not c.due()  # nothing consumed: nothing to write
    c.count(1)
    assert c.due()  # an hour since the last one
    c.write({}, {}, 0, [])
    c.count(99)
    assert not c.due()
    c.count(1)
    assert c.due()  # 100 records
    c.write({}, {}, 0, [])
    c.count(1)
    clock.advance(29.9)
    assert not c.due()
    clock.advance(0.1)
    assert c.due()


# ------------------------------------------------------------- the learner
def test_an_outbox_not_marked_published_is_republished_exactly_once(tmp_path: Path) -> None:
    crashed = Rig(tmp_path, polls=[{FEEDBACK: [feedback(0, "python list dict", "python")]}])
    learner = crashed.start()
    learner.probe = CrashAt("after_snapshot")  # checkpoint written, nothing published
    with pytest.raises(CrashError):
        learner.step()
    learner.checkpoint.unlock()  # the process died: the OS drops its lock
    assert crashed.publisher.sent == []
    snap = read_snapshot(learner.path)
    assert snap is not None
    assert len(snap["outbox"]) == 1

    restarted = Rig(tmp_path)
    stats = restarted.start().stats()
    assert (stats["restored_from"], stats["republished"]) == ("snapshot", 1)
    outbox = [(t, k, bytes(v), [tuple(h) for h in hs]) for t, k, v, hs in snap["outbox"]]
    assert restarted.publisher.delivered[0] == outbox  # first, the outbox as it was written
    sent = [r for batch in restarted.publisher.sent for r in batch]
    assert sent.count(outbox[0]) == 1  # once
    # then the changelog (which never got the event) is reconciled with the store
    assert stats["reconciled"] == 1
    first = restarted.class_events()[0]
    assert (first.class_id, first.kind) == ("python", "created")
    restarted.learner.close()

    again = Rig(tmp_path, events=restarted.class_events())  # what the changelog now holds
    assert again.start().stats()["republished"] == 0  # marked published: not sent twice
    assert again.publisher.sent == []


def test_a_restored_learner_seeks_its_partitions_to_the_snapshots_offsets(
    tmp_path: Path,
) -> None:
    first = Rig(tmp_path, polls=[{FEEDBACK: [feedback(41, "python list dict", "python")]}])
    first.start().step()
    assert first.consumer.commit_history() == [{FEEDBACK: 42}]
    first.learner.close()
    restarted = Rig(tmp_path)
    restarted.start()
    assert restarted.consumer.subscribed == [TOPICS.feedback, TOPICS.unknowns, TOPICS.commands]
    restarted.consumer.rebalance(assigned={FEEDBACK})
    assert restarted.consumer.seeks == {FEEDBACK: 42}


def test_a_broker_reset_generation_is_handled_once(tmp_path: Path) -> None:
    rig = Rig(
        tmp_path,
        polls=[{FEEDBACK: [feedback(0, "python list dict", "python")]}],
        broker_generation=1,
    )
    learner = rig.start()
    learner.step()
    learner.broker_reset(1)  # the reset this learner was created after
    learner.step()
    assert rig.consumer.rewound == []
    learner.broker_reset(2)
    learner.step()
    assert rig.consumer.rewound == [FEEDBACK]  # inputs read again from the new topics
    assert [e.cause for e in rig.class_events()][-1] == "broker_reset"  # every class again
    assert len(rig.publisher.on("alerts")) == 1
    learner.broker_reset(2)  # told twice: the inputs are not read from the start again
    learner.step()
    assert rig.consumer.rewound == [FEEDBACK]
    assert learner.stats()["broker_resets"] == 1
