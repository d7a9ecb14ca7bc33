"""The stream worker: Kafka ``items`` in, labels/unknowns/dead letters out.

Every worker of a deployment joins one consumer group on ``items`` and keeps a
read replica of the prototype store by tailing ``classes``. A batch goes through

1. poll at most ``worker.batch_size`` records, decode them (poison input
   becomes dead letters);
2. embed them (the model, on the worker's embed thread);
3. classify them against the store, with the class events from ``classes``
   applied up to then (so feedback reaches a worker within a step);
4. send labels, unknowns and dead letters;
5. wait for every delivery, then commit the batch's offsets (never before);
6. send what it labelled to the learner (its item cache, its drift detectors),
   several batches per call at most every ``worker.observation_interval_ms``.

With ``worker.overlap``, steps 5-6 of the batch before and step 1 of the
batch after run while the model embeds this one. It is off by default: on 2
CPU cores overlapping measured no faster and with worse latency. It is meant
for a model on another device, where Kafka round trips are a real share of a batch.

The loop runs inside the actor (``run``); ``stop`` makes it finish the current
batch, commit and close. The class is plain Python: the supervisor wraps it
with ``ray.remote``.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import faiss
from threadpoolctl import threadpool_limits

from streamlabel.core.embedder import Embedder
from streamlabel.errors import PublishError
from streamlabel.kafka.changelog import ClassTail
from streamlabel.kafka.io import lag, make_consumer, to_raw
from streamlabel.kafka.offsets import OffsetTracker, offset_ranges
from streamlabel.kafka.protocols import ChangelogReader, Clock, Consumer, RecordPublisher
from streamlabel.kafka.publisher import Publisher
from streamlabel.kafka.topics import Topics
from streamlabel.ops.metrics import STAGES, worker_families
from streamlabel.pipeline.batch import EmbeddedTexts, PreparedBatch
from streamlabel.pipeline.labeler import Labeler
from streamlabel.settings.runtime import RuntimeSettings
from streamlabel.workers.actor import ActorLoop
from streamlabel.workers.embedding import (
    default_threads,
    load_embedder,
    same_torch_threads,
    torch_threads,
)
from streamlabel.workers.observations import ObservationSender
from streamlabel.workers.polling import Batch, Poller, batch_sizer
from streamlabel.workers.stats import WorkerStats, count_classes

__all__ = ["StreamWorker"]


class StreamWorker(ActorLoop[WorkerStats]):
    """One consumer of ``items`` in the deployment's group.

    ``ready`` loads the model, connects and reads the class changelog to its
    end; ``stop`` makes the loop finish its batch, commit and close.

    Args:
        settings: validated runtime settings.
        worker_id: stable id (e.g. ``worker-0``), bound to every log line.
        learner: the learner actor handle (drift observations), or None.
        embedder: an embedder to use instead of loading the model (the
            shared embedder actor's proxy, or a test embedder).
        consumer: the ``items`` consumer (not yet subscribed: the worker
            subscribes it with its rebalance listener); built from ``kafka.*``
            when None.
        publisher: what sends labels, unknowns and dead letters; built when None.
        changelog: the ``classes`` reader of the store's replica; built when None.
        clock: monotonic seconds (how long a batch took against
            ``kafka.max_poll_interval_ms``).
    """

    def __init__(
        self,
        settings: RuntimeSettings,
        worker_id: str,
        *,
        learner: Any = None,
        embedder: Embedder | None = None,
        consumer: Consumer | None = None,
        publisher: RecordPublisher | None = None,
        changelog: ChangelogReader | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.worker_id = worker_id
        self.topics = Topics.of(settings.kafka)
        self._embedder = embedder
        self.overlap = settings.worker.overlap
        """Whether the step is pipelined (``worker.overlap``)."""
        self._labeler: Labeler | None = None
        self._consumer: Consumer | None = consumer  # these three are built by _open when None
        self._tail: ChangelogReader | None = changelog
        self._publisher: RecordPublisher | None = publisher
        self._offsets: OffsetTracker | None = None
        self._clock = clock
        self._poller: Poller | None = None
        self._pending: Batch | None = None  # sent, not yet settled (delivered + committed)
        self._next: Batch | None = None  # prefetched while the model ran
        self._embed_thread: ThreadPoolExecutor | None = None
        self._sizer = batch_sizer(settings)
        r = settings.worker
        self._observations = ObservationSender(
            learner, max_inflight=r.max_inflight_observations, sample=r.drift_sample,
            seed=abs(hash(worker_id)) % (2**32), backlog=r.observation_backlog,
            min_interval_s=r.observation_interval_ms / 1e3,
        )  # fmt: skip
        stats = WorkerStats(worker_id=worker_id)
        stats.batch_size = self._sizer.size if self._sizer else settings.worker.batch_size
        self._init_loop(settings, stats, role="worker", actor=worker_id, families=worker_families)

    def _started(self) -> None:
        self._log.info("worker_started", group=self.settings.kafka.group_id)

    def _finish(self) -> None:
        self._settle()

    def _stopped(self) -> None:
        s = self._stats
        self._log.info("worker_stopped", items=s.items, commits=s.commits, drained=s.drained)

    # --------------------------------------------------------------- control
    def replica(self) -> dict[str, tuple[int, str]]:
        """This replica's classes: ``{class_id: (updated_version, status)}``."""
        if self._labeler is None:
            return {}
        return {
            cid: (st.updated_version, st.status) for cid, st in self._labeler.store.states().items()
        }

    def broker_reset(self) -> None:
        """The broker lost its data (the supervisor saw topics recreated): at the next
        step, re-read the changelog and resume each partition at its committed
        offset, or at its beginning where that offset is gone."""
        self._reset_requested.set()

    def set_learner(self, learner: Any) -> None:
        """Points the drift observations at a (restarted) learner."""
        self._observations.retarget(learner)

    # ------------------------------------------------------------------ loop
    def step(self) -> int:
        """One step; returns the records it labelled and sent.

        With ``worker.overlap`` the model runs on the embed thread while this
        thread does the Kafka work of the neighbouring batches: it settles the
        batch sent by the previous step (waits for its deliveries, commits it,
        sends its observations), applies new class events and prefetches the
        next batch. Then it classifies the current batch against the store as it
        is now and sends its records without waiting for them. At most one batch is ever sent and
        not committed, so the at-least-once bound stays one batch per worker.
        Without it (the default), every stage runs in turn on this thread.
        """
        assert self._labeler is not None
        if self._reset_requested.is_set():
            self._reset_requested.clear()
            self._settle()
            self._next = None  # positions are set again from the committed offsets
            self._after_broker_reset()
        cur, self._next = self._next, None
        poller = self._require_poller()
        if cur is not None:
            cur = poller.top_up(cur)
        if cur is None:
            self._settle()
            cur = poller.poll_filled()
            if cur is None:
                self._apply_class_events()  # an idle replica stays current too
                self._observations.send(None)  # what waited for the interval goes now
                poller.after_idle_poll()
                return 0
        t0 = time.perf_counter()
        prepared = self._labeler.prepare([to_raw(m) for m in cur.messages])
        job = self._embed_job(prepared)
        # --- overlapped with the model when worker.overlap is on
        t_io = time.perf_counter()
        settled = self._settle()
        self._apply_class_events()
        if settled and self.overlap:
            self._next = poller.poll(block=False)
        io_s = time.perf_counter() - t_io
        embedded = job.result()
        t1 = time.perf_counter()
        if not settled:  # the batch before outlived its group membership: start over
            self._tracker().rewind(cur.messages)
            return 0
        self.probe.hit("after_embed")
        fenced = self._tracker().fenced(cur.polled_at)
        if fenced or poller.rebalanced_since(cur):
            # Its partitions may be another worker's by now, which reads them from
            # the last commit (or were reset to it); this worker reads again what it
            # still owns. One wasted batch per rebalance, never a skipped record.
            # Decided before the Engine labels it: a dropped batch leaves no trace
            # (its items must not count as seen when they are read again).
            dropped = cur.messages + (self._next.messages if self._next else [])
            if fenced:
                self._drop(dropped, "before_publish")
            else:
                self._tracker().rewind(dropped)
                self._stats.rebalanced_batches += 1
                self._log.info("batch_rebalanced", offsets=offset_ranges(cur.messages))
            self._next = None
            return 0
        t2 = time.perf_counter()
        out = self._labeler.finish(prepared, embedded)
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
        assert self._labeler is not None
        assert self._tail is not None
        events = self._tail.poll(timeout_ms=0)
        if events:
            self._stats.class_events_applied += self._labeler.apply(events)
            self._refresh_store_stats()

    def _embed_job(self, prepared: PreparedBatch) -> Future[EmbeddedTexts]:
        """The model's work on the embed thread (inline with ``worker.overlap`` off)."""
        assert self._labeler is not None
        if self._embed_thread is not None:
            return self._embed_thread.submit(self._labeler.embed, prepared)
        job: Future[EmbeddedTexts] = Future()
        try:
            job.set_result(self._labeler.embed(prepared))
        except BaseException as exc:
            job.set_exception(exc)
        return job

    def _send(self, batch: Batch) -> None:
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
        ``worker.publish_retry_s``), commits its offsets, sends its observations.

        Returns False when the batch outlived ``kafka.max_poll_interval_ms``: it
        was delivered but not committed and its partitions are rewound, so
        whatever was polled after it must be dropped too.

        Raises:
            PublishError: still undelivered after ``worker.publish_retry_s``.
        """
        batch, self._pending = self._pending, None
        if batch is None:
            return True
        t0 = time.perf_counter()
        self._await_delivery(batch)
        self.probe.hit("after_flush")
        t1 = time.perf_counter()
        if self._tracker().fenced(batch.polled_at):
            # Delivered, but the partitions may be another worker's by now: their new
            # owner labels the batch again (a bounded duplicate); committing would only
            # be refused. Rewinding keeps the batch if this worker still owns them.
            self._drop(batch.messages, "before_commit")
            return False
        outcome = self._tracker().commit(batch.messages)
        if outcome == "committed":
            self._stats.commits += 1
        else:
            self._stats.commit_failures += 1
        t2 = time.perf_counter()
        dropped = self._observations.send(batch.out.observed if batch.out else None)
        self._stats.observations_dropped += dropped
        batch.stage_s["publish"] = batch.stage_s.get("publish", 0.0) + t1 - t0
        batch.stage_s["commit"] = t2 - t1
        batch.stage_s["observe"] = time.perf_counter() - t2
        self._account(batch)
        return True

    def _publish_failed(self, attempt: int, exc: PublishError) -> None:
        self._stats.publish_retries += 1
        self._log.warning("publish_failed", attempt=attempt, error=str(exc))

    def _await_delivery(self, batch: Batch) -> None:
        assert self._publisher is not None
        if batch.sent:
            try:
                self._publisher.flush()
                return
            except PublishError as exc:
                self._publish_failed(1, exc)
        self._publisher.deliver(
            batch.records,
            retry_s=self.settings.worker.publish_retry_s,
            on_failure=self._publish_failed,
        )

    def _account(self, batch: Batch) -> None:
        """Counts a committed batch in the stats and the metrics."""
        out = batch.out
        assert out is not None
        stages = {k: v for k, v in batch.stage_s.items() if k in STAGES}
        self.metrics.observe_batch(stages, batch.busy_s)
        self._stats.count_batch(out, len(batch.messages), batch.stage_s, batch.busy_s)
        if self._consumer is not None:
            self._stats.lag = lag(self._consumer)
        self._log.debug(
            "batch",
            records=len(batch.messages),
            offsets=offset_ranges(batch.messages),
            unknowns=len(out.unknowns),
            ms=round(batch.busy_s * 1e3, 1),
            poll_ms=round(batch.poll_s * 1e3, 1),
        )
        if out.dead_letters:
            self._log.warning(
                "dead_lettered",
                count=len(out.dead_letters),
                reasons=sorted({d.reason for d in out.dead_letters}),
                offsets=[d.source.offset for d in out.dead_letters if d.source][:10],
            )

    def _tracker(self) -> OffsetTracker:
        assert self._offsets is not None
        return self._offsets

    def _require_poller(self) -> Poller:
        assert self._poller is not None
        return self._poller

    def _drop(self, messages: list[Any], stage: str) -> None:
        """Discards a fenced batch: rewinds the partitions this worker may still own."""
        self._tracker().rewind(messages)
        self._stats.fenced_batches += 1
        limit = self.settings.kafka.max_poll_interval_ms
        self._log.warning(
            "batch_fenced",
            stage=stage,
            offsets=offset_ranges(messages),
            max_poll_interval_ms=limit,
        )

    def _after_broker_reset(self) -> None:
        """Re-reads the changelog; resumes partitions at a commit that still exists, else 0."""
        assert self._tail is not None
        self._tail.reset()
        partitions = self._tracker().resume_after_broker_reset()
        self._stats.broker_resets += 1
        self._log.warning("broker_reset", partitions=partitions)

    # ------------------------------------------------------------- lifecycle
    def _instrument(self, embedder: Embedder) -> Embedder:
        """The embedder the Engine uses (the chaos suite's worker wraps it)."""
        return embedder

    def _open(self) -> None:
        if self._labeler is not None:
            return
        # Small matrix products only: one BLAS thread, so actors sharing cores do not
        # oversubscribe them (multi-threaded OpenBLAS made the drift tests 10-30x slower).
        threadpool_limits(limits=1, user_api="blas")
        # FAISS's OpenMP team would spin on the loop's thread while torch's works on
        # the embed thread (two teams on the same cores: embedding 35% slower).
        faiss.omp_set_num_threads(1)
        s = self.settings
        embedder: Embedder = self._embedder or load_embedder(
            s.model, threads=s.worker.torch_threads or default_threads(s.supervisor.workers)
        )
        labeler = Labeler(s, self._instrument(embedder), items=s.kafka.items_mapping.to_mapping())
        self._tail = self._tail or ClassTail(s, self.topics, self._log)
        events = self._tail.catch_up()
        self._stats.class_events_applied += labeler.apply(events)
        self._publisher = self._publisher or Publisher(s.kafka, self.topics)
        if self.overlap:
            self._embed_thread = ThreadPoolExecutor(
                1, thread_name_prefix="embed", initializer=same_torch_threads,
                initargs=(torch_threads(),),
            )  # fmt: skip
        consumer = self._consumer or make_consumer(
            s.kafka, group_id=s.kafka.group_id, max_poll_records=s.worker.batch_size,
            offset_reset=s.kafka.new_group_start, label_path=True,
        )  # fmt: skip
        self._offsets = OffsetTracker(
            consumer,
            max_poll_interval_s=s.kafka.max_poll_interval_ms / 1e3,
            clock=self._clock,
            log=self._log,
        )
        self._poller = Poller(consumer, self._offsets, s, self._stats, sizer=self._sizer,
                              clock=self._clock, log=self._log)  # fmt: skip
        consumer.subscribe([self.topics.items], listener=self._poller)
        self._consumer = consumer
        self._labeler = labeler
        self._refresh_store_stats()
        self._stats.started_at = time.time()
        self._log.info(
            "worker_ready",
            model=labeler.embedder.model_id,
            store_version=labeler.store.version,
            classes=len(labeler.store.active_ids()),
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
            self._tail = None
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
        self._offsets = self._poller = None
        if self._embed_thread is not None:
            self._embed_thread.shutdown(wait=True)
            self._embed_thread = None
        self._pending = self._next = None
        self._labeler = None

    def _refresh_store_stats(self) -> None:
        if self._labeler is not None:
            store = self._labeler.store
            count_classes(self._stats, store.version, store.states().values())
