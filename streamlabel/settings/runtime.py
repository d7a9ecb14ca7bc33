"""Runtime settings: the Engine's settings plus Kafka, Ray and the workers.

Read once at the entry point, from (highest priority first) explicit
overrides, environment variables ``STREAMLABEL_<SECTION>__<NAME>`` and a
settings file (TOML or JSON), then passed whole to every actor. An invalid
value raises :class:`~streamlabel.errors.SettingsError` naming the setting.

Example:
    >>> s = load_runtime_settings(kafka={"topic_prefix": "t."})
    >>> s.kafka.topic_prefix, s.runtime.workers
    ('t.', 2)
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import EnvSettingsSource

from streamlabel.errors import SettingsError
from streamlabel.settings.engine import EngineSettings, _Section, describe_validation_error

__all__ = [
    "KafkaSettings",
    "MetricsSettings",
    "RaySettings",
    "RuntimeSection",
    "RuntimeSettings",
    "load_runtime_settings",
]

_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class KafkaSettings(_Section):
    """The Kafka cluster and the clients' behaviour."""

    bootstrap_servers: str | None = Field(
        default=None, description="host:port[,host:port]; None starts the embedded broker."
    )
    topic_prefix: str = Field(
        default="sl.",
        pattern=r"^[A-Za-z0-9._\-]*$",
        max_length=200,
        description="Prefix of every topic this deployment owns (items, labels, classes...).",
    )
    items_topic: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._\-]+$",
        max_length=249,
        description="The input topic; None = <topic_prefix>items. Two deployments (say, "
        "two model versions during a roll-out) can read one input topic this way.",
    )
    feedback_topic: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._\-]+$",
        max_length=249,
        description="The feedback topic; None = <topic_prefix>feedback (shareable like items).",
    )
    new_group_start: Literal["earliest", "latest"] = Field(
        default="earliest",
        description="Where a stream-worker group with no committed offset starts on the items "
        "topic: earliest labels what is retained, latest only what arrives from now on.",
    )
    partitions: int = Field(default=4, ge=1, le=10_000, description="Partitions of new topics.")
    replication_factor: int = Field(default=1, ge=1, le=16, description="Replicas of new topics.")
    create_topics: bool = Field(default=True, description="Create missing topics at start-up.")
    group_id: str = Field(
        default="streamlabel",
        min_length=1,
        description="Consumer group of the stream workers (the learner's adds .learner).",
    )
    client_id: str = Field(
        default="streamlabel", min_length=1, description="Client id the broker logs."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How clients talk to the brokers."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism (required with a SASL protocol)."
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (never logged)."
    )
    ssl_cafile: str | None = Field(default=None, description="CA bundle that signs the brokers.")
    ssl_certfile: str | None = Field(default=None, description="Client certificate (mTLS).")
    ssl_keyfile: str | None = Field(default=None, description="Client key (mTLS).")
    session_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        le=300_000,
        description="A consumer silent this long leaves the group (its partitions move).",
    )
    heartbeat_interval_ms: int = Field(
        default=3000, ge=100, description="Consumer heartbeats; at most a third of the session."
    )
    max_poll_interval_ms: int = Field(
        default=300_000,
        ge=1000,
        description="A consumer that does not poll this long leaves the group.",
    )
    request_timeout_ms: int = Field(
        default=30_000, ge=1000, le=300_000, description="Deadline of one broker request."
    )
    bootstrap_timeout_ms: int = Field(
        default=30_000,
        ge=1000,
        le=600_000,
        description="How long a client tries kafka.bootstrap_servers before giving up "
        "(start-up fails naming the address).",
    )
    startup_wait_s: float = Field(
        default=0.0,
        ge=0,
        le=86_400,
        description="How long `streamlabel run` keeps retrying at start-up while Kafka or "
        "its topics are not there yet (a broker starting next to it); 0 = fail at once.",
    )
    delivery_timeout_s: float = Field(
        default=30.0, gt=0, description="Flush deadline before a batch counts as undelivered."
    )
    linger_ms: int = Field(
        default=5, ge=0, le=1000, description="How long the producer waits to fill a batch."
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _hostports(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        for part in v.split(","):
            if not _HOSTPORT.match(part.strip()):
                raise ValueError(f"{part.strip()!r} is not host:port")
        return v

    @model_validator(mode="after")
    def _security(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise ValueError("sasl_mechanism is required with a SASL security_protocol")
            if not self.sasl_username or self.sasl_password is None:
                raise ValueError("sasl_username and sasl_password are required with SASL")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be at most a third of session_timeout_ms")
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by every kafka-python client (the one exporter)."""
        if self.bootstrap_servers is None:
            raise SettingsError("kafka.bootstrap_servers is not set (start the embedded broker)")
        kw: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",")],
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
            "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
        }
        if self.sasl_mechanism is not None:
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                kw[name] = getattr(self, name)
        return kw


class RaySettings(_Section):
    """Where the actors run."""

    address: str | None = Field(
        default=None, description="Ray cluster address; None = RAY_ADDRESS or a local Ray."
    )
    include_dashboard: bool = Field(
        default=False, description="Start a local Ray's dashboard (on 127.0.0.1)."
    )
    num_cpus: int | None = Field(default=None, ge=1, description="Local Ray's CPUs.")
    worker_num_cpus: float = Field(default=0.5, ge=0.0, description="Ray CPUs per stream worker.")
    learner_num_cpus: float = Field(default=0.25, ge=0.0, description="Ray CPUs of the learner.")
    embedder_num_gpus: float = Field(default=1.0, ge=0.0, description="GPUs of the embedder actor.")
    embedder_num_cpus: float = Field(
        default=1.0, ge=0.0, description="Ray CPUs the embedder actor holds (tokenization)."
    )
    learner_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources the learner asks for; pins it to the nodes that "
        "offer them (on Kubernetes the head, where its state volume is, through the head's "
        "rayStartParams resources).",
    )
    worker_resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources each stream worker asks for."
    )


class RuntimeSection(_Section):
    """The stream workers, the learner and the supervisor."""

    workers: int = Field(default=2, ge=1, le=1024, description="Stream workers (one group).")
    embedder: Literal["auto", "local", "actor"] = Field(
        default="auto",
        description="local: each worker loads the model; actor: one shared embedder actor "
        "(owns the GPU); auto: actor when the Ray cluster has a GPU, local otherwise.",
    )
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
        default=None,
        gt=0,
        description="Adaptive batch size: polls sized so that embedding and classifying one "
        "batch takes about this long (between runtime.min_batch_size and "
        "runtime.batch_size); None = every poll asks for runtime.batch_size.",
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
        default=1.0, ge=0.0, le=1.0, description="Share of items sent to the learner's detectors."
    )
    max_inflight_observations: int = Field(
        default=8,
        ge=1,
        description="Observation batches a worker may have on their way to the learner "
        "(more are dropped: drift detection is best effort).",
    )
    state_dir: str | None = Field(
        default=None, description="Learner snapshots; None = a temporary directory (not durable)."
    )
    snapshot_every_s: float = Field(
        default=30.0, gt=0, description="The learner snapshots at least this often..."
    )
    snapshot_every_records: int = Field(
        default=5000, ge=1, description="...or after this many input records."
    )
    max_restarts: int = Field(default=5, ge=0, description="Restarts per actor before giving up.")
    publish_retry_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a worker retries delivering a batch (fresh producer, backoff) "
        "before it fails; covers a broker restart.",
    )
    broker_check_s: float = Field(
        default=2.0,
        gt=0,
        description="How often the supervisor checks that the topics were not recreated "
        "(a broker that lost its data).",
    )
    stop_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Graceful stop: the workers' deadline (the learner "
        "gets half of it again for its last snapshot).",
    )
    worker_start_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="A worker that is not ready after this long (no node has room, the "
        "model does not load) is given up and started again.",
    )
    drained_node_wait_s: float = Field(
        default=90.0,
        ge=0,
        description="After a drain, how long a worker waits for the node it left to go "
        "away before it is started again anyway (a pod's termination grace period).",
    )
    log_json: bool = Field(default=False, description="Log JSON lines instead of text.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="The lowest level logged."
    )
    autoscale: bool = Field(
        default=False,
        description="Scale the number of stream workers on consumer lag between "
        "runtime.min_workers and runtime.max_workers (on Kubernetes, KubeRay's autoscaler "
        "then adds or removes the pods the actors need).",
    )
    min_workers: int = Field(default=1, ge=1, le=1024, description="The autoscaler's lower bound.")
    max_workers: int | None = Field(
        default=None, ge=1, le=1024, description="None = the items topic's partitions."
    )
    target_lag_per_worker: int = Field(
        default=5000, ge=1, description="Records of lag one worker is expected to absorb."
    )
    scale_up_after_s: float = Field(
        default=30.0, ge=0, description="Lag above target this long before adding workers."
    )
    scale_down_after_s: float = Field(
        default=300.0, ge=0, description="Lag below target this long before removing one."
    )
    scale_cooldown_s: float = Field(default=60.0, ge=0, description="Pause after each change.")


class MetricsSettings(_Section):
    """The Prometheus and health endpoint of every actor and of the driver."""

    enabled: bool = Field(default=True, description="Serve /metrics, /healthz, /readyz, /drain.")
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Bind address; 0.0.0.0 in a pod so Prometheus and the kubelet reach it.",
    )
    port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Base port: the driver takes it, the learner port+1, stream workers "
        "port+2 (each the first free port from there); 0 = any free port.",
    )
    port_span: int = Field(default=32, ge=1, le=1024, description="Ports tried from the base.")
    stall_s: float = Field(
        default=120.0,
        gt=0,
        description="/healthz fails when the actor's loop made no step for this long.",
    )


class RuntimeSettings(EngineSettings):
    """Engine settings plus ``kafka``, ``ray`` and ``runtime`` sections."""

    kafka: KafkaSettings = KafkaSettings()
    ray: RaySettings = RaySettings()
    runtime: RuntimeSection = RuntimeSection()
    metrics: MetricsSettings = MetricsSettings()

    @model_validator(mode="after")
    def _worker_bounds(self) -> RuntimeSettings:
        r = self.runtime
        if r.autoscale:
            top = r.max_workers if r.max_workers is not None else self.kafka.partitions
            upper = (
                f"runtime.max_workers={top}"
                if r.max_workers is not None
                else f"runtime.max_workers (unset: kafka.partitions={top})"
            )
            if not r.min_workers <= r.workers <= top:
                raise ValueError(
                    f"runtime.workers={r.workers} must lie between runtime.min_workers="
                    f"{r.min_workers} and {upper} when runtime.autoscale is on"
                )
        return self


def _read_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SettingsError(f"cannot read the settings file {str(p)!r}: {exc}") from None
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise SettingsError(f"settings file {str(p)!r} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {str(p)!r} must hold a table/object")
    return data


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_runtime_settings(
    config_file: str | Path | None = None, **overrides: Any
) -> RuntimeSettings:
    """Builds runtime settings: overrides > environment > file > defaults.

    The three sources are merged first and validated once, so a rule that
    relates two settings (e.g. SASL needs credentials) sees the merged values.

    Raises:
        SettingsError: naming every invalid setting, e.g. ``kafka.bootstrap_servers``.
    """
    file_data = _read_file(config_file) if config_file is not None else {}
    env_data = EnvSettingsSource(RuntimeSettings)()  # raw strings, not validated yet
    merged = _deep_merge(_deep_merge(file_data, env_data), overrides)
    try:
        return RuntimeSettings(**merged)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
