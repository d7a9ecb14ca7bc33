"""The distributed runtime end to end: real tansu, local Ray, the real MiniLM.

One deployment (2 stream workers + the learner) serves the tests of this
module in order, like a user's session: teach classes, stream, send poison,
shift the stream, hold a class back until discovery finds it.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import msgpack
import pytest

from streamlabel.datasets import read_tsv
from streamlabel.kafka.client import LabelCollector, TopicReader, produce_feedback, produce_items
from streamlabel.kafka.publisher import Publisher
from streamlabel.runtime.supervisor import Runtime
from streamlabel.schemas import DriftAlert, Feedback, Item, encode
from streamlabel.testing import wait_until

TAUGHT = ["wordpress", "oracle", "excel", "qt", "haskell"]
HELD_BACK = "svn"
REPO = Path(__file__).resolve().parents[2] / "data"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployment(make_runtime_settings, local_ray, tmp_path_factory):
    # Discovery runs only when a test asks (run_every is high): the drift test then
    # sees one regime change, not the extra one of the system learning the new domain.
    settings = make_runtime_settings(
        tmp_path_factory.mktemp("state"),
        supervisor={"workers": 2},
        worker={"batch_size": 32},
        limits={"max_text_chars": 2000},
        discovery={"run_every": 1000, "min_cluster_size": 15, "min_samples": 5},
    )
    with Runtime(settings) as rt:
        yield rt


@pytest.fixture(scope="module")
def collector(deployment):
    c = LabelCollector(deployment.settings.kafka)
    yield c
    c.close()


def _items(so_test, classes, n, prefix):
    picked = [(t, y) for t, y in zip(so_test.texts, so_test.labels, strict=True) if y in classes][
        :n
    ]
    return [Item(id=f"{prefix}-{i}", text=t) for i, (t, _) in enumerate(picked)], [
        y for _, y in picked
    ]


def test_feedback_creates_classes_that_every_worker_uses(deployment, so_test):
    """A label never seen before becomes a class; every replica applies it within seconds."""
    train = read_tsv(REPO / "stackoverflow" / "train.tsv")
    feedback = [
        Feedback(text=t, label=y)
        for t, y in zip(train.texts, train.labels, strict=True)
        if y in TAUGHT
    ]
    feedback = [f for c in TAUGHT for f in [x for x in feedback if x.label == c][:40]]
    t0 = time.monotonic()
    produce_feedback(deployment.settings.kafka, feedback)
    version = deployment.wait_until_learned(len(feedback), timeout_s=120)
    elapsed = time.monotonic() - t0
    progress = deployment.progress()
    assert progress.classes == len(TAUGHT)
    assert len(progress.workers) == 2
    for w in progress.workers:
        assert w["store_version"] >= version
        assert w["classes"] == len(TAUGHT)
    assert elapsed < 120


def test_every_item_gets_exactly_one_first_label_and_both_workers_share_the_work(
    deployment, collector, so_test
):
    """400 items: one revision-0 label each, keyed by item id, labelled by both workers."""
    items, truth = _items(so_test, TAUGHT, 400, "stationary")
    produce_items(deployment.settings.kafka, items)
    ids = {i.id for i in items}
    assert collector.wait_for(ids, timeout_s=180), "not every item was labelled"
    collector.drain(quiet_s=2.0)
    assert all(collector.first_counts[i] == 1 for i in ids)
    workers = deployment.progress().workers
    assigned = [set(w["assigned"]) for w in workers]
    assert all(assigned)
    assert not (assigned[0] & assigned[1])
    assert len(assigned[0] | assigned[1]) == deployment.settings.kafka.partitions
    assert all(w["items"] > 0 for w in workers)
    first = [collector.first[i.id] for i in items]
    assert all(r.source is not None and r.store_version > 0 for r in first)
    correct = sum(r.label == y for r, y in zip(first, truth, strict=True))
    assert correct / len(items) > 0.6  # taught classes are recognised (the model is real)


def test_poison_input_goes_to_the_dlq_with_its_offset_and_the_stream_goes_on(
    deployment, collector, so_test
):
    """Each kind of bad record lands in the DLQ with source offset and reason; later items flow."""
    kafka = deployment.settings.kafka
    topics = deployment.topics
    wrong_version = msgpack.packb({"v": 99, "t": "item", "d": {"id": "x", "text": "hi"}})
    missing = msgpack.packb({"v": 1, "t": "item", "d": {"text": "no id"}})
    wrong_dim = encode(Item(id="poison-dim", vector=[0.1] * 7))
    too_long = encode(Item(id="poison-long", text="word " * 1000))
    poison = {
        b"not-msgpack": b"\xc1\xc1 definitely not msgpack",
        b"empty": b"",
        b"wrong-version": wrong_version,
        b"missing-id": missing,
        b"wrong-dim": wrong_dim,
        b"too-long": too_long,
    }
    expected = {
        b"not-msgpack": "not_msgpack",
        b"empty": "empty",
        b"wrong-version": "schema_version",
        b"missing-id": "invalid",
        b"wrong-dim": "bad_vector",
        b"too-long": "oversized",
    }
    publisher = Publisher(kafka, topics)
    for key, value in poison.items():
        publisher.send(topics.items, key, value)
    publisher.flush()
    publisher.close()
    after, _ = _items(so_test, TAUGHT, 50, "after-poison")
    produce_items(kafka, after)
    assert collector.wait_for({i.id for i in after}, timeout_s=120)
    reader = TopicReader(kafka, "dlq")
    letters = {}
    wait_until(lambda: letters.update({m.key: m for m in reader.poll(500)}) or len(letters) >= 6,
          60, "dead letters")  # fmt: skip
    reader.close()
    by_reason = {}
    for m in letters.values():
        headers = dict(m.headers)
        assert headers["source.topic"].decode() == topics.items
        assert int(headers["source.offset"]) >= 0
        assert m.key.decode() == (
            f"{topics.items}:{int(headers['source.partition'])}:{int(headers['source.offset'])}"
        )
        by_reason[headers["error.reason"].decode()] = m.value
    assert set(expected.values()) <= set(by_reason)
    for key, reason in expected.items():
        assert by_reason[reason] == poison[key]  # the raw bytes, unchanged


def test_an_injected_shift_raises_an_alert_and_no_storm(deployment, collector, so_test):
    """A stream that moves to another domain (SNIPS intents) raises one incident: every
    detector's signal opens or updates it, all under one incident id."""
    snips = read_tsv(REPO / "snips" / "test.tsv")
    shifted = [Item(id=f"shift-{i}", text=t) for i, t in enumerate(snips.texts[:500])]
    produce_items(deployment.settings.kafka, shifted)
    assert collector.wait_for({i.id for i in shifted}, timeout_s=180)
    reader = TopicReader(deployment.settings.kafka, "alerts")
    alerts: list[DriftAlert] = []
    wait_until(lambda: alerts.extend(reader.records(500)) or any(a.at_item >= 400 for a in alerts),
          60, "a drift alert after the shift")  # fmt: skip
    reader.close()
    stationary = [a for a in alerts if a.at_item < 400]
    assert stationary == [], f"alerts during the stationary stream: {stationary}"
    assert alerts, "no alert after the shift"
    incidents = Counter(a.incident_id for a in alerts)
    assert len(incidents) == 1, f"one shift, several incidents: {incidents}"
    assert sorted(a.incident_update for a in alerts) == list(range(len(alerts)))


def test_a_held_back_class_is_discovered_and_announced_with_a_name(deployment, collector, so_test):
    """Items of a never-taught class are unknown first, then a named class revises them."""
    items, _ = _items(so_test, {HELD_BACK}, 150, "novel")
    produce_items(deployment.settings.kafka, items)
    ids = {i.id for i in items}
    assert collector.wait_for(ids, timeout_s=120)
    unknown_first = sum(collector.first[i].is_unknown for i in ids)
    assert unknown_first / len(ids) > 0.7
    deployment.finish_discovery(runs=2, timeout_s=120)
    classes = deployment.call_learner("classes")
    found = [c for c in classes if c["origin"] == "discovery"]
    assert found, "no class discovered"
    svn = [c for c in found if "svn" in c["name"] or "subversion" in c["name"]]
    assert svn, f"no discovered class named after svn: {[c['name'] for c in found]}"
    reader = TopicReader(deployment.settings.kafka, "classes")
    events = []
    wait_until(lambda: events.extend(reader.records(500)) or any(
        e.class_id == svn[0]["class_id"] for e in events), 30, "the class event")  # fmt: skip
    reader.close()
    collector.drain(quiet_s=2.0)
    revised = [collector.final[i] for i in ids if collector.final[i].revision > 0]
    assert sum(r.label == svn[0]["class_id"] for r in revised) >= len(ids) // 2
    assert all(r.is_novel for r in revised if r.label == svn[0]["class_id"])
