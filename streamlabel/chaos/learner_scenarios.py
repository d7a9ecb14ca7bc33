"""Chaos scenarios on the learner's side: its inputs, its snapshot, its uniqueness.

* ``learner_poison``: bad records on ``feedback`` and ``unknowns`` while items
  flow (two 600 KB feedback texts, wrong dimensions, undecodable bytes): the
  learner lives, each lands in the DLQ with its offset and reason, feedback
  after them is learned, every item is labelled.
* ``corrupt_snapshot``: the learner's snapshots are overwritten with garbage
  and the learner is killed: it comes back from the changelog with a critical
  ``snapshot_fallback`` alert, its classes intact, nothing lost.
* ``two_learners``: a second learner on the same state directory is refused at
  start; the first keeps learning.
* ``feedback_by_id``: feedback naming items by id, sent right after the items
  at full speed (before the learner can have seen them): every one resolves.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import numpy as np

from streamlabel.chaos.harness import Harness
from streamlabel.chaos.ledger import Ledger, Verdict
from streamlabel.errors import StreamlabelError
from streamlabel.kafka.client import produce_feedback
from streamlabel.runtime.slots import SlotState
from streamlabel.schemas import Feedback, UnknownRecord, encode
from streamlabel.waiting import wait_until
from streamlabel.workers.checkpoint import snapshot_path

__all__ = ["corrupt_snapshot", "feedback_by_id", "learner_poison", "two_learners"]


def _learned(h: Harness, label: str, n: int, timeout_s: float = 180.0) -> bool:
    def done() -> bool:
        h.pump()
        return h.class_count(label) == n

    try:
        wait_until(done, timeout_s=timeout_s, interval_s=0.5, what=f"{label} learned")
    except StreamlabelError:
        return False
    return True


def _dead_letters(h: Harness) -> set[tuple[str, int, int, str]]:
    """(source topic, partition, offset, reason) of every record on the DLQ so far."""
    found: set[tuple[str, int, int, str]] = set()
    for m in h.read_topic("dlq", raw=True):
        hd = {k: v.decode() for k, v in (m.headers or [])}
        where = (int(hd.get("source.partition", -1)), int(hd.get("source.offset", -1)))
        found.add((hd.get("source.topic", ""), *where, hd.get("error.reason", "")))
    return found


def learner_poison(h: Harness) -> Verdict:
    """Bad records on every learner input while items flow; nothing stops the learner."""
    ledger = Ledger("lpoison-")
    side = Ledger("lpoison-bad-")  # where each bad record landed
    topics = h.runtime.topics
    learner = h.runtime.learner
    assert learner is not None
    restarts = learner.restarts
    tiny = np.full(16, 0.25, np.float32)
    bad = {
        topics.feedback: [
            ("oversized", encode(Feedback(text="word " * 120_000, label="chaos-huge"))),
            ("oversized", encode(Feedback(text="term " * 120_000, label="chaos-huge"))),
            ("bad_vector", encode(Feedback(vector=tiny, label="chaos-tiny"))),
            ("not_msgpack", b"\xc1 not msgpack"),
        ],
        topics.unknowns: [
            ("bad_vector", encode(UnknownRecord(item_id="lpoison-u", text="x", vector=tiny,
                                                score=0.1, revision=0, store_version=0))),
            ("not_msgpack", b"\xc1\xc1"),
        ],
    }  # fmt: skip
    n = h.config.items_per_cycle
    h.produce_texts(ledger, n // 2)
    worker_restarts = sum(w.restarts for w in h.runtime.workers)
    # garbage and a tombstone on the changelog: every replica skips them and goes on
    h.produce(side, [(f"{side.prefix}classes-0", b"\xc1 garbage", True)], topic=topics.classes)
    h.produce(side, [(f"{side.prefix}classes-1", b"", True)], topic=topics.classes)
    expected: set[tuple[str, int, int, str]] = set()
    for topic, records in bad.items():
        for k, (reason, value) in enumerate(records):
            key = f"{side.prefix}{topic}-{k}"
            h.produce(side, [(key, value, True)], topic=topic)
            at = side.inputs[key]
            expected.add((topic, at.partition, at.offset, reason))
    after = [Feedback(text=t, label="chaos-after-poison", source="chaos") for t in h.texts(3)]
    produce_feedback(h.kafka, after)
    h.produce_texts(ledger, n - n // 2)
    h.wait_delivered(ledger)
    learned = _learned(h, "chaos-after-poison", len(after))
    h.runtime.settle()
    missing = sorted(expected - _dead_letters(h))
    workers_restarted = sum(w.restarts for w in h.runtime.workers) - worker_restarts
    v = h.verdict(
        "learner_poison", ledger, max_duplicates=0, bad_records=len(expected) + 2,
        worker_restarts=workers_restarted,
        not_dead_lettered=[list(m) for m in missing], learner_restarts=learner.restarts - restarts,
        learned_after_poison=learned, huge_class=h.class_count("chaos-huge"),
    )  # fmt: skip
    v.passed = (v.passed and not missing and learner.restarts == restarts and learned
                and h.class_count("chaos-huge") is None and workers_restarted == 0)  # fmt: skip
    return v


def corrupt_snapshot(h: Harness) -> Verdict:
    """Garbage in both snapshot files, then kill -9 of the learner."""
    ledger = Ledger("csnap-")
    learner = h.runtime.learner
    assert learner is not None
    before = [Feedback(text=t, label="chaos-before-corruption", source="chaos") for t in h.texts(4)]
    produce_feedback(h.kafka, before)
    learned_before = _learned(h, "chaos-before-corruption", len(before))
    h.runtime.settle()
    path = snapshot_path(h.runtime.settings)
    for p in (path, path.with_suffix(".prev")):
        if p.exists():
            p.write_bytes(b"\x00 torn by chaos")
    restarts = learner.restarts
    pid = h.runtime.call_learner("pid")
    os.kill(pid, signal.SIGKILL)
    h.mark_fault()
    h.produce_texts(ledger, h.config.items_per_cycle)

    def restarted() -> bool:
        h.pump()
        return learner.restarts > restarts and learner.state is SlotState.RUNNING

    wait_until(restarted, timeout_s=300, interval_s=0.5, what="learner restarted")
    h.wait_delivered(ledger)
    stats: dict[str, Any] = h.runtime.call_learner("stats")
    fallback = [a for a in h.read_topic("alerts") if a.kind == "snapshot_fallback"]
    kept = h.class_count("chaos-before-corruption")
    v = h.verdict(
        "corrupt_snapshot", ledger, max_duplicates=None, restored_from=stats["restored_from"],
        snapshots_skipped=stats["snapshots_skipped"], fallback_alerts=len(fallback),
        class_kept=kept, learned_before=learned_before,
    )  # fmt: skip
    v.passed = (v.passed and stats["restored_from"] == "changelog" and len(fallback) >= 1
                and kept == len(before))  # fmt: skip
    return v


def two_learners(h: Harness) -> Verdict:
    """A second learner on the same state directory is refused; the first goes on."""
    import ray

    ledger = Ledger("twol-")
    second: Any = (
        ray.remote(h.runtime.actors.learner).options(num_cpus=0).remote(h.runtime.settings)
    )
    refused = ""
    try:
        ray.get(second.ready.remote(), timeout=300)
    except Exception as exc:  # the refusal comes back wrapped in a RayTaskError
        refused = str(exc)
    finally:
        ray.kill(second)
    after = [Feedback(text=t, label="chaos-one-writer", source="chaos") for t in h.texts(3)]
    produce_feedback(h.kafka, after)
    h.produce_texts(ledger, h.config.items_per_cycle // 2)
    h.wait_delivered(ledger)
    learned = _learned(h, "chaos-one-writer", len(after))
    v = h.verdict(
        "two_learners", ledger, max_duplicates=0, second_refused="another learner holds" in refused,
        first_learned=learned,
    )  # fmt: skip
    v.passed = v.passed and "another learner holds" in refused and learned
    return v


def feedback_by_id(h: Harness) -> Verdict:
    """Feedback by item id, sent right behind the items it names, at full speed."""
    ledger = Ledger("fbid-")
    label = "chaos-confirmed"
    ids = h.produce_texts(ledger, h.config.items_per_cycle)
    named = ids[:: max(1, len(ids) // 40)]
    produce_feedback(h.kafka, [Feedback(item_id=i, label=label, source="chaos") for i in named])
    h.wait_delivered(ledger)
    learned = _learned(h, label, len(named))
    h.runtime.settle()
    unresolvable = sum(
        1 for topic, _, _, reason in _dead_letters(h)
        if topic == h.runtime.topics.feedback and reason == "unresolvable"
    )  # fmt: skip
    v = h.verdict(
        "feedback_by_id", ledger, max_duplicates=0, feedback=len(named),
        resolved=h.class_count(label), unresolvable=unresolvable,
    )  # fmt: skip
    v.passed = v.passed and learned and unresolvable == 0
    return v
