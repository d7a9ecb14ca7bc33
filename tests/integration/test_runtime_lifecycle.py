"""Lifecycle of the runtime: graceful SIGTERM, actor restarts, learner recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamlabel.datasets import read_tsv
from streamlabel.kafka.client import LabelCollector, produce_feedback, produce_items
from streamlabel.kafka.topics import ensure_topics
from streamlabel.runtime.slots import SlotState
from streamlabel.runtime.supervisor import Runtime
from streamlabel.schemas import Feedback, Item
from streamlabel.testing import wait_until

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_sigterm_finishes_the_batch_and_leaves_nothing_processed_uncommitted(
    runtime_settings, so_test, tmp_path
):
    """`streamlabel run` gets SIGTERM mid-stream: exit 0, and per partition the committed
    offset is exactly one past the last labelled offset (no processed batch uncommitted)."""
    from kafka import KafkaAdminClient

    settings = runtime_settings()
    kafka = settings.kafka
    ensure_topics(kafka)
    items = [Item(id=f"s-{i}", text=t) for i, t in enumerate(so_test.texts[:3000])]
    produce_items(kafka, items)
    env = {
        **os.environ,
        "STREAMLABEL_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers or "",
        "STREAMLABEL_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "STREAMLABEL_KAFKA__GROUP_ID": kafka.group_id,
        "STREAMLABEL_LEARNER__STATE_DIR": str(tmp_path / "state"),
        "STREAMLABEL_WORKER__BATCH_SIZE": "32",
        "STREAMLABEL_RAY__NUM_CPUS": "4",
    }
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlabel.cli", "run", "--workers", "1", "--progress-every", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    collector = LabelCollector(kafka)
    try:
        wait_until(lambda: collector.poll() >= 0 and len(collector.first) >= 200, 240, "labels")
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    collector.drain(quiet_s=2.0)
    collector.close()
    assert len(collector.first) < len(items), "stopped too late to test a mid-stream stop"
    admin = KafkaAdminClient(**kafka.client_kwargs())
    committed = {
        tp.partition: om.offset
        for tp, om in admin.list_group_offsets(kafka.group_id)[kafka.group_id].items()
    }
    admin.close()
    labelled: dict[int, list[int]] = {}
    for r in collector.first.values():
        assert r.source is not None
        labelled.setdefault(r.source.partition, []).append(r.source.offset)
    assert labelled
    for partition, offsets in labelled.items():
        assert committed.get(partition) == max(offsets) + 1, (partition, committed, max(offsets))
        assert sorted(offsets) == list(range(max(offsets) + 1))  # no gaps before it
    for partition, offset in committed.items():  # nothing committed that was not labelled
        assert offset == 0 or offset == max(labelled.get(partition, [-1])) + 1


@pytest.fixture(scope="module")
def small_runtime(make_runtime_settings, local_ray, tmp_path_factory):
    settings = make_runtime_settings(
        tmp_path_factory.mktemp("state"),
        supervisor={"workers": 1},
        worker={"batch_size": 32},
        learner={"snapshot_every_s": 3600},
        discovery={"run_every": 100000},
    )
    with Runtime(settings) as rt:
        yield rt


def test_a_killed_worker_is_restarted_and_the_stream_completes(small_runtime, so_test):
    """kill -9 of a stream worker: the supervisor restarts it; every item still gets a label."""
    import ray

    rt = small_runtime
    kafka = rt.settings.kafka
    items = [Item(id=f"k-{i}", text=t) for i, t in enumerate(so_test.texts[:300])]
    collector = LabelCollector(kafka)
    produce_items(kafka, items[:150])
    wait_until(lambda: collector.poll() >= 0 and len(collector.first) >= 50, 120, "first labels")
    ray.kill(rt.workers[0].handle, no_restart=True)
    produce_items(kafka, items[150:])
    deadline = time.monotonic() + 240
    ids = {i.id for i in items}
    while not ids <= collector.first.keys():
        rt.check()
        collector.poll()
        assert time.monotonic() < deadline, f"{len(ids - collector.first.keys())} unlabelled"
    assert rt.workers[0].restarts == 1
    collector.close()


def test_the_learner_recovers_from_its_snapshot_and_replays_the_rest(small_runtime, so_test):
    """Learner killed after a snapshot: the new one restores classes and buffer, then
    replays the unknowns published after the snapshot (nothing lost, nothing doubled)."""
    import ray

    rt = small_runtime
    kafka = rt.settings.kafka
    train = read_tsv(REPO / "data" / "stackoverflow" / "train.tsv")
    taught = ("oracle", "excel")
    feedback = [Feedback(text=t, label=y) for t, y in zip(train.texts, train.labels, strict=True)
                if y in taught][:60]  # fmt: skip
    produce_feedback(kafka, feedback)
    rt.wait_until_learned(len(feedback))
    novel = [t for t, y in zip(so_test.texts, so_test.labels, strict=True) if y == "haskell"]
    before = [Item(id=f"h-{i}", text=t) for i, t in enumerate(novel[:80])]
    after = [Item(id=f"h2-{i}", text=t) for i, t in enumerate(novel[80:140])]
    collector = LabelCollector(kafka)
    produce_items(kafka, before)
    assert collector.wait_for({i.id for i in before}, 120)
    assert rt.settle(60)
    buffered_before = rt.progress().learner["buffered"]
    assert buffered_before >= 60
    assert rt.call_learner("request_snapshot") >= 1
    classes_before = {c["class_id"] for c in rt.call_learner("classes")}
    ray.kill(rt.learner.handle, no_restart=True)
    produce_items(kafka, after)  # published while the learner is down
    assert collector.wait_for({i.id for i in after}, 120)
    # a relaunch runs in the background: restarted, then running again (ready)
    wait_until(
        lambda: rt.check() is not None and rt.learner.restarts == 1
        and rt.learner.state is SlotState.RUNNING, 120, "the restart",
    )  # fmt: skip
    learner = rt.progress().learner
    assert learner["restored_from"] == "snapshot"
    assert learner["reconciled"] == 0  # the changelog already held the snapshot's classes
    assert {c["class_id"] for c in rt.call_learner("classes")} == classes_before
    unknown_after = sum(collector.first[i.id].is_unknown for i in after)
    wait_until(lambda: rt.progress().learner["buffered"] >= buffered_before + unknown_after, 60,
          "the replayed unknowns")  # fmt: skip
    assert rt.progress().learner["buffered"] == buffered_before + unknown_after
    collector.close()
