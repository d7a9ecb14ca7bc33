"""Chaos scenarios of operations going wrong around the stream.

* ``topic_recreate``: an operator purges ``dlq`` by deleting and recreating
  it while items flow: nothing is replayed (feedback is not counted twice),
  the new ``dlq`` receives dead letters, nothing is lost.
* ``crash_loop``: one worker is killed again and again, faster than its
  restart budget allows: its slot is exhausted and reported (one critical
  ``actor_exhausted`` alert) while the other worker labels everything; after
  the window it comes back, and a kill after a healthy window finds its
  budget whole again. (Minutes long: in the full run, not the quick one.)
* ``unpublishable``: an item whose dead letter is larger than any record the
  publisher sends, between valid items: the dead letter goes out without its
  value (offset and reason intact) and the partition keeps flowing.
"""

from __future__ import annotations

import os
import signal
import time

from streamlabel.chaos.harness import Harness
from streamlabel.chaos.ledger import Ledger, Verdict
from streamlabel.errors import StreamlabelError
from streamlabel.kafka.client import produce_feedback
from streamlabel.kafka.publisher import MAX_RECORD_BYTES
from streamlabel.runtime.slots import SlotState
from streamlabel.schemas import Feedback, Item, encode
from streamlabel.waiting import wait_until

__all__ = ["crash_loop", "topic_recreate", "unpublishable"]


def topic_recreate(h: Harness) -> Verdict:
    """``dlq`` deleted and created again under a running deployment."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    ledger = Ledger("purge-")
    label = "chaos-before-purge"
    taught = [Feedback(text=t, label=label, source="chaos") for t in h.texts(3)]
    produce_feedback(h.kafka, taught)

    def learned() -> bool:
        h.pump()
        return h.class_count(label) == len(taught)

    wait_until(learned, timeout_s=180, interval_s=0.5, what="feedback learned")
    learner = h.runtime.learner
    assert learner is not None
    restarts = learner.restarts
    dlq = h.runtime.topics.dlq
    admin = KafkaAdminClient(**h.kafka.client_kwargs())
    try:
        admin.delete_topics([dlq])
        wait_until(lambda: dlq not in admin.list_topics(), 60, "dlq deleted")
        admin.create_topics([NewTopic(dlq, h.kafka.partitions, h.kafka.replication_factor)])
    finally:
        admin.close()
    h.reset_readers()
    h.produce_texts(ledger, h.config.items_per_cycle // 2)
    h.produce(ledger, [(f"{ledger.prefix}bad", b"\xc1 not msgpack", True)])
    h.produce_texts(ledger, h.config.items_per_cycle // 2)
    h.wait_delivered(ledger)
    h.runtime.settle()
    count = h.class_count(label)
    v = h.verdict(
        "topic_recreate", ledger, max_duplicates=0, class_count_after=count,
        learner_restarts=learner.restarts - restarts,
    )  # fmt: skip
    v.passed = v.passed and count == len(taught) and learner.restarts == restarts
    return v


def crash_loop(h: Harness) -> Verdict:
    """A worker killed faster than its restart budget, then kills spread over time."""
    ledger = Ledger("loop-")
    started = time.time()
    settings = h.runtime.settings.supervisor
    victim = h.runtime.workers[-1]
    others = [w for w in h.runtime.workers if w is not victim]
    kills = 0
    exhausted_seen = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not exhausted_seen:
        h.produce_texts(ledger, max(8, h.config.items_per_cycle // 10))
        if victim.state == SlotState.RUNNING:
            try:
                os.kill(int(h.call(victim.handle, "pid", timeout_s=10)), signal.SIGKILL)
                kills += 1
                h.mark_fault()
            except Exception:  # dying or restarting right now: try again
                pass
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            h.pump()
        exhausted_seen = victim.state == SlotState.EXHAUSTED
    others_running = all(w.state == SlotState.RUNNING for w in others)
    h.produce_texts(ledger, h.config.items_per_cycle)
    h.wait_delivered(ledger)  # the others label everything meanwhile

    def back() -> bool:
        h.pump()
        return victim.state == SlotState.RUNNING

    try:
        wait_until(back, timeout_s=settings.restart_window_s * 3 + 120, interval_s=0.5,
                   what="the exhausted worker back")  # fmt: skip
        came_back = True
    except StreamlabelError:
        came_back = False
    spread = 0  # then a kill after a healthy window: the budget is whole again
    for _ in range(1):
        time.sleep(settings.restart_window_s + 1)
        if victim.state != SlotState.RUNNING:
            break
        before = victim.restarts
        os.kill(int(h.call(victim.handle, "pid", timeout_s=10)), signal.SIGKILL)
        h.mark_fault()
        h.produce_texts(ledger, max(8, h.config.items_per_cycle // 10))
        try:
            h.wait_restarted(victim.name, before, timeout_s=120)
            spread += 1
        except StreamlabelError:
            break
    h.wait_delivered(ledger)
    alerted = [  # the operators are told on `alerts`, naming the worker
        a for a in h.read_topic("alerts")
        if a.kind == "actor_exhausted" and victim.name in a.detail and a.emitted_at >= started
    ]  # fmt: skip
    v = h.verdict(
        "crash_loop", ledger, max_duplicates=h.per_fault_bound() * (kills + spread + 1),
        kills=kills, exhausted=exhausted_seen, others_kept_running=others_running,
        came_back=came_back, spread_kills_recovered=spread, exhausted_alerts=len(alerted),
    )  # fmt: skip
    v.passed = (v.passed and exhausted_seen and others_running and came_back and spread == 1
                and len(alerted) == 1)  # fmt: skip
    return v


def unpublishable(h: Harness) -> Verdict:
    """An item whose dead letter cannot be published whole, between valid items."""
    ledger = Ledger("unpub-")
    big = encode(Item(id="unpub-big", text="x" * (MAX_RECORD_BYTES + 100_000)))
    h.produce_texts(ledger, h.config.items_per_cycle // 2)
    h.produce(ledger, [(f"{ledger.prefix}big", big, True)])
    h.produce_texts(ledger, h.config.items_per_cycle // 2)
    h.wait_delivered(ledger)
    omitted = _omitted_values(h)
    v = h.verdict("unpublishable", ledger, max_duplicates=0, values_omitted=omitted)
    v.passed = v.passed and omitted >= 1
    return v


def _omitted_values(h: Harness) -> int:
    """Dead letters that went out without their value (headers say why)."""
    messages = h.read_topic("dlq", raw=True)
    return sum(any(k == "value.omitted" for k, _ in (m.headers or [])) for m in messages)
