"""Prometheus metrics of the stream workers, the learner and the driver.

Counters and gauges are read from the process's own stats when Prometheus
scrapes (a collector: nothing on the hot path); per-batch latencies go into
histograms. One registry per process, and every ``streamlabel_*`` series
carries ``actor`` (``worker-0``, ``learner``, ``driver``) besides the labels
Prometheus adds for the pod. The standard ``process_*`` series (RSS, CPU) come
with each registry.

Example:
    >>> m = ActorMetrics("worker-0", lambda: {"items": 3}, worker_families)
    >>> m.observe_batch({"embed": 0.2, "commit": 0.01}, 0.25)
    >>> b"streamlabel_items_consumed_total" in m.exposition()
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "LATENCY_BUCKETS",
    "STAGES",
    "ActorMetrics",
    "driver_families",
    "learner_families",
    "worker_families",
]

STAGES: Final = (
    "poll", "decode", "embed", "classify", "encode", "publish", "commit", "observe",
)  # fmt: skip
"""The stages of a stream worker's step, in order (``streamlabel_stage_seconds``)."""

LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

Families = Callable[[str, Mapping[str, Any]], Iterable[Metric]]


def _counter(name: str, doc: str, actor: str, value: float) -> CounterMetricFamily:
    c = CounterMetricFamily(name, doc, labels=["actor"])
    c.add_metric([actor], float(value))
    return c


def _gauge(name: str, doc: str, actor: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["actor"])
    g.add_metric([actor], float(value))
    return g


def _by(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    doc: str,
    actor: str,
    label: str,
    values: Mapping[str, float],
) -> Metric:
    m = kind(name, doc, labels=["actor", label])
    for key, value in sorted(values.items()):
        m.add_metric([actor, str(key)], float(value))
    return m


_WORKER_COUNTERS: Final = (
    ("items_consumed", "items", "Records consumed from the items topic."),
    ("items_labelled", "labels", "Label records published (first labels)."),
    ("items_unknown", "unknowns", "Items labelled unknown (open set)."),
    ("batches", "batches", "Batches processed and committed."),
    ("commits", "commits", "Successful offset commits."),
    ("commit_failures", "commit_failures", "Commits refused or failed (batch redelivered)."),
    ("rebalances", "rebalances", "Partition assignments received."),
    ("fenced_batches", "fenced_batches", "Batches dropped for outliving max.poll.interval."),
    (
        "rebalanced_batches",
        "rebalanced_batches",
        "Embedded batches dropped (not sent) because the group rebalanced while they were "
        "prefetched or embedded; they are read again.",
    ),
    ("publish_retries", "publish_retries", "Failed deliveries retried."),
    (
        "observations_dropped",
        "observations_dropped",
        "Labelled rows the worker's backlog forgot before the learner took them in.",
    ),
    ("class_events_applied", "class_events_applied", "Class events applied to the replica."),
    ("partition_resets", "partition_resets", "Partitions rewound after a topic was recreated."),
    ("worker_broker_resets", "broker_resets", "Broker resets this worker recovered from."),
)


def _counters(
    table: tuple[tuple[str, str, str], ...], actor: str, s: Mapping[str, Any]
) -> Iterator[Metric]:
    """``streamlabel_<name>_total`` for each ``(name, stats key, help)`` of a table."""
    for name, key, doc in table:
        yield _counter(f"streamlabel_{name}", doc, actor, s.get(key, 0))


def worker_families(actor: str, s: Mapping[str, Any]) -> Iterator[Metric]:
    """The metrics of a stream worker, from its ``WorkerStats``."""
    yield from _counters(_WORKER_COUNTERS, actor, s)
    yield _by(
        CounterMetricFamily,
        "streamlabel_dead_letters",
        "Records sent to the dead-letter topic, by reason.",
        actor,
        "reason",
        s.get("dead_letter_reasons", {}),
    )
    lag = GaugeMetricFamily(
        "streamlabel_consumer_lag",
        "Records behind the high watermark, per assigned partition.",
        labels=["actor", "topic", "partition"],
    )
    for key, value in sorted(s.get("lag", {}).items()):
        topic, _, partition = str(key).rpartition(":")
        lag.add_metric([actor, topic, partition], float(value))
    yield lag
    yield _gauge("streamlabel_assigned_partitions", "Partitions assigned.", actor,
                 len(s.get("assigned", [])))  # fmt: skip
    yield from _store_families(actor, s)
    yield _gauge("streamlabel_up", "1 while the actor's loop runs.", actor, s.get("running", 0))


def _store_families(actor: str, s: Mapping[str, Any]) -> Iterator[Metric]:
    yield _gauge("streamlabel_store_version", "Prototype store version.", actor,
                 s.get("store_version", 0))  # fmt: skip
    yield _by(
        GaugeMetricFamily,
        "streamlabel_classes",
        "Classes in the store, by status.",
        actor,
        "status",
        s.get("classes_by_status", {}),
    )


_LEARNER_COUNTERS: Final = (
    ("feedback", "feedback", "Feedback records applied."),
    ("unknowns_absorbed", "unknowns", "Unknown records taken into the discovery buffer."),
    ("observed", "observed", "Labelled items received for drift detection."),
    ("class_events", "class_events", "Class events published on the changelog."),
    ("revisions", "revisions", "Label revisions published."),
    ("discovery_runs", "discovery_runs", "Discovery runs finished."),
    ("discovered_classes", "discovered", "Classes created by discovery."),
    ("snapshots", "snapshots", "Learner snapshots written."),
    ("learner_dead_letters", "dead_letters", "Learner inputs sent to the dead-letter topic."),
    ("broker_resets", "broker_resets", "Broker resets recovered from."),
    ("learner_observations_dropped", "observations_dropped", "Drift observations dropped."),
)


def learner_families(actor: str, s: Mapping[str, Any]) -> Iterator[Metric]:
    """The metrics of the learner, from its ``LearnerStats``."""
    yield from _counters(_LEARNER_COUNTERS, actor, s)
    yield _by(
        CounterMetricFamily,
        "streamlabel_alerts",
        "Drift alerts published, by kind.",
        actor,
        "kind",
        s.get("alerts_by_kind", {}),
    )
    yield _gauge("streamlabel_unknowns_buffered", "Unknowns waiting for discovery.", actor,
                 s.get("buffered", 0))  # fmt: skip
    yield _gauge("streamlabel_learner_lag", "Records the learner is behind on its inputs.", actor,
                 s.get("lag", 0))  # fmt: skip
    yield from _store_families(actor, s)
    yield _gauge("streamlabel_up", "1 while the actor's loop runs.", actor, s.get("running", 0))


def driver_families(actor: str, s: Mapping[str, Any]) -> Iterator[Metric]:
    """The metrics of the driver (``streamlabel run``): the deployment as a whole."""
    yield _gauge("streamlabel_workers", "Stream workers running.", actor, s.get("workers", 0))
    yield _gauge("streamlabel_workers_desired", "Stream workers the autoscaler wants.", actor,
                 s.get("workers_desired", 0))  # fmt: skip
    yield _gauge("streamlabel_group_lag", "Consumer group lag on the items topic.", actor,
                 s.get("lag", 0))  # fmt: skip
    yield _by(
        CounterMetricFamily,
        "streamlabel_actor_restarts",
        "Restarts of each supervised actor.",
        actor,
        "slot",
        s.get("restarts", {}),
    )
    yield _counter("streamlabel_scale_events", "Workers added or removed by the autoscaler.",
                   actor, s.get("scale_events", 0))  # fmt: skip
    yield _counter("streamlabel_deployment_broker_resets", "Broker resets detected.", actor,
                   s.get("broker_resets", 0))  # fmt: skip
    yield _by(
        CounterMetricFamily,
        "streamlabel_actor_hung",
        "Actors killed (then restarted) because their loop made no step for metrics.stall_s.",
        actor,
        "slot",
        s.get("hung", {}),
    )
    yield _by(
        GaugeMetricFamily,
        "streamlabel_slot_exhausted",
        "1 while a supervised actor is down with its restart budget spent "
        "(supervisor.max_restarts per supervisor.restart_window_s); tried again a window later.",
        actor,
        "slot",
        s.get("exhausted", {}),
    )
    yield _gauge("streamlabel_degraded", "1 while a supervised actor is exhausted (the rest "
                 "keeps running).", actor, s.get("degraded", 0))  # fmt: skip


class _StatsCollector(Collector):
    def __init__(self, actor: str, read: Callable[[], Mapping[str, Any]], families: Families):
        self._actor = actor
        self._read = read
        self._families = families

    def collect(self) -> Iterable[Metric]:
        # The loop's thread may add a key to a stats dict while this (the server's)
        # thread copies it; a copy that raced is simply taken again.
        for attempt in range(3):
            try:
                stats = self._read()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        return list(self._families(self._actor, stats))


class ActorMetrics:
    """The registry of one process: stats-backed families plus latency histograms.

    Args:
        actor: the ``actor`` label (``worker-0``, ``learner``, ``driver``).
        read: returns the current stats (called at each scrape, from the server's thread).
        families: turns stats into metric families (:func:`worker_families`...).
    """

    def __init__(self, actor: str, read: Callable[[], Mapping[str, Any]], families: Families):
        self.actor = actor
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_StatsCollector(actor, read, families))
        ProcessCollector(registry=self.registry)
        self._stage = Histogram(
            "streamlabel_stage_seconds",
            "Seconds per batch spent in each stage of a step.",
            labelnames=["actor", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._batch = Histogram(
            "streamlabel_batch_seconds",
            "Seconds per batch from the end of the poll to the commit.",
            labelnames=["actor"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._stages = {stage: self._stage.labels(actor, stage) for stage in STAGES}
        self._whole = self._batch.labels(actor)

    def observe_batch(self, stage_s: Mapping[str, float], total_s: float | None) -> None:
        """Records one batch: seconds per stage (unknown stages too), and the whole."""
        for stage, seconds in stage_s.items():
            child = self._stages.get(stage)
            if child is None:
                child = self._stages[stage] = self._stage.labels(self.actor, stage)
            child.observe(seconds)
        if total_s is not None:
            self._whole.observe(total_s)

    def exposition(self) -> bytes:
        """The text Prometheus would scrape."""
        return generate_latest(self.registry)
