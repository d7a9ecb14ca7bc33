"""The actors' own settings: the stream workers (``worker.*``) and the learner
(``learner.*``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from streamlabel.settings.loader import Section

__all__ = ["LearnerSettings", "WorkerSettings"]


class WorkerSettings(Section):
    """A stream worker's loop: polls, the model's batches, deliveries.

    The learner shares ``poll_timeout_ms``, ``torch_threads`` and ``publish_retry_s``.
    """

    batch_size: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Max records per poll. Larger polls embed faster (the model sorts a "
        "poll's texts by length, so batches carry less padding) at the cost of latency.",
    )
    poll_timeout_ms: int = Field(
        default=200, ge=1, le=60_000, description="How long one poll waits for records."
    )
    batch_target_ms: float | None = Field(
        default=100.0,
        gt=0,
        description="Latency-bounded batches: polls sized so that embedding and classifying "
        "one batch takes about this long (between worker.min_batch_size and "
        "worker.batch_size, from the measured cost per item), except while a backlog of "
        "more than 16 such batches waits, when polls take worker.batch_size; off (or none) = "
        "every poll asks for worker.batch_size. 100 ms: p50 91 ms / p99 240 ms at half the "
        "end-to-end rate on 2 cores, against 155 / 615 ms with None.",
    )

    @field_validator("batch_target_ms", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        """``off`` or ``none`` (an environment variable or TOML cannot say null) turns it off."""
        if isinstance(value, str) and value.strip().lower() in {"off", "none", "null"}:
            return None
        return value

    batch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=10_000,
        description="How long a small batch waits to fill: a poll that returns fewer records "
        "than the poll size polls again until it is full or its oldest record has waited this "
        "long since it was produced (its Kafka timestamp; records that already waited that "
        "long, in a backlog or a busy worker, go at once). Fewer, larger batches: less CPU "
        "per item on a quiet stream, for up to this much more latency. 0 = label whatever "
        "one poll returns.",
    )

    min_batch_size: int = Field(
        default=16, ge=1, le=100_000, description="The smallest adaptive poll."
    )
    overlap: bool = Field(
        default=False,
        description="Pipelined step: the model embeds a batch on its own thread while the "
        "worker settles the batch before (delivery, commit) and prefetches the next. Off by "
        "default: on 2 CPU cores it measured no throughput gain, local model or shared "
        "actor, and a higher latency. Meant for a model on another device (a GPU), where "
        "Kafka round trips are a real share of a batch: measure it there. At most one batch "
        "is sent and uncommitted either way.",
    )
    torch_threads: int | None = Field(
        default=None, ge=1, description="Threads per local embedder; None = cores / workers."
    )
    drift_sample: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of items the learner's drift detectors see (the learner's item "
        "cache gets every item).",
    )
    max_inflight_observations: int = Field(
        default=8,
        ge=1,
        description="Observation batches a worker may have on their way to the learner; "
        "more wait in the worker's backlog (worker.observation_backlog).",
    )
    observation_backlog: int = Field(
        default=20_000,
        ge=0,
        description="Labelled items (rows) a worker keeps for the learner's item cache: "
        "those the learner has not taken yet (it is slow, or restarting) and, up to this "
        "bound, those it took, sent again to a restarted learner. Beyond it the oldest are "
        "forgotten (counted in observations_dropped if never taken): a worker's backlog "
        "covers a learner outage of about this many items. The stream never waits for it.",
    )
    observation_interval_ms: float = Field(
        default=200.0,
        ge=0,
        le=60_000,
        description="A worker sends the learner its labelled items at most this often; "
        "batches labelled meanwhile go in one call. Each call wakes the learner's loop: one "
        "per small batch (a quiet stream) took it 3x its per-item work. Feedback naming an "
        "item that has not reached the learner yet waits for it (limits.feedback_wait_s).",
    )
    publish_retry_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a worker retries delivering a batch (fresh producer, backoff) "
        "before it fails; covers a broker restart.",
    )


class LearnerSettings(Section):
    """The learner's snapshots and its discovery thread."""

    state_dir: str | None = Field(
        default=None, description="Learner snapshots; None = a temporary directory (not durable)."
    )
    snapshot_every_s: float = Field(
        default=30.0, gt=0, description="The learner snapshots at least this often..."
    )
    snapshot_every_records: int = Field(
        default=5000, ge=1, description="...or after this many input records."
    )
    discovery_nice: int = Field(
        default=19,
        ge=0,
        le=19,
        description="Scheduling niceness of the learner's discovery thread (Linux): its "
        "runs are bursts of CPU that take the cores only when the labels do not need them "
        "(on 2 cores, half-rate p99 248-324 ms at 0; 134 ms with discovery off). 0 = the "
        "learner's own priority.",
    )
