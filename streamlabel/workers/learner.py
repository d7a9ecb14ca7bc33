"""The learner: the single writer of the prototype store.

It consumes ``feedback`` (class-incremental updates) and ``unknowns`` (the
discovery buffer), receives what the stream workers labelled (drift and the
item cache, best effort over Ray), runs novel-class discovery in a background
thread, and publishes class events to ``classes``, revised labels to
``labels``, alerts to ``alerts`` and bad feedback to ``dlq``.

State and recovery: every ``runtime.snapshot_every_s`` seconds (or records) the
learner writes a snapshot — the Engine's state (store, unknown buffer,
discovery candidates) plus the ``feedback``/``unknowns`` offsets it covers — and
only then commits those offsets. A restarted learner loads the snapshot,
seeks to its offsets and replays the rest; without a snapshot it rebuilds the
store from the ``classes`` changelog. Either way its store version is moved
past the highest version on the changelog, so its next events supersede
everything replicas hold.
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack
import structlog
from kafka import ConsumerRebalanceListener
from threadpoolctl import threadpool_limits

from streamlabel.core.discovery import DiscoveryReport
from streamlabel.core.embedder import Embedder
from streamlabel.errors import PublishError, SnapshotError
from streamlabel.logging import configure_logging
from streamlabel.pipeline.engine import Engine
from streamlabel.pipeline.output import EngineOutput, Observed
from streamlabel.schemas import DeadLetter, UnknownRecord, decode
from streamlabel.workers.embedding import load_embedder
from streamlabel.workers.kafka_io import Publisher, make_consumer, to_raw
from streamlabel.workers.settings import RuntimeSettings
from streamlabel.workers.stream_worker import ClassTail, rss_bytes
from streamlabel.workers.topics import Topics

if TYPE_CHECKING:
    from kafka import KafkaConsumer

__all__ = ["Learner", "LearnerStats", "read_snapshot", "snapshot_path"]

SNAPSHOT_FORMAT = 1


def snapshot_path(settings: RuntimeSettings) -> Path:
    """Where the learner of this deployment keeps its snapshot."""
    base = settings.runtime.state_dir or os.path.join(tempfile.gettempdir(), "streamlabel")
    name = f"learner-{settings.kafka.topic_prefix}{settings.kafka.group_id}.snapshot"
    return Path(base) / name


def read_snapshot(path: Path) -> dict[str, Any] | None:
    """The snapshot at ``path`` (None when there is none).

    Raises:
        SnapshotError: the file exists but cannot be read.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {str(path)!r}: {exc}") from exc
    try:
        snap: dict[str, Any] = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (msgpack.UnpackException, ValueError) as exc:
        raise SnapshotError(f"snapshot {str(path)!r} is corrupt: {exc}") from exc
    if snap.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"snapshot {str(path)!r} has format {snap.get('format')!r}")
    return snap


@dataclass
class LearnerStats:
    """Counters of the learner."""

    feedback: int = 0
    unknowns: int = 0
    observed: int = 0
    class_events: int = 0
    revisions: int = 0
    alerts: int = 0
    dead_letters: int = 0
    discovery_runs: int = 0
    discovered: int = 0
    snapshots: int = 0
    restored_from: str = ""
    store_version: int = 0
    classes: int = 0
    buffered: int = 0
    rss_bytes: int = 0
    running: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


class _Seek(ConsumerRebalanceListener):
    """Rebalance listener that moves newly assigned partitions to the snapshot's offsets."""

    def __init__(self, offsets: dict[str, int]) -> None:
        self.offsets = offsets

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.consumer: KafkaConsumer
        for tp in assigned:
            offset = self.offsets.get(f"{tp.topic}:{tp.partition}")
            if offset is not None:
                self.consumer.seek(tp, offset)


class Learner:
    """The single writer of the store; run as one Ray actor.

    Args:
        settings: validated runtime settings (``runtime.state_dir`` holds snapshots).
        embedder: an embedder to use instead of loading the model.
    """

    def __init__(self, settings: RuntimeSettings, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_prefix)
        self._embedder = embedder
        self._engine: Engine | None = None
        self._consumer: KafkaConsumer | None = None
        self._publisher: Publisher | None = None
        self._observations: queue.SimpleQueue[Observed] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="discovery")
        self._job: Future[DiscoveryReport] | None = None
        self._stop = threading.Event()
        self._force_discovery = threading.Event()
        self._snapshot_wanted = threading.Event()
        self._class_view: list[dict[str, Any]] = []
        self._positions: dict[str, int] = {}
        self._since_snapshot = 0
        self._last_snapshot = time.monotonic()
        self._stats = LearnerStats()
        self.path = snapshot_path(settings)
        configure_logging(json_logs=settings.runtime.log_json, level=settings.runtime.log_level)
        self._log = structlog.get_logger("streamlabel.learner").bind(worker_id="learner")

    # --------------------------------------------------------------- control
    def ready(self) -> bool:
        """Loads the model, restores state and connects."""
        self._open()
        return True

    def run(self) -> dict[str, Any]:
        """The learner's loop; returns the final stats when :meth:`stop` is called."""
        self._open()
        self._stats.running = True
        try:
            while not self._stop.is_set():
                self.step()
            self._finish()
        finally:
            self._close()
            self._stats.running = False
        return self.stats()

    def stop(self) -> None:
        """Asks the loop to publish what it has, snapshot, commit and close."""
        self._stop.set()

    def request_discovery(self) -> int:
        """Runs discovery at the next step even if not due; returns the runs so far.

        Used when a stream ends (as the Engine benchmark does) and by operators.
        """
        self._force_discovery.set()
        return self._stats.discovery_runs

    def idle(self) -> bool:
        """True when no discovery is running or requested and no observation is queued."""
        return (
            self._job is None and not self._force_discovery.is_set() and self._observations.empty()
        )

    def observe(self, observed: Observed) -> None:
        """Queues items a stream worker labelled (called by workers through Ray)."""
        self._observations.put(observed)

    def stats(self) -> dict[str, Any]:
        """Current counters (plain data)."""
        s = self._stats  # written by the loop's thread only; read here
        s.rss_bytes = rss_bytes()
        return s.as_dict()

    def classes(self) -> list[dict[str, Any]]:
        """The current classes (id, name, status, origin, count, keywords, example texts).

        A view the loop refreshes after every change (Ray calls this from another thread).
        """
        return list(self._class_view)

    def request_snapshot(self, timeout_s: float = 60.0) -> int:
        """Has the loop write a snapshot at its next step; returns the snapshots written.

        Raises:
            TimeoutError: the loop did not write it in time (e.g. discovery is running).
        """
        before = self._stats.snapshots
        self._snapshot_wanted.set()
        deadline = time.monotonic() + timeout_s
        while self._stats.snapshots == before:
            if time.monotonic() > deadline:
                raise TimeoutError("the learner did not write a snapshot in time")
            time.sleep(0.05)
        return self._stats.snapshots

    def _refresh_views(self, engine: Engine) -> None:
        """Updates what other threads read (stats, class list) from the loop's thread."""
        s = self._stats
        s.store_version = engine.store.version
        s.classes = len(engine.store.active_ids())
        s.buffered = len(engine.buffer)
        self._class_view = [
            {
                "class_id": st.class_id,
                "name": st.name,
                "status": st.status,
                "origin": st.origin,
                "count": st.count,
                "keywords": list(st.keywords),
                "examples": list(st.exemplar_texts[:3]),
            }
            for st in engine.store.states().values()
        ]

    # ------------------------------------------------------------------ loop
    def step(self) -> int:
        """One poll of feedback/unknowns, plus observations and discovery; returns records."""
        engine, consumer = self._require()
        out = EngineOutput()
        polled = consumer.poll(timeout_ms=self.settings.runtime.poll_timeout_ms, max_records=2000)
        feedback: list[Any] = []
        unknowns: list[Any] = []
        for tp, messages in polled.items():
            for m in messages:
                (feedback if tp.topic == self.topics.feedback else unknowns).append(m)
                self._positions[f"{tp.topic}:{tp.partition}"] = m.offset + 1
        self._drain_observations(engine, out)  # first: feedback may name observed items
        if feedback:
            out.extend(engine.learn([to_raw(m) for m in feedback]))
            self._stats.feedback += len(feedback)
        if unknowns:
            out.extend(engine.absorb(self._decode_unknowns(unknowns, out)))
            self._stats.unknowns += len(unknowns)
        self._discover(engine, out)
        self._publish(out)
        self._since_snapshot += len(feedback) + len(unknowns)
        wanted = self._snapshot_due() or self._snapshot_wanted.is_set()
        if wanted and self._snapshot() is not None:
            self._snapshot_wanted.clear()
        self._refresh_views(engine)
        return len(feedback) + len(unknowns)

    def _snapshot(self) -> Path | None:
        """Writes the snapshot and commits the offsets it covers (skipped while discovering).

        The loop's thread only: it reads the Engine and commits with the consumer.
        """
        engine, consumer = self._require()
        if self._job is not None:
            return None  # the discoverer is busy in the background; next step
        from kafka.structs import OffsetAndMetadata, TopicPartition

        snap = {
            "format": SNAPSHOT_FORMAT,
            "engine": engine.state(),
            "offsets": dict(self._positions),
            "written_at": time.time(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(msgpack.packb(snap, use_bin_type=True))
        os.replace(tmp, self.path)
        if self._positions:
            commits = {}
            for key, offset in self._positions.items():
                topic, part = key.rsplit(":", 1)
                commits[TopicPartition(topic, int(part))] = OffsetAndMetadata(offset, None, -1)
            consumer.commit(commits)
        self._since_snapshot = 0
        self._last_snapshot = time.monotonic()
        self._stats.snapshots += 1
        self._log.debug("snapshot_written", path=str(self.path), offsets=self._positions)
        return self.path

    # ------------------------------------------------------------- internals
    def _require(self) -> tuple[Engine, KafkaConsumer]:
        if self._engine is None or self._consumer is None:
            raise RuntimeError("the learner is not open")
        return self._engine, self._consumer

    def _decode_unknowns(self, messages: list[Any], out: EngineOutput) -> list[UnknownRecord]:
        records = []
        limit = self.settings.limits.max_message_bytes * 4  # an embedding is bigger than its text
        for m in messages:
            raw = to_raw(m)
            try:
                records.append(decode(raw.value, UnknownRecord, max_bytes=limit))
            except Exception as exc:
                reason = getattr(exc, "reason", "invalid")
                out.dead_letters.append(
                    DeadLetter(
                        source=raw.source,
                        key=raw.key,
                        value=raw.value or b"",
                        reason=reason,
                        error=str(exc),
                    )
                )
        return records

    def _drain_observations(self, engine: Engine, out: EngineOutput) -> None:
        while True:
            try:
                observed = self._observations.get_nowait()
            except queue.Empty:
                return
            self._stats.observed += len(observed)
            out.extend(engine.observe(observed))

    def _discover(self, engine: Engine, out: EngineOutput) -> None:
        """Collects a finished background run; starts the next one when due."""
        if self._job is not None and self._job.done():
            job, self._job = self._job, None
            try:
                report = job.result()
            except Exception:
                self._log.exception("discovery_failed")
            else:
                found = engine.finish_discovery(report)
                self._stats.discovery_runs += 1
                self._stats.discovered += sum(e.cause == "discovery" for e in found.class_events)
                for event in found.class_events:
                    self._log.info(
                        "class_discovered",
                        class_id=event.class_id,
                        name=event.state.name,
                        members=event.state.count,
                        kind=event.kind,
                    )
                out.extend(found)
        if self._job is None and (engine.discovery_due() or self._force_discovery.is_set()):
            self._force_discovery.clear()
            self._job = self._pool.submit(engine.begin_discovery().run)

    def _publish(self, out: EngineOutput) -> None:
        publisher = self._publisher
        if publisher is None:
            raise RuntimeError("the learner is not open")
        s = self._stats
        s.class_events += len(out.class_events)
        s.revisions += len(out.labels)
        s.alerts += len(out.alerts)
        s.dead_letters += len(out.dead_letters)
        for alert in out.alerts:
            self._log.warning("drift_alert", kind=alert.kind, detail=alert.detail)
        for attempt in (1, 2):
            try:
                publisher.publish(out)
                publisher.flush()
                return
            except PublishError as exc:
                self._log.warning("publish_failed", attempt=attempt, error=str(exc))
                if attempt == 2:
                    raise

    def _snapshot_due(self) -> bool:
        r = self.settings.runtime
        if self._since_snapshot == 0:
            return False
        return (
            self._since_snapshot >= r.snapshot_every_records
            or time.monotonic() - self._last_snapshot >= r.snapshot_every_s
        )

    def _finish(self) -> None:
        """On stop: waits for a running discovery, publishes it, snapshots."""
        engine, _ = self._require()
        if self._job is not None:
            with contextlib.suppress(Exception):
                self._job.result(timeout=self.settings.runtime.stop_timeout_s / 2)
            out = EngineOutput()
            self._discover(engine, out)
            self._job = None
            self._publish(out)
        self._snapshot()

    # ------------------------------------------------------------- lifecycle
    def _open(self) -> None:
        if self._engine is not None:
            return
        # Small matrix products only: one BLAS thread, so actors sharing cores do not
        # oversubscribe them (multi-threaded OpenBLAS made the drift tests 10-30x slower).
        threadpool_limits(limits=1, user_api="blas")
        s = self.settings
        embedder = self._embedder or load_embedder(s.model, threads=s.runtime.torch_threads or 1)
        engine = Engine(s, embedder)
        tail = ClassTail(s, self.topics, self._log)
        try:
            events = tail.catch_up()
        finally:
            tail.close()
        snap = read_snapshot(self.path)
        offsets: dict[str, int] = {}
        if snap is not None:
            engine.load_state(snap["engine"])
            offsets = {str(k): int(v) for k, v in snap["offsets"].items()}
            self._stats.restored_from = "snapshot"
        elif events:
            engine.apply(events)
            self._stats.restored_from = "changelog"
        engine.store.advance_version(max((e.store_version for e in events), default=0))
        self._positions = dict(offsets)
        seek = _Seek(offsets)
        consumer = make_consumer(
            s.kafka,
            group_id=f"{s.kafka.group_id}.learner",
            topics=[self.topics.feedback, self.topics.unknowns],
            max_poll_records=2000,
            listener=seek,
        )
        seek.consumer = consumer
        self._consumer = consumer
        self._publisher = Publisher(s.kafka, self.topics)
        self._engine = engine
        self._refresh_views(engine)
        self._log.info(
            "learner_ready",
            restored_from=self._stats.restored_from or "empty",
            store_version=engine.store.version,
            classes=len(engine.store.active_ids()),
            buffered=len(engine.buffer),
            snapshot=str(self.path),
        )

    def _close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                self._consumer.close(autocommit=False)
            self._consumer = None
        if self._publisher is not None:
            self._publisher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._engine = None
