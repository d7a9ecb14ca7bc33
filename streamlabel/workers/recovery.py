"""How a learner comes back: from its newest usable snapshot, else from the changelog.

The snapshot brings the store, the unknown buffer, the discovery candidates,
the input offsets it covers and its outbox; the ``classes`` changelog brings
what the replicas hold. Where the two differ the restored store wins and the
replicas are told (reconcile). Without a usable snapshot the store is rebuilt
from the changelog alone, resuming at the offsets its last event carries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from streamlabel.kafka.io import OutRecord
from streamlabel.kafka.protocols import Consumer
from streamlabel.kafka.topics import Topics
from streamlabel.pipeline.curator import Curator
from streamlabel.pipeline.output import EngineOutput
from streamlabel.pipeline.records import broker_reset_alert, snapshot_fallback_alert
from streamlabel.schemas import ClassEvent
from streamlabel.workers.checkpoint import Checkpoint

__all__ = ["Recovery", "recover", "reseed"]


@dataclass
class Recovery:
    """What a learner restored at start-up and what it must do first."""

    restored_from: str = ""
    """``snapshot``, ``changelog``, or empty (nothing to restore)."""
    positions: dict[str, int] = field(default_factory=dict)
    """The next offset of each input partition (``topic:partition``)."""
    outbox: list[OutRecord] = field(default_factory=list)
    """Records of the snapshot not marked published: republish them first."""
    fixes: EngineOutput = field(default_factory=EngineOutput)
    """Class events that make the replicas match the store, and alerts."""
    catching_up: bool = False
    """True when discovery must wait until the inputs are read again to where they ended."""
    reset_needed: bool = False
    """True when the broker lost its topics since the snapshot (read the inputs anew)."""
    skipped: list[str] = field(default_factory=list)
    """Why unusable snapshots were skipped."""


def recover(
    curator: Curator,
    checkpoint: Checkpoint,
    events: list[ClassEvent],
    learner_offsets: dict[str, int] | None,
    generation: int,
    log: Any,
) -> Recovery:
    """Restores ``curator`` from ``checkpoint``, else from the changelog ``events``.

    Args:
        events: the latest event of each class on the ``classes`` changelog (``catch_up``).
        learner_offsets: the input offsets carried by the changelog's last event.
        generation: the broker resets the supervisor has seen.
    """
    snap, outbox = checkpoint.restore()
    rec = Recovery(outbox=outbox, skipped=list(checkpoint.skipped))
    for reason in rec.skipped:
        log.error("snapshot_skipped", reason=reason)
    if snap is not None:
        curator.load_state(snap.engine)
        rec.positions.update(snap.offsets)
        rec.restored_from = "snapshot"
        # Discovery waits until the inputs consumed since the snapshot are read
        # again: a run on a half-rebuilt buffer could adopt a cluster under another
        # anchor (another id) than the run the crash interrupted.
        rec.catching_up = True
        if snap.broker_generation < generation:
            # the broker lost its topics since this snapshot: its offsets name
            # records that are gone; recover as if told (first step)
            rec.positions.clear()
            rec.reset_needed = True
    elif events:
        curator.replay(events)
        rec.positions.update(learner_offsets or {})
        rec.restored_from = "changelog"
    curator.advance_version(max((e.store_version for e in events), default=0))
    if snap is not None:
        rec.fixes = curator.reconcile(events)
    if rec.skipped:
        rec.fixes.alerts.append(
            snapshot_fallback_alert(
                skipped=rec.skipped, store_version=curator.version,
                restored_from=rec.restored_from or "nothing", now=time.time(),
            )
        )  # fmt: skip
    return rec


def reseed(
    curator: Curator,
    consumer: Consumer,
    positions: dict[str, int],
    topics: Topics,
    recreated: set[str],
    *,
    at_item: int,
) -> EngineOutput | None:
    """After topics were recreated: start the new inputs over, re-publish every class
    to a new ``classes``; nothing else is replayed.

    The store, the unknown buffer and the discovery candidates are the learner's
    own (memory, backed by its snapshot); only the topics are new. ``positions``
    is changed in place (the rebalance listener holds it).

    Returns:
        the class events and the ``broker_reset`` alert to publish; None when no
        topic the learner reads or writes state to was recreated.
    """
    t = topics
    recreated = recreated & {t.feedback, t.unknowns, t.classes}  # not outputs: no replay
    if not recreated:
        return None
    inputs = recreated & {t.feedback, t.unknowns}
    for key in [k for k in positions if k.rsplit(":", 1)[0] in inputs]:
        del positions[key]
    rewind = sorted((tp for tp in consumer.assignment() if tp.topic in inputs), key=str)
    if rewind:
        consumer.seek_to_beginning(*rewind)
    out = EngineOutput()
    if t.classes in recreated:
        out.extend(curator.reassert_all(cause="broker_reset"))
    out.alerts.append(
        broker_reset_alert(
            classes=len(out.class_events), store_version=curator.version,
            at_item=at_item, now=time.time(),
        )
    )  # fmt: skip
    return out
