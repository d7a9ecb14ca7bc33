"""The learner: the single writer of the prototype store.

It consumes ``feedback`` (class-incremental updates), ``unknowns`` (the
discovery buffer) and ``commands`` (a person's changes, answered on
``command_results``: :mod:`~streamlabel.pipeline.commands`), receives what the
stream workers labelled over Ray (every row for the item cache, a sample for
drift; see :mod:`~streamlabel.workers.observations`), runs novel-class discovery
in a background thread, and publishes class events to ``classes``, revised
labels to ``labels``, alerts to ``alerts`` and bad inputs to ``dlq``.

Every step that produced records checkpoints first (state, offsets and the
records, :mod:`~streamlabel.workers.checkpoint`), then publishes, marks the
outbox published and commits; steps without output snapshot every
``learner.snapshot_every_s`` seconds or ``learner.snapshot_every_records``.
So a restart republishes an outbox not marked published (duplicates at
worst), never counts feedback twice, and re-asserts or retires every class
where the changelog differs from the restored store (replicas converge).

Without a snapshot (``learner.state_dir`` lost) it rebuilds the store from
``classes`` and resumes at the offsets carried by the last class event
(header ``learner.offsets``): the store is recovered, the unknown buffer is not.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from threadpoolctl import threadpool_limits

from streamlabel.core.embedder import Embedder
from streamlabel.errors import PublishError, StreamlabelError
from streamlabel.kafka.changelog import LEARNER_EPOCH_HEADER, LEARNER_OFFSETS_HEADER, ClassTail
from streamlabel.kafka.io import OutRecord, lag, make_consumer, to_raw
from streamlabel.kafka.offsets import CatchUp, SeekToPositions, commit_positions
from streamlabel.kafka.protocols import ChangelogReader, Clock, Consumer, RecordPublisher
from streamlabel.kafka.publisher import Publisher
from streamlabel.kafka.topics import Topics
from streamlabel.ops.metrics import learner_families
from streamlabel.pipeline.batch import decode_unknowns
from streamlabel.pipeline.commands import apply_commands, decode_commands
from streamlabel.pipeline.curator import Curator
from streamlabel.pipeline.output import EngineOutput, Observed
from streamlabel.settings.runtime import RuntimeSettings
from streamlabel.workers.actor import ActorLoop
from streamlabel.workers.checkpoint import Checkpoint, snapshot_path
from streamlabel.workers.discovery_runner import BackgroundDiscovery
from streamlabel.workers.embedding import load_embedder
from streamlabel.workers.observations import ObservationInbox
from streamlabel.workers.recovery import recover, reseed
from streamlabel.workers.stats import ClassView, LearnerStats, count_classes

__all__ = ["Learner", "LearnerStats"]


class Learner(ActorLoop[LearnerStats]):
    """The single writer of the store; run as one Ray actor.

    ``ready`` loads the model, restores state, republishes what was pending and
    connects; ``stop`` has the loop publish what it has, snapshot, commit and close.

    Args:
        settings: validated runtime settings (``learner.state_dir`` holds snapshots).
        embedder: an embedder to use instead of loading the model.
        broker_generation: the broker resets the supervisor has seen.
        consumer: the ``feedback``/``unknowns``/``commands`` consumer (not yet subscribed);
            built from ``kafka.*`` when None.
        publisher: what sends class events, revisions, alerts, dead letters;
            built from ``kafka.*`` when None.
        changelog: the ``classes`` reader used once, on start-up; built when None.
        clock: monotonic seconds (when a snapshot is due).
    """

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        embedder: Embedder | None = None,
        broker_generation: int = 0,
        consumer: Consumer | None = None,
        publisher: RecordPublisher | None = None,
        changelog: ChangelogReader | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.topics = Topics.of(settings.kafka)
        self._embedder = embedder
        self._curator: Curator | None = None
        self._consumer: Consumer | None = consumer  # built by _open when None
        self._publisher: RecordPublisher | None = publisher
        self._changelog = changelog
        self._inbox = ObservationInbox(max_rows=max(settings.limits.max_item_cache, 1))
        self._init_loop(settings, LearnerStats(), role="learner", actor="learner",
                        families=learner_families)  # fmt: skip
        self._discovery = BackgroundDiscovery(self._log, nice=settings.learner.discovery_nice)
        self._snapshot_wanted = threading.Event()
        self._generation = broker_generation  # broker resets the supervisor has seen
        self._reset_lock = threading.Lock()
        self._reset_topics: set[str] = set()  # recreated, not yet recovered from
        self._view = ClassView()
        self._positions: dict[str, int] = {}
        r = settings.learner
        self.checkpoint = Checkpoint(
            snapshot_path(settings),
            every_s=r.snapshot_every_s,
            every_records=r.snapshot_every_records,
            clock=clock,
        )
        self.path = self.checkpoint.path
        self._catching_up = False  # restored from a snapshot, not yet read up to the end
        self.epoch = 0
        """This learner's writer epoch on the changelog (one above the highest it found)."""
        self._catch_up = CatchUp()

    # --------------------------------------------------------------- control
    def request_discovery(self) -> int:
        """Runs discovery at the next step even if not due.

        Returns:
            The discovery runs completed so far: the requested run is done once
            ``stats()["discovery_runs"]`` exceeds it.
        """
        runs = self._stats.discovery_runs
        self._discovery.forced.set()
        return runs

    def request_snapshot(self, timeout_s: float = 60.0) -> int:
        """Has the loop write a snapshot at its next step; returns the snapshots written.

        Raises:
            StreamlabelError: the loop did not write it in time.
        """
        before = self._stats.snapshots
        self._snapshot_wanted.set()
        deadline = time.monotonic() + timeout_s
        while self._stats.snapshots == before:
            if time.monotonic() > deadline:
                raise StreamlabelError("the learner did not write a snapshot in time")
            time.sleep(0.05)
        return self._stats.snapshots

    def broker_reset(self, generation: int, topics: Sequence[str] | None = None) -> None:
        """Topics were recreated (the supervisor's ``generation``-th such reset that
        concerns the learner): at the next step, consume each recreated input
        (``feedback``, ``unknowns``) from its beginning, re-publish every class if
        ``classes`` is new (the replicas re-seed from it), and raise a
        ``broker_reset`` alert. ``topics`` None: all of them (the broker lost
        everything). A generation already handled is ignored, so an input is never
        read twice."""
        with self._reset_lock:
            if generation <= self._generation:
                return
            self._generation = generation
        self._request_reset(topics)

    def _request_reset(self, topics: Sequence[str] | None) -> None:
        t = self.topics
        with self._reset_lock:
            everything = (t.feedback, t.unknowns, t.classes)
            self._reset_topics.update(everything if topics is None else topics)
        self._reset_requested.set()

    def idle(self) -> bool:
        """True when no discovery is running or requested and no observation is queued."""
        return self._discovery.idle() and self._inbox.empty()

    def observe(self, observed: Observed) -> bool:
        """Queues items a stream worker labelled (called by workers through Ray); False:
        refused, the loop is behind (the worker sends them again)."""
        taken, drift_dropped = self._inbox.offer(observed)
        self._stats.observations_dropped += drift_dropped
        return taken

    def classes(self) -> list[dict[str, Any]]:
        """The current classes (id, name, status, origin, count, keywords, example texts).

        A view the loop refreshes after every step (Ray calls this from another thread).
        """
        return list(self._view.rows)

    def replica(self) -> dict[str, tuple[int, str]]:
        """The store's classes as ``{class_id: (updated_version, status)}`` (what every
        worker's replica must converge to)."""
        return {c["class_id"]: (c["updated_version"], c["status"]) for c in self._view.rows}

    # ------------------------------------------------------------------ loop
    def step(self) -> int:
        """One poll of the inputs, plus observations and discovery; returns records."""
        curator, consumer = self._require()
        out = EngineOutput()
        if self._reset_requested.is_set():
            self._reset_requested.clear()
            with self._reset_lock:
                recreated, self._reset_topics = self._reset_topics, set()
            self._reseed(curator, consumer, out, recreated)
        polled = consumer.poll(timeout_ms=self.settings.worker.poll_timeout_ms, max_records=2000)
        self._stats.lag = sum(lag(consumer).values())
        if self._catching_up and self._catch_up.reached(
            consumer, self._positions, polled=bool(polled), lag=self._stats.lag
        ):
            self._catching_up = False
            self._log.info("caught_up")
        feedback: list[Any] = []
        unknowns: list[Any] = []
        commands: list[Any] = []
        inputs = {self.topics.feedback: feedback, self.topics.commands: commands}
        for tp, messages in polled.items():
            for m in messages:
                inputs.get(tp.topic, unknowns).append(m)
                self._positions[f"{tp.topic}:{tp.partition}"] = m.offset + 1
        self._drain_observations(curator, out)  # feedback may name observed items...
        out.extend(curator.settle_feedback())  # (or wait for them, for a while)
        if unknowns:  # ...or unknowns of this very poll
            raws = [to_raw(m) for m in unknowns]
            unknown = decode_unknowns(raws, self.settings.limits, curator.embedder.dim, out)
            out.extend(curator.absorb(unknown))
        if feedback:
            out.extend(curator.learn([to_raw(m) for m in feedback]))
            self.probe.hit(
                "feedback_applied",
                lambda: {"counts": {c: st.count for c, st in curator.classes().items()}},
            )
        if commands:  # applied once by id: the snapshot holds the ids with the offsets
            found = decode_commands([to_raw(m) for m in commands], self.settings.limits, out)
            out.extend(apply_commands(curator, found, now=time.time()))
        runs = self._discover(curator, out)
        self.checkpoint.count(len(feedback) + len(unknowns) + len(commands))
        if out.has_records() or self.checkpoint.due() or self._snapshot_wanted.is_set():
            self._checkpoint(out)
            self._snapshot_wanted.clear()
        s = self._stats  # counted once published, so readers never see work in flight
        s.feedback += len(feedback)
        s.unknowns += len(unknowns)
        s.discovery_runs += runs
        self._refresh_views(curator)
        return len(feedback) + len(unknowns) + len(commands)

    def _checkpoint(self, out: EngineOutput) -> None:
        """Snapshot (state + offsets + outbox) -> publish -> mark published -> commit."""
        publisher = self._require_publisher()
        headers = [
            (LEARNER_OFFSETS_HEADER, json.dumps(self._positions).encode()),
            (LEARNER_EPOCH_HEADER, str(self.epoch).encode()),
        ]
        outbox = publisher.records(out, event_headers=headers)
        written = self._write_snapshot(outbox)

        def note() -> dict[str, Any]:
            return {
                "classes": sorted({e.class_id for e in out.class_events}),
                "seq": self.checkpoint.seq,
            }

        self.probe.hit("after_snapshot", note)
        self._publish_records(outbox)
        self.probe.hit("after_publish", note)
        if written:  # else the inputs stay uncommitted: a restart re-reads them
            self.checkpoint.mark_published()
            self._commit()
        s = self._stats
        s.class_events += len(out.class_events)
        s.revisions += len(out.labels)
        s.alerts += len(out.alerts)
        s.incidents += sum(1 for a in out.alerts if a.incident_update == 0)
        s.dead_letters += len(out.dead_letters)
        s.commands += len(out.command_results)
        for alert in out.alerts:
            s.alerts_by_kind[alert.kind] = s.alerts_by_kind.get(alert.kind, 0) + 1
            self._log.warning("drift_alert", kind=alert.kind, detail=alert.detail)

    # ------------------------------------------------------------- internals
    def _require(self) -> tuple[Curator, Consumer]:
        if self._curator is None or self._consumer is None:
            raise StreamlabelError("the learner is not open")
        return self._curator, self._consumer

    def _require_publisher(self) -> RecordPublisher:
        if self._publisher is None:
            raise StreamlabelError("the learner is not open")
        return self._publisher

    def _write_snapshot(self, outbox: list[OutRecord]) -> bool:
        """Writes a snapshot; False when the disk refused it (logged, counted, not fatal)."""
        curator, _ = self._require()
        try:
            self.checkpoint.write(curator.state(), self._positions, self._generation, outbox)
        except OSError as exc:
            self._stats.snapshot_failures += 1
            self._log.error("snapshot_failed", error=str(exc), path=str(self.path))
            return False
        self._stats.snapshots += 1
        return True

    def _commit(self) -> None:
        _, consumer = self._require()
        try:
            commit_positions(consumer, self._positions)
        except Exception as exc:
            self._log.warning("commit_failed", error=str(exc))

    def _publish_records(self, records: list[OutRecord]) -> None:
        if not records:
            return

        def failed(attempt: int, exc: PublishError) -> None:
            self._log.warning("publish_failed", attempt=attempt, error=str(exc))

        self._require_publisher().deliver(
            records, retry_s=self.settings.worker.publish_retry_s, on_failure=failed
        )

    def _reseed(
        self, curator: Curator, consumer: Consumer, out: EngineOutput, recreated: set[str]
    ) -> None:
        """After topics were recreated: see :func:`~streamlabel.workers.recovery.reseed`."""
        done = reseed(curator, consumer, self._positions, self.topics, recreated,
                      at_item=self._stats.observed)  # fmt: skip
        if done is None:
            return
        out.extend(done)
        self._stats.broker_resets += 1
        self._log.error("broker_reset", topics=sorted(recreated), store_version=curator.version,
                        classes=len(done.class_events))  # fmt: skip

    def _drain_observations(self, curator: Curator, out: EngineOutput) -> None:
        for observed in self._inbox.drain():
            self._stats.observed += len(observed)
            t0 = time.perf_counter()
            out.extend(curator.observe(observed))
            self._stats.add_stage("drift", time.perf_counter() - t0)

    def _discover(self, curator: Curator, out: EngineOutput, wait_s: float | None = None) -> int:
        """Collects a finished background run; starts the next when due. Returns runs collected."""
        run = self._discovery.collect(wait_s)
        if run is not None and run.job is not None:
            self._stats.add_stage("discovery", run.seconds)
            self._stats.last_discovery = {"buffered": run.buffered, "seconds": run.seconds}
            if curator.keep_candidates(run.job):
                # The new classes' ids are checkpointed before they exist: a crash
                # before the adoption's own checkpoint loses the adoption, and the
                # restored learner rediscovers them under the same ids.
                self._checkpoint(out)
                out.clear()
            t0 = time.perf_counter()
            found = curator.finish_discovery(run.job)
            self._stats.add_stage("adopt", time.perf_counter() - t0)
            self._stats.discovered += sum(e.cause == "discovery" for e in found.class_events)
            for event in found.class_events:
                self._log.info(
                    "class_discovered", class_id=event.class_id, name=event.state.name,
                    members=event.state.count, kind=event.kind,
                )  # fmt: skip
            out.extend(found)
            if found.class_events:
                events = found.class_events
                self.probe.hit(
                    "discovery_adopted", lambda: {"classes": sorted({e.class_id for e in events})}
                )
        due = curator.discovery_due() or self._discovery.forced.is_set()
        if wait_s is None and not self._discovery.running and not self._catching_up and due:
            self._discovery.start(curator)
        return int(run is not None)

    def _refresh_views(self, curator: Curator) -> None:
        """Updates what other threads read (stats, class list) from the loop's thread."""
        s = self._stats
        classes = curator.classes().values()
        count_classes(s, curator.version, classes)
        s.buffered = len(curator.buffer)
        self._view.refresh(classes)

    def _finish(self) -> None:
        """On stop: waits for a running discovery, publishes it, checkpoints."""
        curator, _ = self._require()
        out = EngineOutput()
        if self._discovery.running:
            wait_s = self.settings.supervisor.stop_timeout_s / 2
            self._stats.discovery_runs += self._discover(curator, out, wait_s=wait_s)
            self._discovery.abandon()
        self._checkpoint(out)

    # ------------------------------------------------------------- lifecycle
    def _open(self) -> None:
        if self._curator is not None:
            return
        # Small matrix products only: one BLAS thread, so actors sharing cores do not
        # oversubscribe them (multi-threaded OpenBLAS made the drift tests 10-30x slower).
        threadpool_limits(limits=1, user_api="blas")
        s = self.settings
        embedder = self._embedder or load_embedder(s.model, threads=s.worker.torch_threads or 1)
        curator = Curator(s, embedder, incarnation=f"{time.time_ns():x}")  # alert ids per run
        self.checkpoint.lock()
        tail = self._changelog or ClassTail(s, self.topics, self._log)
        try:
            events = tail.catch_up()
            self.epoch = tail.epoch + 1  # fences any older learner still writing
        finally:
            tail.close()
        rec = recover(curator, self.checkpoint, events, tail.learner_offsets, self._generation,
                      self._log)  # fmt: skip
        self._positions.update(rec.positions)
        self._stats.restored_from = rec.restored_from
        self._stats.snapshots_skipped = len(rec.skipped)
        self._catching_up = rec.catching_up
        if rec.reset_needed:  # which topics is not known: all of them
            self._request_reset(None)
        outbox, fixes = rec.outbox, rec.fixes
        seek = SeekToPositions(self._positions)
        consumer = self._consumer or make_consumer(
            s.kafka, group_id=f"{s.kafka.group_id}.learner", max_poll_records=2000
        )
        consumer.subscribe(self.topics.learner_inputs(), listener=seek)
        seek.consumer = consumer
        self._consumer = consumer
        self._publisher = self._publisher or Publisher(s.kafka, self.topics)
        self._curator = curator
        if outbox:
            self._publish_records(outbox)
            self.checkpoint.mark_published()
            self._stats.republished = len(outbox)
        if fixes.class_events or fixes.alerts:
            self._checkpoint(fixes)
            self._stats.reconciled = len(fixes.class_events)
        self._refresh_views(curator)
        self._log.info(
            "learner_ready",
            restored_from=self._stats.restored_from or "empty",
            store_version=curator.version,
            classes=self._stats.classes,
            buffered=len(curator.buffer),
            republished=len(outbox),
            reconciled=len(fixes.class_events),
            snapshot=str(self.path),
        )

    def _close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                self._consumer.close(autocommit=False)
            self._consumer = None
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
        self._discovery.shutdown()
        self._curator = None
        self.checkpoint.unlock()
