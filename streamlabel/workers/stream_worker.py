"""The stream worker: Kafka ``items`` in, labels/unknowns/dead letters out.

Every worker of a deployment joins one consumer group on ``items`` and keeps a
read replica of the prototype store by tailing ``classes``. A batch goes through

1. poll at most ``runtime.batch_size`` records, decode them (poison input
   becomes dead letters);
2. embed them (the model, on the worker's embed thread);
3. classify them against the store, with the class events from ``classes``
   applied up to then (so feedback reaches a worker within a step);
4. send labels, unknowns and dead letters;
5. wait for every delivery, then commit the batch's offsets (never before);
6. send what it labelled to the learner's drift detectors (best effort).

With ``runtime.overlap``, steps 5-6 of the batch before and step 1 of the
batch after run while the model embeds this one, so the model is never left
waiting on Kafka. It is off by default: on 2 CPU cores the cores are the
bottleneck, and overlapping measured no faster and with worse latency (the
model runs 15-35% slower on a second native thread there). It is meant for a
model on another device, where Kafka round trips are a real share of a batch.

The loop runs inside the actor (``run``); ``stop`` makes it finish the current
batch, commit and close. The class is plain Python: the supervisor wraps it
with ``ray.remote``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import structlog
from kafka import ConsumerRebalanceListener
from threadpoolctl import threadpool_limits

from streamlabel.core.batching import BatchSizer
from streamlabel.core.embedder import Embedder
from streamlabel.errors import ChangelogError, DecodeError, PublishError
from streamlabel.kafka.io import (
    Publisher,
    commit_offsets,
    lag,
    make_consumer,
    next_offsets,
    past_end,
    to_raw,
)
from streamlabel.kafka.topics import Topics
from streamlabel.logging import configure_logging
from streamlabel.ops.endpoint import Served
from streamlabel.ops.metrics import STAGES, worker_families
from streamlabel.pipeline.engine import EmbeddedTexts, Engine, PreparedBatch
from streamlabel.pipeline.output import EngineOutput, Observed
from streamlabel.schemas import ClassEvent, decode
from streamlabel.settings.engine import DriftSettings
from streamlabel.settings.runtime import RuntimeSettings
from streamlabel.workers.embedding import default_threads, load_embedder
from streamlabel.workers.probe import NO_PROBE, Probe

if TYPE_CHECKING:
    from kafka import KafkaConsumer

__all__ = [
    "LEARNER_OFFSETS_HEADER",
    "ClassTail",
    "StreamWorker",
    "WorkerStats",
    "by_status",
    "ray_node_id",
    "rss_bytes",
]

LEARNER_OFFSETS_HEADER = "learner.offsets"
"""Header of class events: the learner's consumed offsets when it published them."""


@dataclass
class _Batch:
    """One poll's records on their way through a step."""

    messages: list[Any]
    polled_at: float  # monotonic: the max.poll.interval clock
    epoch: int  # rebalances seen when it was polled
    poll_s: float
    out: EngineOutput | None = None
    records: list[Any] = field(default_factory=list)
    sent: bool = False
    stage_s: dict[str, float] = field(default_factory=dict)
    busy_s: float = 0.0


def _torch_threads() -> int | None:
    """This thread's torch intra-op threads (None where torch is not loaded)."""
    import sys

    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def _same_torch_threads(threads: int | None) -> None:
    """Gives the embed thread the worker's torch thread count (OpenMP's setting is
    per native thread: a new thread would otherwise use every core)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def rss_bytes() -> int:
    """Resident memory of this process (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class WorkerStats:
    """Counters of one stream worker (what the supervisor shows and tests check)."""

    worker_id: str
    items: int = 0
    labels: int = 0
    unknowns: int = 0
    dead_letters: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    commits: int = 0
    commit_failures: int = 0
    recommits: int = 0
    rebalances: int = 0
    last_rebalance_s: float = 0.0
    publish_retries: int = 0
    fenced_batches: int = 0
    rebalanced_batches: int = 0
    partition_resets: int = 0
    broker_resets: int = 0
    observations_dropped: int = 0
    class_events_applied: int = 0
    store_version: int = 0
    classes: int = 0
    classes_by_status: dict[str, int] = field(default_factory=dict)
    assigned: list[str] = field(default_factory=list)
    lag: dict[str, int] = field(default_factory=dict)
    last_batch_ms: float = 0.0
    batch_size: int = 0
    busy_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0
    rss_bytes: int = 0
    running: bool = False
    drained: bool = False
    metrics_url: str = ""
    node_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


def ray_node_id() -> str:
    """The Ray node this process runs on ("" outside Ray)."""
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""
    except Exception:
        return ""


class ClassTail:
    """Tails the ``classes`` changelog into an Engine's store (a read replica).

    Uses its own consumer without a group (every replica reads everything). A
    record that does not decode stops the replica (:class:`ChangelogError`):
    skipping it would let the replica diverge silently.
    """

    def __init__(self, settings: RuntimeSettings, topics: Topics, log: Any) -> None:
        self._settings = settings
        self._topic = topics.classes
        self._consumer: KafkaConsumer | None = None
        self._log = log
        self.resets = 0
        self.learner_offsets: dict[str, int] | None = None
        """The learner's consumed offsets carried by the last event (``learner.offsets``)."""

    def _open(self) -> KafkaConsumer:
        from kafka.structs import TopicPartition

        if self._consumer is None:
            consumer = make_consumer(self._settings.kafka, group_id=None)
            tp = TopicPartition(self._topic, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            self._consumer = consumer
        return self._consumer

    def poll(self, timeout_ms: int = 0) -> list[ClassEvent]:
        """New class events (possibly none).

        Raises:
            ChangelogError: a record is not a class event.
        """
        consumer = self._open()
        self._detect_reset(consumer)
        events: list[ClassEvent] = []
        for messages in consumer.poll(timeout_ms=timeout_ms, max_records=10_000).values():
            for m in messages:
                try:
                    events.append(decode(m.value, ClassEvent, max_bytes=64 * 1024 * 1024))
                except DecodeError as exc:
                    raise ChangelogError(
                        f"{self._topic!r} offset {m.offset} is not a class event ({exc}); "
                        "replicas cannot apply it"
                    ) from exc
                for name, value in m.headers or []:
                    if name == LEARNER_OFFSETS_HEADER:
                        self.learner_offsets = {
                            str(k): int(v) for k, v in json.loads(value).items()
                        }
        return events

    def catch_up(self, stall_timeout_s: float = 30.0) -> list[ClassEvent]:
        """Every event up to the current end of the changelog.

        Raises:
            ChangelogError: no progress for ``stall_timeout_s`` before the end.
        """
        from kafka.structs import TopicPartition

        consumer = self._open()
        tp = TopicPartition(self._topic, 0)
        events: list[ClassEvent] = []
        deadline = time.monotonic() + stall_timeout_s
        while time.monotonic() < deadline:
            got = self.poll(timeout_ms=200)
            if got:
                events.extend(got)
                deadline = time.monotonic() + stall_timeout_s  # progress: keep going
                continue
            high = consumer.highwater(tp)
            if high is not None and consumer.position(tp) >= high:
                return events
        raise ChangelogError(
            f"could not read {self._topic!r} to its end: no progress in {stall_timeout_s:.0f}s"
        )

    def reset(self) -> None:
        """Reads the changelog again from its beginning (after the broker lost it)."""
        from kafka.structs import TopicPartition

        if self._consumer is not None:
            self._consumer.seek_to_beginning(TopicPartition(self._topic, 0))

    def _detect_reset(self, consumer: KafkaConsumer) -> None:
        """A position past the high watermark means the topic was recreated: start over.

        Applying the changelog again is safe: events older than a class's state
        are ignored, and a recovering learner re-asserts every class.
        """
        from kafka.structs import TopicPartition

        tp = TopicPartition(self._topic, 0)
        high = past_end(consumer, tp)
        if high is not None:
            self._log.warning("changelog_reset", topic=self._topic, position=consumer.position(tp),
                              high_watermark=high)  # fmt: skip
            consumer.seek_to_beginning(tp)
            self.resets += 1

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class _Rebalances(ConsumerRebalanceListener):
    """Consumer rebalance listener: logs and counts assignments."""

    def __init__(self, worker: StreamWorker) -> None:
        self._worker = worker

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._worker._on_revoked(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._worker._on_assigned(assigned)

    def on_partitions_lost(self, lost: Any) -> None:
        self._worker._on_lost(lost)


class StreamWorker(Served):
    """One consumer of ``items`` in the deployment's group.

    Args:
        settings: validated runtime settings.
        worker_id: stable id (e.g. ``worker-0``), bound to every log line.
        learner: the learner actor handle (drift observations), or None.
        embedder: an embedder to use instead of loading the model (the
            shared embedder actor's proxy, or a test embedder).
    """

    def __init__(
        self,
        settings: RuntimeSettings,
        worker_id: str,
        *,
        learner: Any = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.topics = Topics.of(settings.kafka)
        self._learner = learner
        self._embedder = embedder
        self.overlap = settings.runtime.overlap
        """Whether the step is pipelined (``runtime.overlap``)."""
        self._engine: Engine | None = None
        self._consumer: KafkaConsumer | None = None
        self._tail: ClassTail | None = None
        self._publisher: Publisher | None = None
        self._stop = threading.Event()
        self._pending: _Batch | None = None  # sent, not yet settled (delivered + committed)
        self._next: _Batch | None = None  # prefetched while the model ran
        self._epoch = 0  # rebalances seen: a batch polled in another epoch is checked
        self._embed_thread: ThreadPoolExecutor | None = None
        rt = settings.runtime
        self._sizer = (
            BatchSizer(
                target_s=rt.batch_target_ms / 1e3,
                max_size=rt.batch_size,
                min_size=min(rt.min_batch_size, rt.batch_size),
            )
            if rt.batch_target_ms is not None
            else None
        )
        self._inflight: list[Any] = []
        self._rng = np.random.default_rng(abs(hash(worker_id)) % (2**32))
        self._stats = WorkerStats(worker_id=worker_id)
        self._stats.batch_size = self._sizer.size if self._sizer else rt.batch_size
        self._revoked_at: float | None = None
        self._reset_requested = threading.Event()
        self._refused: dict[Any, int] = {}  # delivered, commit refused: {tp: next offset}
        self._kept: dict[Any, int] = {}  # refused offsets of partitions given back
        self.probe: Probe = NO_PROBE  # the step points (streamlabel.workers.probe)
        self.init_endpoint(settings.metrics, "worker", worker_id, self._stats.as_dict,
                            worker_families, self.stop)  # fmt: skip
        configure_logging(json_logs=settings.runtime.log_json, level=settings.runtime.log_level)
        self._log = structlog.get_logger("streamlabel.worker").bind(worker_id=worker_id)

    # --------------------------------------------------------------- control
    def ready(self) -> bool:
        """Loads the model, connects, and reads the class changelog to its end."""
        self.serve()
        self._open()
        return True

    def run(self) -> dict[str, Any]:
        """The poll loop; returns the final stats when :meth:`stop` is called.

        ``stats["drained"]`` is True when the stop came from ``POST /drain`` (a
        pod shutting down): the supervisor then starts the worker elsewhere
        without counting a failure.
        """
        self.serve()
        self._open()
        self._stats.running = True
        self.health.started()
        self._log.info("worker_started", group=self.settings.kafka.group_id)
        try:
            while not self._stop.is_set():
                self.step()
                self.health.beat()
            self._settle()
        finally:
            self._close()
            self._stats.running = False
            self._stats.drained = self.health.stopped()
        self._log.info(
            "worker_stopped",
            items=self._stats.items,
            commits=self._stats.commits,
            drained=self._stats.drained,
        )
        return self.stats()

    def stop(self) -> None:
        """Asks the loop to finish its batch, commit and close."""
        self._stop.set()

    def stats(self) -> dict[str, Any]:
        """Current counters (plain data)."""
        s = self._stats  # written by the loop's thread only; read here
        s.rss_bytes = rss_bytes()
        s.metrics_url = self.metrics_url
        s.node_id = s.node_id or ray_node_id()
        return s.as_dict()

    def replica(self) -> dict[str, tuple[int, str]]:
        """This replica's classes: ``{class_id: (updated_version, status)}``."""
        if self._engine is None:
            return {}
        return {
            cid: (st.updated_version, st.status) for cid, st in self._engine.store.states().items()
        }

    def broker_reset(self) -> None:
        """The broker lost its data (the supervisor saw topics recreated): at the next
        step, re-read the changelog and resume each partition at its committed
        offset, or at its beginning where that offset is gone."""
        self._reset_requested.set()

    def set_learner(self, learner: Any) -> None:
        """Points the drift observations at a (restarted) learner."""
        self._learner = learner
        self._inflight = []

    # ------------------------------------------------------------------ loop
    def step(self) -> int:
        """One step; returns the records it labelled and sent.

        With ``runtime.overlap`` the model runs on the embed thread while this
        thread does the Kafka work of the neighbouring batches: it settles the
        batch sent by the previous step (waits for its deliveries, commits it,
        sends its observations), applies new class events and prefetches the
        next batch. Then it classifies the current batch against the store as it
        is now and sends its records without waiting for them. At most one batch is ever sent and
        not committed, so the at-least-once bound stays one batch per worker.
        Without it (the default), every stage runs in turn on this thread.
        """
        assert self._engine is not None
        if self._reset_requested.is_set():
            self._reset_requested.clear()
            self._settle()
            self._next = None  # positions are set again from the committed offsets
            self._after_broker_reset()
        cur, self._next = self._next, None
        if cur is not None:
            cur = self._top_up(cur)
        if cur is None:
            self._settle()
            cur = self._poll(block=True)
            if cur is None:
                self._apply_class_events()  # an idle replica stays current too
                self._after_idle_poll()
                return 0
        t0 = time.perf_counter()
        prepared = self._engine.prepare([to_raw(m) for m in cur.messages])
        job = self._embed_job(prepared)
        # --- overlapped with the model when runtime.overlap is on
        t_io = time.perf_counter()
        settled = self._settle()
        self._apply_class_events()
        if settled and self.overlap:
            self._next = self._poll(block=False)
        io_s = time.perf_counter() - t_io
        embedded = job.result()
        t1 = time.perf_counter()
        if not settled:  # the batch before outlived its group membership: start over
            self._rewind(cur.messages)
            return 0
        self.probe.hit("after_embed")
        if self._fenced(cur) or self._rebalanced_since(cur):
            # Its partitions may be another worker's by now, which reads them from
            # the last commit (or were reset to it); this worker reads again what it
            # still owns. One wasted batch per rebalance, never a skipped record.
            # Decided before the Engine labels it: a dropped batch leaves no trace
            # (its items must not count as seen when they are read again).
            dropped = cur.messages + (self._next.messages if self._next else [])
            if self._fenced(cur):
                self._drop(dropped, "before_publish")
            else:
                self._rewind(dropped)
                self._stats.rebalanced_batches += 1
                self._log.info("batch_rebalanced", offsets=_offset_ranges(cur.messages))
            self._next = None
            return 0
        t2 = time.perf_counter()
        out = self._engine.finish(prepared, embedded)
        t3 = time.perf_counter()
        cur.out = out
        cur.stage_s = {
            "poll": cur.poll_s, **out.stage_s, "classify": t3 - t2,
            "io_overlapped": io_s, "embed_wait": t1 - t_io - io_s,
        }  # fmt: skip
        if self._sizer is not None:  # the part of a batch every item of it waits for
            model_s = prepared.decode_s + embedded.seconds + (t3 - t2)
            self._stats.batch_size = self._sizer.observe(len(cur.messages), model_s)
        self._send(cur)
        cur.busy_s = time.perf_counter() - t0
        self._pending = cur
        if not self.overlap:
            self._settle()
        return len(cur.messages)

    def _apply_class_events(self) -> None:
        assert self._engine is not None
        assert self._tail is not None
        events = self._tail.poll(timeout_ms=0)
        if events:
            self._stats.class_events_applied += self._engine.apply(events)
            self._refresh_store_stats()

    def _embed_job(self, prepared: PreparedBatch) -> Future[EmbeddedTexts]:
        """The model's work on the embed thread (inline with ``runtime.overlap`` off)."""
        assert self._engine is not None
        if self._embed_thread is not None:
            return self._embed_thread.submit(self._engine.embed, prepared)
        job: Future[EmbeddedTexts] = Future()
        try:
            job.set_result(self._engine.embed(prepared))
        except BaseException as exc:
            job.set_exception(exc)
        return job

    def _poll(self, *, block: bool, size: int | None = None) -> _Batch | None:
        """Polls up to ``runtime.batch_size`` records (the adaptive size, if set).

        ``block``: wait up to ``runtime.poll_timeout_ms`` for the first records;
        otherwise take only what the consumer's network thread already fetched
        (the prefetch while the model runs: one short call, so this thread does
        not compete with the model for the cores and the GIL; polling in slices
        until the model was done made batches 35% slower to embed and p50
        latency 3x worse on 2 cores).
        """
        assert self._consumer is not None
        if size is None:
            size = self._poll_size()
        t0 = time.perf_counter()
        polled_at = time.monotonic()  # kafka-python's max-poll timer restarts inside poll
        timeout = self.settings.runtime.poll_timeout_ms if block else 0
        polled = self._consumer.poll(timeout_ms=timeout, max_records=size)
        # A rebalance inside this poll came before the fetch of what it returned.
        epoch = self._epoch
        messages = self._apply_kept([m for b in polled.values() for m in b])
        poll_s = time.perf_counter() - t0
        self._stats.stage_s["poll"] = self._stats.stage_s.get("poll", 0.0) + poll_s
        if not messages:
            return None
        return _Batch(messages, polled_at, epoch, poll_s)

    def _poll_size(self) -> int:
        """Records per poll: the adaptive size, else ``runtime.batch_size``."""
        return self._sizer.size if self._sizer else self.settings.runtime.batch_size

    def _top_up(self, batch: _Batch) -> _Batch | None:
        """Adds to a prefetched batch what arrived while the model ran (a prefetch
        taken early in a slow stream would otherwise hold back the records that
        came after it by a whole step). A rebalance in this poll discards both:
        their partitions are rewound and the next poll reads them again."""
        size = self._poll_size()
        if len(batch.messages) >= size:
            return batch
        more = self._poll(block=False, size=size - len(batch.messages))
        if more is None:
            return batch
        if more.epoch != batch.epoch:
            self._rewind(batch.messages + more.messages)
            return None
        batch.messages.extend(more.messages)
        batch.poll_s += more.poll_s
        return batch

    def _after_idle_poll(self) -> None:
        assert self._consumer is not None
        self._detect_resets()
        self._stats.lag = lag(self._consumer)

    def _send(self, batch: _Batch) -> None:
        """Queues a batch's records without waiting; :meth:`_settle` checks them."""
        assert self._publisher is not None
        assert batch.out is not None
        t0 = time.perf_counter()
        batch.records = self._publisher.records(batch.out)
        t1 = time.perf_counter()
        try:
            self._publisher.send_all(batch.records)
            batch.sent = True
        except PublishError as exc:  # delivered again, with retries, when settled
            self._publish_failed(1, exc)
        self.probe.hit("after_produce")
        batch.stage_s["encode"] = t1 - t0
        batch.stage_s["publish"] = time.perf_counter() - t1

    def _settle(self) -> bool:
        """Completes the batch in flight: waits for every delivery (retrying for
        ``runtime.publish_retry_s``), commits its offsets, sends its observations.

        Returns False when the batch outlived ``kafka.max_poll_interval_ms``: it
        was delivered but not committed and its partitions are rewound, so
        whatever was polled after it must be dropped too.

        Raises:
            PublishError: still undelivered after ``runtime.publish_retry_s``.
        """
        batch, self._pending = self._pending, None
        if batch is None:
            return True
        t0 = time.perf_counter()
        self._await_delivery(batch)
        self.probe.hit("after_flush")
        t1 = time.perf_counter()
        if self._fenced(batch):
            # Delivered, but the partitions may be another worker's by now: their new
            # owner labels the batch again (a bounded duplicate); committing would only
            # be refused. Rewinding keeps the batch if this worker still owns them.
            self._drop(batch.messages, "before_commit")
            return False
        self._commit(batch.messages)
        t2 = time.perf_counter()
        self._observe(batch.out.observed if batch.out else None)
        batch.stage_s["publish"] = batch.stage_s.get("publish", 0.0) + t1 - t0
        batch.stage_s["commit"] = t2 - t1
        batch.stage_s["observe"] = time.perf_counter() - t2
        self._account(batch)
        return True

    def _publish_failed(self, attempt: int, exc: PublishError) -> None:
        self._stats.publish_retries += 1
        self._log.warning("publish_failed", attempt=attempt, error=str(exc))

    def _await_delivery(self, batch: _Batch) -> None:
        assert self._publisher is not None
        if batch.sent:
            try:
                self._publisher.flush()
                return
            except PublishError as exc:
                self._publish_failed(1, exc)
        self._publisher.deliver(
            batch.records,
            retry_s=self.settings.runtime.publish_retry_s,
            on_failure=self._publish_failed,
        )

    def _account(self, batch: _Batch) -> None:
        """Counts a committed batch in the stats and the metrics."""
        out = batch.out
        assert out is not None
        s = self._stats
        stages = {k: v for k, v in batch.stage_s.items() if k in STAGES}
        for stage, seconds in batch.stage_s.items():
            if stage != "poll":
                s.stage_s[stage] = s.stage_s.get(stage, 0.0) + seconds
        self.metrics.observe_batch(stages, batch.busy_s)
        s.items += len(batch.messages)
        s.labels += len(out.labels)
        s.unknowns += len(out.unknowns)
        s.dead_letters += len(out.dead_letters)
        for d in out.dead_letters:
            s.dead_letter_reasons[d.reason] = s.dead_letter_reasons.get(d.reason, 0) + 1
        s.batches += 1
        s.last_batch_ms = batch.busy_s * 1e3
        s.busy_s += batch.busy_s
        if self._consumer is not None:
            s.lag = lag(self._consumer)
        self._log.debug(
            "batch",
            records=len(batch.messages),
            offsets=_offset_ranges(batch.messages),
            unknowns=len(out.unknowns),
            ms=round(batch.busy_s * 1e3, 1),
        )
        if out.dead_letters:
            self._log.warning(
                "dead_lettered",
                count=len(out.dead_letters),
                reasons=sorted({d.reason for d in out.dead_letters}),
                offsets=[d.source.offset for d in out.dead_letters if d.source][:10],
            )

    def _commit(self, messages: list[Any]) -> None:
        """Commits the batch; a commit refused by a rebalance is logged, not fatal.

        The outputs are already delivered. When the group refused the commit, the
        offsets are kept: if the next assignment gives the partition back to this
        worker without the membership having been lost (``_on_lost`` clears them),
        the records it already delivered are skipped and the offsets committed in
        the new generation (:meth:`_apply_kept`, which also checks the broker's
        committed offset). Otherwise whoever gets the partition reads it from its
        last commit and labels the batch again: the at-least-once contract, one
        batch at most. Crashing here would only cause another rebalance.
        """
        from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError

        assert self._consumer is not None
        offsets = next_offsets(messages)
        try:
            commit_offsets(self._consumer, offsets)
        except (RebalanceInProgressError, CommitFailedError) as exc:
            self._stats.commit_failures += 1
            self._refused.update(offsets)
            self._log.warning("commit_refused", error=str(exc), offsets=_offset_ranges(messages))
            return
        except KafkaError as exc:
            self._stats.commit_failures += 1
            self._log.warning("commit_failed", error=str(exc), offsets=_offset_ranges(messages))
            return
        self._stats.commits += 1
        for tp in offsets:
            self._refused.pop(tp, None)

    def _apply_kept(self, messages: list[Any]) -> list[Any]:
        """Drops, from a poll, the records this worker delivered before a refused commit.

        A kept offset applies only to a partition that came back to this worker
        AND whose committed offset on the broker is still below it (nobody
        committed further, the group's offsets still exist). It is then committed,
        in the new generation, and the records before it are not labelled again.
        """
        from kafka.errors import KafkaError

        if not self._kept or self._consumer is None:
            return messages
        kept, self._kept = self._kept, {}
        owned = self._consumer.assignment()
        skip: dict[Any, int] = {}
        for tp, offset in kept.items():
            if tp not in owned:
                continue
            try:
                committed = self._consumer.committed(tp)
            except KafkaError:
                continue
            if committed is not None and committed < offset:
                skip[tp] = offset
        if not skip:
            return messages
        try:
            commit_offsets(self._consumer, skip)
        except KafkaError as exc:
            self._log.warning("recommit_failed", error=str(exc))
            return messages
        self._stats.recommits += len(skip)
        return [m for m in messages if m.offset >= skip.get(_tp(m), -1)]

    def _fenced(self, batch: _Batch) -> bool:
        """True when the batch took longer than ``kafka.max_poll_interval_ms``.

        The consumer's heartbeat thread has then left the group: the batch's
        partitions belong to another worker, which reads them from the last commit.
        """
        return time.monotonic() - batch.polled_at > self.settings.kafka.max_poll_interval_ms / 1e3

    def _rebalanced_since(self, batch: _Batch) -> bool:
        """True when the group rebalanced after the batch was polled (by a prefetch,
        or while it was prefetched). Its partitions may have moved, or (after a lost
        membership) been reset to their committed offsets."""
        return self._epoch != batch.epoch

    def _rewind(self, messages: list[Any]) -> None:
        """Seeks the partitions this worker still owns back to the first of ``messages``."""
        from kafka.structs import TopicPartition

        assert self._consumer is not None
        first: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            first[tp] = min(first.get(tp, m.offset), m.offset)
        owned = self._consumer.assignment()
        for tp, offset in first.items():
            if tp in owned:
                self._consumer.seek(tp, offset)

    def _drop(self, messages: list[Any], stage: str) -> None:
        """Discards a fenced batch: rewinds the partitions this worker may still own."""
        self._rewind(messages)
        self._stats.fenced_batches += 1
        limit = self.settings.kafka.max_poll_interval_ms
        self._log.warning(
            "batch_fenced",
            stage=stage,
            offsets=_offset_ranges(messages),
            max_poll_interval_ms=limit,
        )

    def _detect_resets(self) -> None:
        """Resets partitions whose position is past the high watermark (topic recreated)."""
        assert self._consumer is not None
        for tp in self._consumer.assignment():
            high = past_end(self._consumer, tp)
            if high is not None:
                self._log.warning(
                    "partition_reset",
                    partition=f"{tp.topic}:{tp.partition}",
                    position=self._consumer.position(tp),
                    high_watermark=high,
                )
                self._consumer.seek_to_beginning(tp)
                self._stats.partition_resets += 1

    def _after_broker_reset(self) -> None:
        """Re-reads the changelog; resumes partitions at a commit that still exists, else 0."""
        from kafka.errors import KafkaError

        assert self._consumer is not None
        assert self._tail is not None
        self._tail.reset()
        self._refused.clear()
        self._kept.clear()
        for tp in self._consumer.assignment():
            try:
                committed = self._consumer.committed(tp)
            except KafkaError:
                committed = None  # the coordinator is not back yet: start over
            high = self._consumer.highwater(tp)
            if committed is not None and (high is None or committed <= high):
                self._consumer.seek(tp, committed)
            else:
                self._consumer.seek_to_beginning(tp)
        self._stats.broker_resets += 1
        self._log.warning("broker_reset", partitions=sorted(
            f"{tp.topic}:{tp.partition}" for tp in self._consumer.assignment()))  # fmt: skip

    def _observe(self, observed: Observed | None) -> None:
        """Sends labelled items to the learner's detectors; drops them under backpressure."""
        if self._learner is None or observed is None or not len(observed):
            return
        import ray

        if self._inflight:
            _, self._inflight = ray.wait(self._inflight, num_returns=len(self._inflight), timeout=0)
        if len(self._inflight) >= self.settings.runtime.max_inflight_observations:
            self._stats.observations_dropped += len(observed)
            return
        sample = observed.sample(self.settings.runtime.drift_sample, self._rng)
        if len(sample):
            self._inflight.append(self._learner.observe.remote(sample))

    # ------------------------------------------------------------- lifecycle
    def _instrument(self, embedder: Embedder) -> Embedder:
        """The embedder the Engine uses (the chaos suite's worker wraps it)."""
        return embedder

    def _open(self) -> None:
        if self._engine is not None:
            return
        # Small matrix products only: one BLAS thread, so actors sharing cores do not
        # oversubscribe them (multi-threaded OpenBLAS made the drift tests 10-30x slower).
        threadpool_limits(limits=1, user_api="blas")
        # FAISS's OpenMP team would spin on the loop's thread while torch's works on
        # the embed thread (two teams on the same cores: embedding 35% slower).
        faiss.omp_set_num_threads(1)
        s = self.settings
        embedder: Embedder = self._embedder or load_embedder(
            s.model, threads=s.runtime.torch_threads or default_threads(s.runtime.workers)
        )
        embedder = self._instrument(embedder)
        replica = s.model_copy(
            update={
                "discovery": s.discovery.model_copy(update={"enabled": False}),
                "drift": DriftSettings(enabled=False),
            }
        )
        engine = Engine(replica, embedder)
        self._tail = ClassTail(s, self.topics, self._log)
        events = self._tail.catch_up()
        self._stats.class_events_applied += engine.apply(events)
        self._publisher = Publisher(s.kafka, self.topics)
        if self.overlap:
            self._embed_thread = ThreadPoolExecutor(
                1, thread_name_prefix="embed", initializer=_same_torch_threads,
                initargs=(_torch_threads(),),
            )  # fmt: skip
        self._consumer = make_consumer(
            s.kafka,
            group_id=s.kafka.group_id,
            topics=[self.topics.items],
            max_poll_records=s.runtime.batch_size,
            listener=_Rebalances(self),
            offset_reset=s.kafka.new_group_start,
        )
        self._engine = engine
        self._refresh_store_stats()
        self._stats.started_at = time.time()
        self._log.info(
            "worker_ready",
            model=embedder.model_id,
            store_version=engine.store.version,
            classes=len(engine.store.active_ids()),
        )

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception:
                self._log.warning("consumer_close_failed", exc_info=True)
            self._consumer = None
        if self._tail is not None:
            self._tail.close()
        if self._publisher is not None:
            self._publisher.close()
        if self._embed_thread is not None:
            self._embed_thread.shutdown(wait=True)
            self._embed_thread = None
        self._pending = self._next = None
        self._engine = None

    def _refresh_store_stats(self) -> None:
        if self._engine is not None:
            self._stats.store_version = self._engine.store.version
            self._stats.classes = len(self._engine.store.active_ids())
            self._stats.classes_by_status = by_status(self._engine.store.states().values())

    def _on_revoked(self, revoked: Any) -> None:
        # Nothing is ever sent and uncommitted here: a step settles its batch in
        # flight before it polls. A batch being embedded is checked by its epoch.
        self._epoch += 1
        self._revoked_at = time.monotonic()
        self._log.info(
            "partitions_revoked", partitions=sorted(f"{t.topic}:{t.partition}" for t in revoked)
        )

    def _keep_refused(self, assigned: Any) -> None:
        """Carries refused offsets of re-assigned partitions to the next poll (runs in
        the rebalance callback: no blocking call here)."""
        refused, self._refused = self._refused, {}
        self._kept = {tp: o for tp, o in refused.items() if tp in set(assigned)}

    def _on_lost(self, lost: Any) -> None:
        """Membership was lost (session expired, broker gone): nothing refused is kept."""
        self._refused.clear()
        self._kept.clear()
        self._epoch += 1
        self._revoked_at = time.monotonic()
        self._log.warning(
            "partitions_lost", partitions=sorted(f"{t.topic}:{t.partition}" for t in lost)
        )

    def _on_assigned(self, assigned: Any) -> None:
        self._epoch += 1
        if self._revoked_at is not None:  # revoke -> assign: the time this worker was idle
            self._stats.last_rebalance_s = time.monotonic() - self._revoked_at
            self._revoked_at = None
        self._keep_refused(assigned)
        self._stats.rebalances += 1
        self._stats.assigned = sorted(f"{t.topic}:{t.partition}" for t in assigned)
        self._log.info("partitions_assigned", partitions=self._stats.assigned)


def by_status(states: Any) -> dict[str, int]:
    """Classes per status (``known``, ``discovered``, ``retired``...)."""
    counts: dict[str, int] = {}
    for st in states:
        counts[st.status] = counts.get(st.status, 0) + 1
    return counts


def _tp(message: Any) -> Any:
    from kafka.structs import TopicPartition

    return TopicPartition(message.topic, message.partition)


def _offset_ranges(messages: list[Any]) -> dict[str, list[int]]:
    """``{"topic:partition": [first, last]}`` of a batch (for logs)."""
    ranges: dict[str, list[int]] = {}
    for m in messages:
        key = f"{m.topic}:{m.partition}"
        lo_hi = ranges.setdefault(key, [m.offset, m.offset])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], m.offset), max(lo_hi[1], m.offset)
    return ranges
