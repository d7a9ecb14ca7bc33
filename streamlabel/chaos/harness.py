"""The chaos harness: one real deployment, a producer that writes down where every
input landed, and readers that collect every first label and dead letter.

The deployment is the production one (embedded tansu, local Ray, stream
workers and a learner with the real model), started with settings that make
faults quick to see: short session timeouts, a short ``max_poll_interval_ms``,
frequent snapshots, and the production restart budget
(``supervisor.max_restarts``) over a short window with short backoffs, so
that the suite exercises the restart policy without waiting on it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from streamlabel.chaos.actors import CHAOS_ACTORS
from streamlabel.chaos.ledger import Ledger, Outcomes, Verdict, check
from streamlabel.datasets import DemoPlan, plan_demo, read_tsv
from streamlabel.errors import DecodeError, StreamlabelError
from streamlabel.kafka.client import TopicReader, produce_feedback
from streamlabel.runtime.slots import SlotState
from streamlabel.runtime.supervisor import Runtime
from streamlabel.schemas import Item, LabelRecord, decode, encode
from streamlabel.settings.runtime import RuntimeSettings, load_runtime_settings
from streamlabel.waiting import wait_until

__all__ = ["ChaosConfig", "Harness", "chaos_settings"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ChaosConfig:
    """What a chaos run streams and how hard it pushes."""

    dataset: Path
    cycles: int = 1
    items_per_cycle: int = 400
    workers: int = 2
    seed: int = 0
    delivery_timeout_s: float = 240.0


def chaos_settings(workers: int, state_dir: str | None = None) -> RuntimeSettings:
    """Settings that make faults quick to observe (and restarts quick: the production
    budget of restarts per actor, within a 60 s window, with backoffs of 1-4 s; a
    restart takes several seconds, the model's load, so a shorter window could
    never be spent by ``crash_loop``)."""
    return load_runtime_settings(
        None,
        kafka={
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 2000,
            "max_poll_interval_ms": 15_000,
            "delivery_timeout_s": 10.0,
        },
        ray={"num_cpus": 4},
        supervisor={
            "workers": workers,
            "restart_window_s": 60.0,
            "restart_backoff_s": 1.0,
            "restart_backoff_max_s": 4.0,
            "broker_check_s": 1.0,
            "stop_timeout_s": 30.0,
        },
        learner={"snapshot_every_s": 2.0, "state_dir": state_dir},
        logging={"level": "warning"},
        # small polls, so that "one batch per fault" is a bound the suite can break
        worker={"batch_size": 64},
    )


class Harness:
    """A started deployment plus the bookkeeping of what went in and what came out."""

    def __init__(self, config: ChaosConfig, settings: RuntimeSettings) -> None:
        self.config = config
        self.runtime = Runtime(settings, actors=CHAOS_ACTORS)
        self.outcomes = Outcomes()
        self.fault_marks: list[int] = []
        self._peak_workers = 0
        self.plan: DemoPlan | None = None
        self._texts: list[str] = []
        self._next_text = 0
        self._readers: dict[str, TopicReader] = {}
        self._producer: Any = None

    # ------------------------------------------------------------- lifecycle
    def start(self) -> Harness:
        """Starts the deployment and teaches it the known classes."""
        d = self.config.dataset
        self.plan = plan_demo(
            read_tsv(d / "train.tsv"), read_tsv(d / "test.tsv"),
            n_items=4000, seed=self.config.seed, labeled_ratio=0.03,
        )  # fmt: skip
        self._texts = [it.text or "" for it in self.plan.items[: self.plan.shift_at]]
        self.runtime.start()
        produce_feedback(self.kafka, self.plan.feedback)
        self.runtime.wait_until_learned(len(self.plan.feedback))
        return self

    def stop(self) -> None:
        self.reset_readers()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.close(timeout=5)
            self._producer = None
        self.runtime.stop()

    def __enter__(self) -> Harness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def kafka(self) -> Any:
        return self.runtime.settings.kafka

    # ------------------------------------------------------------- producing
    def texts(self, n: int) -> list[str]:
        """The next ``n`` texts of known classes (cycling through the stream)."""
        out = []
        for _ in range(n):
            out.append(self._texts[self._next_text % len(self._texts)])
            self._next_text += 1
        return out

    def produce(
        self, ledger: Ledger, values: Iterable[tuple[str, bytes, bool]], *, topic: str | None = None
    ) -> int:
        """Sends ``(item_id, value, poison)`` records to ``items`` (or ``topic``);
        writes down where each one landed. Returns how many were sent."""
        from kafka import KafkaProducer

        if self._producer is None:
            self._producer = KafkaProducer(
                acks="all", linger_ms=5, max_request_size=8 * 1024 * 1024,
                allow_auto_create_topics=False,
                **self.kafka.client_kwargs(),
            )  # fmt: skip
        topic = topic or self.runtime.topics.items
        sent = [
            (item_id, poison, self._producer.send(topic, key=item_id.encode(), value=value))
            for item_id, value, poison in values
        ]
        self._producer.flush(timeout=60)
        for item_id, poison, future in sent:
            meta = future.get(timeout=60)
            ledger.add(item_id, meta.partition, meta.offset, poison=poison)
        return len(sent)

    def produce_texts(self, ledger: Ledger, n: int) -> list[str]:
        """Produces ``n`` valid items named ``<prefix><k>``; returns their ids."""
        base = len(ledger)
        ids = [f"{ledger.prefix}{base + k}" for k in range(n)]
        records = [
            (i, encode(Item(id=i, text=t)), False) for i, t in zip(ids, self.texts(n), strict=True)
        ]
        self.produce(ledger, records)
        return ids

    def produce_into(
        self, ledger: Ledger, prefix: str, values: Iterable[tuple[str, bytes, bool]]
    ) -> int:
        """Like :meth:`produce`, into the ``items`` topic of another topic prefix."""
        return self.produce(ledger, values, topic=f"{prefix}items")

    def read_topic(self, kind: str, *, raw: bool = False) -> list[Any]:
        """Everything topic ``kind`` holds now: its decoded records, or its raw messages
        (with their headers) when ``raw``."""
        reader = TopicReader(self.kafka, kind)
        out: list[Any] = []
        try:
            while got := reader.poll(timeout_ms=500) if raw else reader.records(timeout_ms=500):
                out.extend(got)
        finally:
            reader.close()
        return out

    def class_count(self, name: str) -> int | None:
        """The example count of the learner's class named ``name`` (None: no such class)."""
        for c in self.runtime.call_learner("classes"):
            if c["name"] == name:
                return int(c["count"])
        return None

    def committed(self, group: str) -> dict[str, int]:
        """The committed offsets of a consumer group (``topic:partition`` -> offset)."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(**self.kafka.client_kwargs())
        try:
            offsets = admin.list_group_offsets(group).get(group, {})
        finally:
            admin.close()
        return {f"{tp.topic}:{tp.partition}": int(o.offset) for tp, o in offsets.items()
                if o.offset >= 0}  # fmt: skip

    def reset_producer(self) -> None:
        """Drops the harness's producer (after a broker restart it cannot be reused)."""
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.close(timeout=0)
            self._producer = None

    # ------------------------------------------------------------- collecting
    def pump(self) -> int:
        """Reads what is new on ``labels`` and ``dlq``, and lets the supervisor
        restart dead actors and notice a broker reset. Returns records read."""
        self.runtime.check()
        n = 0
        for kind in ("labels", "dlq"):
            reader = self._reader(kind)
            if reader is None:
                continue
            for m in reader.poll(timeout_ms=100):
                n += 1
                if kind == "labels":
                    with contextlib.suppress(DecodeError):
                        rec = decode(m.value, LabelRecord, max_bytes=64 * 1024 * 1024)
                        if rec.revision == 0 and rec.source is not None:
                            self.outcomes.add_label(
                                rec.item_id, rec.source.partition, rec.source.offset,
                                at=time.monotonic(),
                            )  # fmt: skip
                else:
                    headers = dict(m.headers or [])
                    if headers.get("source.topic", b"").decode() == self.runtime.topics.items:
                        self.outcomes.add_dead(
                            int(headers["source.partition"]),
                            int(headers["source.offset"]),
                            headers.get("error.reason", b"").decode(),
                        )
        return n

    def reset_readers(self) -> None:
        """Closes the readers: the next pump reads the output topics from their
        (new) beginning."""
        for reader in self._readers.values():
            with contextlib.suppress(Exception):
                reader.close()
        self._readers.clear()

    def _reader(self, kind: str) -> TopicReader | None:
        reader = self._readers.get(kind)
        if reader is None:
            try:
                reader = self._readers[kind] = TopicReader(self.kafka, kind)
            except StreamlabelError:
                return None  # the topic is being recreated
        return reader

    def wait_delivered(
        self,
        ledger: Ledger,
        timeout_s: float | None = None,
        *,
        also: Callable[[], Any] = lambda: None,
    ) -> bool:
        """Pumps until every input of ``ledger`` has an outcome (or the time is up);
        ``also`` runs on every round (a scenario's own driving)."""
        timeout = timeout_s if timeout_s is not None else self.config.delivery_timeout_s

        def done() -> bool:
            self.pump()
            also()
            verdict = check(ledger, self.outcomes)
            return verdict.lost == 0

        try:
            wait_until(done, timeout_s=timeout, interval_s=0.05, what="every input delivered")
        except StreamlabelError:
            return False
        self.drain()
        return True

    def drain(self, quiet_s: float = 1.5) -> None:
        """Pumps until nothing new arrives for ``quiet_s`` (late duplicates included)."""
        last = time.monotonic()
        deadline = last + 60
        while time.monotonic() - last < quiet_s and time.monotonic() < deadline:
            if self.pump():
                last = time.monotonic()

    def mark_fault(self) -> None:
        """Notes that a fault is being injected now (duplicates after it are its own)."""
        self.fault_marks.append(len(self.outcomes.labels))
        self._peak_workers = max(self._peak_workers, len(self.runtime.workers) + 1)

    def per_fault_bound(self) -> int:
        """What one fault may cost: the batch in flight on each worker's partitions
        (counting a worker that joins during the fault)."""
        workers = max(self._peak_workers, len(self.runtime.workers), 1)
        return self.runtime.settings.worker.batch_size * workers

    def verdict(self, name: str, ledger: Ledger, *, max_duplicates: int | None = None,
                **details: Any) -> Verdict:  # fmt: skip
        """The scenario's verdict (its extra ``details`` merged in); duplicates are
        charged to the faults marked since the last verdict."""
        v = check(
            ledger, self.outcomes, max_duplicates=max_duplicates, event_marks=self.fault_marks,
            max_per_event=self.per_fault_bound() if self.fault_marks else None,
        )  # fmt: skip
        self.fault_marks = []
        self._peak_workers = 0
        v.name = name
        v.details.update(details)
        log.info("chaos_verdict", scenario=name, inputs=v.inputs, lost=v.lost,
                 duplicates=v.duplicates, unexpected=v.unexpected, passed=v.passed)  # fmt: skip
        return v

    # ---------------------------------------------------------------- actors
    def call(self, handle: Any, method: str, *args: Any, timeout_s: float = 60.0) -> Any:
        import ray

        return ray.get(getattr(handle, method).remote(*args), timeout=timeout_s)

    def wait_restarted(self, name: str, restarts_before: int, timeout_s: float = 300.0) -> None:
        """Pumps until the supervisor has restarted ``name`` (after a kill) and its new
        actor runs (a relaunch starts in the background, after a backoff)."""
        slot = next(s for s in self.runtime._slots() if s.name == name)

        def restarted() -> bool:
            self.pump()
            return slot.restarts > restarts_before and slot.state is SlotState.RUNNING

        wait_until(restarted, timeout_s=timeout_s, interval_s=0.1, what=f"{name} restarted")

    def replicas_converged(self, timeout_s: float = 60.0) -> bool:
        """True once every worker's replica holds the learner's classes and versions."""

        def same() -> bool:
            self.pump()
            want = self.runtime.call_learner("replica")
            return all(self.call(w.handle, "replica") == want for w in self.runtime.workers)

        try:
            wait_until(same, timeout_s=timeout_s, interval_s=0.3, what="replicas converged")
        except StreamlabelError:
            return False
        return True
