"""Offsets of a group consumer: commits, refused commits kept, rewinds, fences, resets.

:class:`OffsetTracker` is what a stream worker holds to decide where its
partitions resume. It commits a delivered batch; keeps the offsets of a commit
a rebalance refused, to skip what was already delivered when the partition
comes back; rewinds the partitions still owned to the first record of a
dropped batch; tells a batch that outlived ``kafka.max_poll_interval_ms``
(fenced); and moves positions back after a topic was recreated or the broker
lost its data. It needs a consumer and a clock only (no broker in tests).

The learner keeps its own positions (``{"topic:partition": next offset}``, in
its checkpoint): :class:`SeekToPositions` moves (re)assigned partitions to
them, :func:`commit_positions` commits them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import structlog
from kafka import ConsumerRebalanceListener

from streamlabel.kafka.io import commit_offsets, next_offsets, past_end
from streamlabel.kafka.protocols import Clock, Consumer

__all__ = [
    "CatchUp",
    "CommitOutcome",
    "OffsetTracker",
    "SeekToPositions",
    "commit_positions",
    "offset_ranges",
]

CommitOutcome = Literal["committed", "refused", "failed"]
"""What became of a commit: done, refused by a rebalance (kept), or failed (logged)."""


class OffsetTracker:
    """Commit and position bookkeeping of one consumer in a group.

    Args:
        consumer: the group's consumer (subscribed by its owner).
        max_poll_interval_s: ``kafka.max_poll_interval_ms`` in seconds: a batch
            older than this was fenced (its partitions may be another's by now).
        clock: monotonic seconds, the clock ``polled_at`` times come from.
        log: a bound logger.
    """

    def __init__(
        self,
        consumer: Consumer,
        *,
        max_poll_interval_s: float,
        clock: Clock = time.monotonic,
        log: Any = None,
    ) -> None:
        self.consumer = consumer
        self.max_poll_interval_s = max_poll_interval_s
        self._clock = clock
        self._log = log if log is not None else structlog.get_logger(__name__)
        self._refused: dict[Any, int] = {}  # delivered, commit refused: {tp: next offset}
        self._kept: dict[Any, int] = {}  # refused offsets of partitions given back

    def commit(self, messages: list[Any]) -> CommitOutcome:
        """Commits the batch; a commit refused by a rebalance is logged, not fatal.

        The outputs are already delivered. When the group refused the commit, the
        offsets are kept: if the next assignment gives the partition back to this
        consumer without the membership having been lost (:meth:`forget` clears
        them), the records it already delivered are skipped and the offsets
        committed in the new generation (:meth:`apply_kept`, which also checks the
        broker's committed offset). Otherwise whoever gets the partition reads it
        from its last commit and labels the batch again: the at-least-once
        contract, one batch at most. Crashing here would only cause another rebalance.
        """
        from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError

        offsets = next_offsets(messages)
        try:
            commit_offsets(self.consumer, offsets)
        except (RebalanceInProgressError, CommitFailedError) as exc:
            self._refused.update(offsets)
            self._log.warning("commit_refused", error=str(exc), offsets=offset_ranges(messages))
            return "refused"
        except KafkaError as exc:
            self._log.warning("commit_failed", error=str(exc), offsets=offset_ranges(messages))
            return "failed"
        for tp in offsets:
            self._refused.pop(tp, None)
        return "committed"

    def keep_refused(self, assigned: Iterable[Any]) -> None:
        """Carries refused offsets of re-assigned partitions to the next poll (runs in
        the rebalance callback: no blocking call here)."""
        refused, self._refused = self._refused, {}
        owned = set(assigned)
        self._kept = {tp: o for tp, o in refused.items() if tp in owned}

    def forget(self) -> None:
        """Membership was lost (session expired, broker gone): nothing refused is kept."""
        self._refused.clear()
        self._kept.clear()

    def apply_kept(self, messages: list[Any]) -> tuple[list[Any], int]:
        """Drops, from a poll, the records delivered before a refused commit.

        A kept offset applies only to a partition that came back to this consumer
        AND whose committed offset on the broker is still below it (nobody
        committed further, the group's offsets still exist). It is then committed,
        in the new generation, and the records before it are not labelled again.

        Returns:
            The records to label, and how many partitions were committed again.
        """
        from kafka.errors import KafkaError

        if not self._kept:
            return messages, 0
        kept, self._kept = self._kept, {}
        owned = self.consumer.assignment()
        skip: dict[Any, int] = {}
        for tp, offset in kept.items():
            if tp not in owned:
                continue
            try:
                committed = self.consumer.committed(tp)
            except KafkaError:
                continue
            if committed is not None and committed < offset:
                skip[tp] = offset
        if not skip:
            return messages, 0
        try:
            commit_offsets(self.consumer, skip)
        except KafkaError as exc:
            self._log.warning("recommit_failed", error=str(exc))
            return messages, 0
        return [m for m in messages if m.offset >= skip.get(_tp(m), -1)], len(skip)

    def fenced(self, polled_at: float) -> bool:
        """True when a batch polled at ``polled_at`` took longer than
        ``kafka.max_poll_interval_ms``.

        The consumer's heartbeat thread has then left the group: the batch's
        partitions belong to another consumer, which reads them from the last commit.
        """
        return self._clock() - polled_at > self.max_poll_interval_s

    def rewind(self, messages: list[Any]) -> None:
        """Seeks the partitions this consumer still owns back to the first of ``messages``."""
        first: dict[Any, int] = {}
        for m in messages:
            tp = _tp(m)
            first[tp] = min(first.get(tp, m.offset), m.offset)
        owned = self.consumer.assignment()
        for tp, offset in first.items():
            if tp in owned:
                self.consumer.seek(tp, offset)

    def detect_resets(self) -> int:
        """Resets partitions whose position is past the high watermark (topic
        recreated) to their beginning; returns how many."""
        resets = 0
        for tp in self.consumer.assignment():
            high = past_end(self.consumer, tp)
            if high is not None:
                self._log.warning(
                    "partition_reset",
                    partition=f"{tp.topic}:{tp.partition}",
                    position=self.consumer.position(tp),
                    high_watermark=high,
                )
                self.consumer.seek_to_beginning(tp)
                resets += 1
        return resets

    def resume_after_broker_reset(self) -> list[str]:
        """After the broker lost its data: forgets refused offsets and resumes each
        partition at a commit that still exists, else at 0. Returns the partitions."""
        from kafka.errors import KafkaError

        self.forget()
        for tp in self.consumer.assignment():
            try:
                committed = self.consumer.committed(tp)
            except KafkaError:
                committed = None  # the coordinator is not back yet: start over
            high = self.consumer.highwater(tp)
            if committed is not None and (high is None or committed <= high):
                self.consumer.seek(tp, committed)
            else:
                self.consumer.seek_to_beginning(tp)
        return sorted(f"{tp.topic}:{tp.partition}" for tp in self.consumer.assignment())


class SeekToPositions(ConsumerRebalanceListener):
    """Moves (re)assigned partitions to positions kept by their owner (its checkpoint).

    Args:
        positions: ``{"topic:partition": next offset}``, the owner's live dict.
    """

    def __init__(self, positions: dict[str, int]) -> None:
        self.positions = positions
        self.consumer: Consumer | None = None  # set once the consumer is built

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        if self.consumer is None:
            return
        for tp in assigned:
            offset = self.positions.get(f"{tp.topic}:{tp.partition}")
            if offset is not None:
                self.consumer.seek(tp, offset)


def commit_positions(consumer: Consumer, positions: Mapping[str, int]) -> None:
    """Commits ``{"topic:partition": next offset}`` synchronously (nothing when empty)."""
    from kafka.structs import TopicPartition

    offsets = {}
    for key, offset in positions.items():
        topic, part = key.rsplit(":", 1)
        offsets[TopicPartition(topic, int(part))] = offset
    commit_offsets(consumer, offsets)


def _tp(message: Any) -> Any:
    from kafka.structs import TopicPartition

    return TopicPartition(message.topic, message.partition)


def offset_ranges(messages: list[Any]) -> dict[str, list[int]]:
    """``{"topic:partition": [first, last]}`` of a batch (for logs).

    Example:
        >>> from types import SimpleNamespace as M
        >>> offset_ranges([M(topic="t", partition=0, offset=o) for o in (7, 5, 9)])
        {'t:0': [5, 9]}
    """
    ranges: dict[str, list[int]] = {}
    for m in messages:
        key = f"{m.topic}:{m.partition}"
        lo_hi = ranges.setdefault(key, [m.offset, m.offset])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], m.offset), max(lo_hi[1], m.offset)
    return ranges


class CatchUp:
    """Whether a consumer restored at old offsets has read its inputs up to where they
    ended when it started (their high watermarks then, taken once known).

    A stream that never pauses never gives an empty poll, so "an empty poll at no
    lag" alone would never say it.
    """

    def __init__(self) -> None:
        self.marks: dict[str, int] | None = None

    def reached(
        self, consumer: Consumer, positions: Mapping[str, int], *, polled: bool, lag: int
    ) -> bool:
        """True once every input partition's position (``topic:partition`` in
        ``positions``) reached its mark, or a poll came back empty at no lag."""
        if not polled and lag == 0:
            return True
        if self.marks is None:
            marks = {f"{tp.topic}:{tp.partition}": consumer.highwater(tp)
                     for tp in consumer.assignment()}  # fmt: skip
            if marks and all(v is not None for v in marks.values()):
                self.marks = {k: v for k, v in marks.items() if v is not None}
            return False
        return all(positions.get(k, 0) >= v for k, v in self.marks.items())
