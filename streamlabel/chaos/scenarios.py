"""The fault scenarios of ``streamlabel chaos``.

Each scenario drives one :class:`~streamlabel.chaos.harness.Harness` (a real
deployment), injects its fault, waits until every input it produced has an
outcome, and returns a :class:`~streamlabel.chaos.ledger.Verdict`. They run in
the order of :data:`SCENARIOS`; ``broker_restart`` is last because it wipes
the broker.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import structlog

from streamlabel.chaos.faults import MODEL_FAIL_MARKER, MODEL_NAN_MARKER, WORKER_POINTS
from streamlabel.chaos.harness import Harness
from streamlabel.chaos.learner_scenarios import (
    corrupt_snapshot,
    feedback_by_id,
    learner_poison,
    two_learners,
)
from streamlabel.chaos.ledger import Ledger, Verdict, check
from streamlabel.chaos.outage_scenarios import crash_loop, topic_recreate, unpublishable
from streamlabel.errors import StreamlabelError
from streamlabel.kafka.client import produce_feedback
from streamlabel.runtime.replay import replay
from streamlabel.runtime.slots import SlotState
from streamlabel.schemas import Feedback, Item, LabelRecord, encode
from streamlabel.waiting import wait_until
from streamlabel.workers.checkpoint import snapshot_path
from streamlabel.workers.embedding import load_embedder

__all__ = ["SCENARIOS", "Scenario"]

log = structlog.get_logger(__name__)

Scenario = Callable[[Harness], Verdict]


def _dup_bound(h: Harness, revocations: int) -> int:
    """The promise: a revoked partition re-delivers at most the batch that was in
    flight on it, so each group change costs at most one batch per worker."""
    return max(1, revocations) * h.per_fault_bound()


# ----------------------------------------------------------------- 1. kill -9
def worker_kill(h: Harness) -> Verdict:
    """kill -9 of a stream worker after embedding, after producing, after flushing
    (before committing), and at a random moment from outside; ``cycles`` times each."""
    rng = np.random.default_rng(h.config.seed)
    ledger = Ledger("kill-")
    kills: dict[str, int] = {}
    not_fired: list[str] = []
    for cycle in range(h.config.cycles):
        for k, point in enumerate((*WORKER_POINTS, "anywhere")):
            slot = h.runtime.workers[(cycle + k) % len(h.runtime.workers)]
            before = slot.restarts
            h.mark_fault()
            if point != "anywhere":
                h.call(slot.handle, "arm_fault", point, "kill", 1)
            h.produce_texts(ledger, h.config.items_per_cycle)
            if point == "anywhere":
                pid = int(h.call(slot.handle, "pid"))
                deadline = time.monotonic() + float(rng.uniform(0.3, 2.5))
                while time.monotonic() < deadline:
                    h.pump()
                os.kill(pid, signal.SIGKILL)
            try:
                h.wait_restarted(slot.name, before, timeout_s=120)
                kills[point] = kills.get(point, 0) + 1
            except StreamlabelError:
                not_fired.append(f"{point}@{slot.name}")
                h.call(slot.handle, "disarm_faults")
    h.wait_delivered(ledger)
    n_kills = sum(kills.values())
    v = h.verdict(
        "worker_kill", ledger, max_duplicates=_dup_bound(h, n_kills),
        kills=kills, faults_not_fired=not_fired,
    )  # fmt: skip
    v.passed = v.passed and not not_fired
    return v


# ------------------------------------------------------------ 2. rebalances
def rebalance_churn(h: Harness) -> Verdict:
    """Adds and removes a worker ``cycles`` times while items flow."""
    ledger = Ledger("churn-")
    n = h.config.items_per_cycle
    timings: list[dict[str, float]] = []
    for _ in range(h.config.cycles):
        h.produce_texts(ledger, n)
        t0 = time.monotonic()
        h.mark_fault()
        h.runtime.add_worker()
        t1 = time.monotonic()
        h.produce_texts(ledger, n)
        h.mark_fault()
        h.runtime.remove_worker()
        t2 = time.monotonic()
        timings.append({"add_s": round(t1 - t0, 1), "remove_s": round(t2 - t1, 1)})
    h.wait_delivered(ledger)
    return h.verdict(
        "rebalance_churn", ledger, max_duplicates=_dup_bound(h, 4 * h.config.cycles),
        cycles=timings,
    )  # fmt: skip


# ---------------------------------------------------------------- 3. learner
def learner_crash(h: Harness) -> Verdict:
    """kill -9 of the learner while it applies feedback, when a discovery run was
    adopted (nothing published yet), after its checkpoint and after publishing."""
    assert h.plan is not None
    ledger = Ledger("learn-")
    checks: dict[str, Any] = {}
    learner = h.runtime.learner
    assert learner is not None
    notes = snapshot_path(h.runtime.settings).parent

    def crash(
        point: str, trigger: Callable[[], object], *, discover: bool = False
    ) -> dict[str, Any]:
        note = notes / f"fault-{point}.json"
        note.unlink(missing_ok=True)
        before = learner.restarts
        h.runtime.call_learner("arm_fault", point, "kill", 1)
        trigger()
        if discover:  # discovery sees every item: the same buffer it will see after restore
            h.wait_delivered(ledger)  # each item labelled: its unknown is on the topic...
            h.runtime.settle()  # ...and in the learner's buffer

        def restarted() -> bool:
            h.pump()
            if discover and learner.restarts == before:
                with contextlib.suppress(Exception):  # it may be dying right now
                    h.runtime.call_learner("request_discovery", timeout_s=5)
            return learner.restarts > before and learner.state is SlotState.RUNNING

        wait_until(restarted, timeout_s=300, interval_s=0.5, what=f"learner killed at {point}")
        stats = h.runtime.call_learner("stats")
        return {
            "restored_from": stats["restored_from"],
            "republished": stats["republished"],
            "note": json.loads(note.read_text()) if note.exists() else None,
        }

    # a) feedback applied in memory, not yet checkpointed: replayed once, counted once
    examples = [Feedback(text=t, label="chaos-feedback", source="chaos") for t in h.texts(5)]
    fb = crash("feedback_applied", lambda: produce_feedback(h.kafka, examples))
    wait_until(lambda: h.class_count("chaos-feedback") is not None, 120, "feedback relearned")
    fb["count_after"] = h.class_count("chaos-feedback")
    fb["ok"] = fb["restored_from"] == "snapshot" and fb["count_after"] == len(examples)
    checks["feedback_applied"] = fb

    # b) a discovery run adopted in memory (nothing published): rediscovered, same ids
    novel = [
        it for it in h.plan.items[h.plan.shift_at :] if h.plan.truth[it.id] in h.plan.held_back
    ]
    texts = [it.text or "" for it in novel[: max(300, h.config.items_per_cycle)]]

    def stream_novel() -> None:
        base = len(ledger)
        ids = [f"{ledger.prefix}{base + k}" for k in range(len(texts))]
        h.produce(
            ledger,
            [(i, encode(Item(id=i, text=t)), False) for i, t in zip(ids, texts, strict=True)],
        )

    disc = crash("discovery_adopted", stream_novel, discover=True)
    lost_ids = set((disc["note"] or {}).get("classes", []))

    def rediscovered() -> bool:
        h.pump()
        with contextlib.suppress(Exception):
            have = {c["class_id"] for c in h.runtime.call_learner("classes")}
            if lost_ids <= have:
                return True
            h.runtime.call_learner("request_discovery")
        return False

    try:
        wait_until(rediscovered, timeout_s=240, interval_s=1.0, what="rediscovery")
        disc["rediscovered_same_ids"] = bool(lost_ids)
    except StreamlabelError:
        disc["rediscovered_same_ids"] = False
    disc["ok"] = disc["restored_from"] == "snapshot" and disc["rediscovered_same_ids"]
    checks["discovery_adopted"] = disc

    # c) checkpoint written, nothing published / published, not marked: the outbox is resent
    for point in ("after_snapshot", "after_publish"):
        more = [Feedback(text=t, label=f"chaos-{point}", source="chaos") for t in h.texts(3)]
        res = crash(point, functools.partial(produce_feedback, h.kafka, more))
        res["ok"] = res["restored_from"] == "snapshot" and res["republished"] > 0
        checks[point] = res

    h.wait_delivered(ledger)
    h.runtime.settle()
    converged = h.replicas_converged()
    orphans = _changelog_orphans(h)
    v = h.verdict(
        "learner_crash", ledger, max_duplicates=0, crashes=checks,
        replicas_converged=converged, changelog_classes_not_in_store=orphans,
    )  # fmt: skip
    v.passed = v.passed and converged and not orphans and all(c["ok"] for c in checks.values())
    return v


def _changelog_ids(h: Harness) -> set[str]:
    """Every class id on the ``classes`` changelog."""
    return {getattr(r, "class_id", "") for r in h.read_topic("classes")}


def _changelog_orphans(h: Harness) -> list[str]:
    """Class ids on the changelog that the learner's store does not hold (half-published)."""
    return sorted(_changelog_ids(h) - set(h.runtime.call_learner("replica")))


# ------------------------------------------------------------------ 5. poison
def poison(h: Harness) -> Verdict:
    """Every kind of bad input, between valid items; each lands in the DLQ."""
    ledger = Ledger("poison-")
    dim = 384
    bad: list[tuple[str, bytes]] = [
        ("not_msgpack", b"\xc1\xff not msgpack"),
        ("schema_version", msgpack.packb({"v": 99, "t": "item", "d": {"id": "x", "text": "y"}})),
        ("missing_fields", msgpack.packb({"v": 1, "t": "item", "d": {"text": "no id"}})),
        ("too_large", encode(Item(id="big", text="x" * (5 * 1024 * 1024)))),
        ("empty_text", msgpack.packb({"v": 1, "t": "item", "d": {"id": "e", "text": ""}})),
        ("nan_vector", msgpack.packb({"v": 1, "t": "item", "d": {
            "id": "n", "vector": np.full(dim, np.nan, dtype=np.float32).tobytes()}})),
        ("wrong_dim", encode(Item(id="w", vector=tuple([0.1] * 10)))),
        ("model_fails", encode(Item(id="m", text=f"boom {MODEL_FAIL_MARKER}"))),
        ("model_nan", encode(Item(id="nan", text=f"nan {MODEL_NAN_MARKER}"))),
    ]  # fmt: skip
    for w in h.runtime.workers:
        h.call(w.handle, "arm_fault", "model_fail")
    n = h.config.items_per_cycle
    clean = h.produce_texts(ledger, n)
    h.wait_delivered(ledger)
    # the poison goes in the middle of a stream of valid items
    mixed = h.produce_texts(ledger, n // 2)
    for k, (_, value) in enumerate(bad):
        h.produce(ledger, [(f"{ledger.prefix}bad-{k}", value, True)])
    mixed += h.produce_texts(ledger, n - n // 2)
    h.wait_delivered(ledger)
    after = h.produce_texts(ledger, n)
    h.wait_delivered(ledger)
    for w in h.runtime.workers:
        h.call(w.handle, "disarm_faults")
    reasons = sorted({r for _, _, r in h.outcomes.dead})
    rate = h.outcomes.rate
    return h.verdict(
        "poison", ledger, max_duplicates=0, kinds=[k for k, _ in bad], dlq_reasons=reasons,
        items_per_s={"before": round(rate(clean), 1), "with_poison": round(rate(mixed), 1),
                     "after": round(rate(after), 1)},
    )  # fmt: skip


# ------------------------------------------------------------------- 6. stall
def stall(h: Harness) -> Verdict:
    """A model stall longer than ``kafka.max_poll_interval_ms`` on one worker."""
    ledger = Ledger("stall-")
    slot = h.runtime.workers[0]
    limit_s = h.runtime.settings.kafka.max_poll_interval_ms / 1e3
    before = h.call(slot.handle, "stats")
    h.mark_fault()
    h.call(slot.handle, "arm_fault", "after_embed", "stall", 1, limit_s + 5)
    h.produce_texts(ledger, 2 * h.config.items_per_cycle)
    h.wait_delivered(ledger, timeout_s=h.config.delivery_timeout_s + limit_s)
    after = h.call(slot.handle, "stats")
    fenced = after["fenced_batches"] - before["fenced_batches"]
    commit_failures = after["commit_failures"] - before["commit_failures"]
    v = h.verdict(
        "stall", ledger, max_duplicates=_dup_bound(h, 2), fenced_batches=fenced,
        commit_failures=commit_failures, stall_s=limit_s + 5,
    )  # fmt: skip
    v.passed = v.passed and fenced >= 1 and commit_failures <= 2
    return v


# ------------------------------------------------------------------ 7. replay
def deterministic_replay(h: Harness) -> Verdict:
    """Relabels an offset range against a pinned learner snapshot, twice, and
    compares with the live labels made at the same store version."""
    ledger = Ledger("replay-")
    h.runtime.settle()
    h.runtime.call_learner("request_snapshot")
    path = snapshot_path(h.runtime.settings)
    pinned = path.read_bytes()
    h.produce_texts(ledger, h.config.items_per_cycle)
    h.wait_delivered(ledger)
    part = max({i.partition for i in ledger.inputs.values()},
               key=lambda p: sum(i.partition == p for i in ledger.inputs.values()))  # fmt: skip
    offsets = sorted(i.offset for i in ledger.inputs.values() if i.partition == part)
    pinned_path = path.with_suffix(".pinned")
    pinned_path.write_bytes(pinned)
    args = (
        h.runtime.settings,
        pinned_path,
        h.runtime.topics.items,
        part,
        offsets[0],
        offsets[-1] + 1,
    )
    embedder = load_embedder(h.runtime.settings.model)
    first = replay(*args, embedder=embedder)
    second = replay(*args, embedder=embedder)
    live = _live_labels(h, {r.item_id for r in first})
    same_twice = [_key(r) for r in first] == [_key(r) for r in second]
    comparable = [r for r in first if r.item_id in live
                  and live[r.item_id].store_version == r.store_version]  # fmt: skip
    mismatched = [r.item_id for r in comparable if r.label != live[r.item_id].label]
    v = h.verdict(
        "deterministic_replay", ledger, max_duplicates=0, replayed=len(first),
        identical_twice=same_twice, compared_with_live=len(comparable),
        differ_from_live=mismatched[:10],
    )  # fmt: skip
    v.passed = v.passed and same_twice and bool(first) and bool(comparable) and not mismatched
    return v


def _key(r: LabelRecord) -> tuple[Any, ...]:
    return (r.item_id, r.label, r.score, r.margin, r.top_k, r.is_unknown, r.store_version)


def _live_labels(h: Harness, ids: set[str]) -> dict[str, LabelRecord]:
    """The first label the workers emitted for each of ``ids``."""
    out: dict[str, LabelRecord] = {}
    for rec in h.read_topic("labels"):
        if isinstance(rec, LabelRecord) and rec.revision == 0 and rec.item_id in ids:
            out.setdefault(rec.item_id, rec)
    return out


# ---------------------------------------------------------------- 4. broker
def broker_restart(h: Harness) -> Verdict:
    """kill -9 of tansu, restarted on the same port with nothing in it."""
    broker = h.runtime.broker
    if broker is None:
        raise StreamlabelError("broker_restart needs the embedded broker")
    before = Ledger("pre-")
    h.produce_texts(before, h.config.items_per_cycle)
    h.wait_delivered(before)
    inflight = Ledger("inflight-")
    h.produce_texts(inflight, h.config.items_per_cycle)
    resets = h.runtime.broker_resets
    t0 = time.monotonic()
    h.mark_fault()
    broker.kill()
    broker.start()
    h.reset_producer()
    h.reset_readers()
    h.outcomes.dead.clear()  # offsets start again at 0: old dead letters would collide
    wait_until(lambda: h.pump() >= 0 and h.runtime.broker_resets > resets, 120, "reset noticed")
    detected_s = time.monotonic() - t0
    after = Ledger("post-")
    h.produce_texts(after, h.config.items_per_cycle)
    delivered = h.wait_delivered(after)
    recovered_s = time.monotonic() - t0
    alerts = [a for a in h.read_topic("alerts") if getattr(a, "kind", "") == "broker_reset"]
    converged = h.replicas_converged()
    # the replicas kept their stores in memory; the new changelog must hold every class
    # on its own, or a worker started now would not know them
    missing = sorted(set(h.runtime.call_learner("replica")) - _changelog_ids(h))
    inflight_lost = check(inflight, h.outcomes).lost
    v = h.verdict(
        "broker_restart", after, max_duplicates=_dup_bound(h, 2), detected_s=round(detected_s, 1),
        recovered_s=round(recovered_s, 1), broker_reset_alerts=len(alerts),
        replicas_converged=converged, classes_missing_from_new_changelog=missing,
        inflight_lost_with_broker=inflight_lost, inflight=len(inflight),
    )  # fmt: skip
    v.passed = v.passed and delivered and bool(alerts) and converged and not missing
    return v


SCENARIOS: dict[str, Scenario] = {
    "worker_kill": worker_kill,
    "rebalance_churn": rebalance_churn,
    "learner_crash": learner_crash,
    "poison": poison,
    "learner_poison": learner_poison,
    "feedback_by_id": feedback_by_id,
    "corrupt_snapshot": corrupt_snapshot,
    "two_learners": two_learners,
    "unpublishable": unpublishable,
    "crash_loop": crash_loop,
    "topic_recreate": topic_recreate,
    "stall": stall,
    "deterministic_replay": deterministic_replay,
    "broker_restart": broker_restart,
}
"""Scenarios that run on one shared deployment, in this order (``settings`` runs apart)."""
