"""The Kafka cluster and the clients' behaviour (``kafka.*``), and the one exporter
of the clients' keyword arguments (:meth:`KafkaSettings.client_kwargs`).

Also what travels on the topics: the wire format streamlabel writes to each one
(``kafka.format.<topic>``; a reader takes either format on every topic) and how
a foreign record on the items topic makes an item (``kafka.items_mapping.*``).
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Final, Literal

import structlog
from pydantic import Field, SecretStr, field_validator, model_validator

from streamlabel.errors import SettingsError
from streamlabel.schemas.codec import Format
from streamlabel.schemas.mapping import DEFAULT_MAPPING, ItemMapping
from streamlabel.settings.loader import Section

__all__ = ["FORMATTED_TOPICS", "ItemsMappingSettings", "KafkaSettings", "TopicFormats"]

log = structlog.get_logger(__name__)

_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._\-]*$")
"""What ``topic_prefix`` and ``group_id`` may hold: they name topics and files (the
learner's snapshot), so no path separator."""


FORMATTED_TOPICS: Final = (
    "items", "labels", "feedback", "unknowns", "classes", "alerts", "commands",
    "command_results",
)  # fmt: skip
"""The topics whose records have a wire format: every topic but ``dlq``, which carries
each failed message's own bytes, unchanged, with the reason in its headers."""

_FORMATS: Final = ("msgpack", "json")


def _written(topic: str, readers: str) -> Any:
    return Field(
        default="msgpack",
        description=f"Wire format streamlabel writes to the {topic} topic ({readers}): "
        "msgpack or json. Readers take either, whatever this says.",
    )


class TopicFormats(Section):
    """The wire format of what streamlabel writes, per topic (``kafka.format.<topic>``).

    ``kafka.format = "json"`` sets every topic at once.

    Example:
        >>> TopicFormats.model_validate("json").of("labels")
        'json'
    """

    items: Format = _written("items", "`streamlabel produce` and the client")
    labels: Format = _written("labels", "stream workers")
    feedback: Format = _written("feedback", "`streamlabel feedback` and the client")
    unknowns: Format = _written("unknowns", "stream workers, for the learner")
    classes: Format = _written("classes", "the learner's class changelog")
    alerts: Format = _written("alerts", "the learner's drift alerts")
    commands: Format = _written("commands", "the CLI and the client")
    command_results: Format = _written("command_results", "the learner's command answers")

    @model_validator(mode="before")
    @classmethod
    def _one_for_all(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in _FORMATS:
                raise ValueError(f"{value!r} is not a wire format, expected 'msgpack' or 'json'")
            return dict.fromkeys(FORMATTED_TOPICS, value)
        if isinstance(value, dict) and "dlq" in value:
            raise ValueError(
                "kafka.format.dlq is not a setting: a dead letter is the failed message's "
                "own bytes, unchanged, with the reason in its headers"
            )
        return value

    def of(self, kind: str) -> Format:
        """The format of a topic kind (``items``, ``labels``...).

        Raises:
            ValueError: ``kind`` is ``dlq`` or no topic kind.
        """
        if kind not in FORMATTED_TOPICS:
            raise ValueError(f"topic kind {kind!r} has no wire format")
        fmt: Format = getattr(self, kind)
        return fmt


class ItemsMappingSettings(Section):
    """How a foreign record on the items topic (a JSON object or msgpack map that is
    not a streamlabel envelope) makes an item; envelopes are read as they are."""

    id_field: str = Field(
        default=DEFAULT_MAPPING.id_field,
        min_length=1,
        description="Field holding the item id (a string, or an integer turned into its "
        "decimal string). A record without it gets the id <topic>:<partition>:<offset> "
        "of the message it came in, stable across restarts and replays.",
    )
    text_field: str = Field(
        default=DEFAULT_MAPPING.text_field, min_length=1, description="Field holding the text."
    )
    vector_field: str | None = Field(
        default=DEFAULT_MAPPING.vector_field,
        description="Field holding a pre-computed embedding (a number array, or float32 "
        'bytes in msgpack); "" (or None) reads none. A record needs a text or a vector.',
    )
    metadata_fields: tuple[str, ...] = Field(
        default=DEFAULT_MAPPING.metadata_fields,
        description="Fields copied into the item's metadata; their values must be "
        "strings, numbers, booleans or null. Other fields are ignored.",
    )

    @field_validator("vector_field")
    @classmethod
    def _none_when_empty(cls, v: str | None) -> str | None:
        return v or None  # TOML has no null

    @model_validator(mode="after")
    def _distinct(self) -> ItemsMappingSettings:
        self.to_mapping()  # its ValueError names the field mapped twice
        return self

    def to_mapping(self) -> ItemMapping:
        """The codec's mapping."""
        return ItemMapping(
            id_field=self.id_field,
            text_field=self.text_field,
            vector_field=self.vector_field,
            metadata_fields=self.metadata_fields,
        )


class KafkaSettings(Section):
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
    fetch_max_wait_ms: int = Field(
        default=25,
        ge=1,
        le=60_000,
        description="How long a stream worker's fetch of items may wait at the broker for "
        "data: the one consumer on the item-to-label path (kafka-python's 500 ms default "
        "added 124 ms p50 / 242 ms p99 to that hop on the embedded broker, which answers a "
        "waiting fetch only at this deadline; 25 ms costs an idle consumer 40 fetches a "
        "second).",
    )
    background_fetch_max_wait_ms: int = Field(
        default=250,
        ge=1,
        le=60_000,
        description="The same for every other consumer: the learner's inputs, the workers' "
        "class-event tail, readers of output topics. An idle consumer with a 25 ms wait took "
        "9% of a core (client and embedded broker), 1.6% with 250 ms; these hops add at "
        "most this to a feedback's or a command's turnaround, never to a label's latency.",
    )
    format: TopicFormats = Field(
        default=TopicFormats(),
        description="Wire format written to each topic (kafka.format.<topic>).",
    )
    items_mapping: ItemsMappingSettings = Field(
        default=ItemsMappingSettings(),
        description="How a foreign record on the items topic makes an item.",
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

    @field_validator("topic_prefix", "group_id")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _SAFE_NAME.match(v) or ".." in v:
            raise ValueError(
                "only letters, digits, '.', '_' and '-', and no '..' (it names topics and the "
                "learner's snapshot file)"
            )
        return v

    @model_validator(mode="after")
    def _security(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise ValueError("sasl_mechanism is required with a SASL security_protocol")
            if not self.sasl_username or self.sasl_password is None:
                raise ValueError("sasl_username and sasl_password are required with SASL")
        if self.security_protocol == "SASL_PLAINTEXT" and self.sasl_password is not None:
            _warn_cleartext(self.sasl_mechanism)
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


def _warn_cleartext(mechanism: str | None) -> None:
    """SASL over PLAINTEXT: accepted (a trusted network, a local test broker) but said."""
    message = (
        f"kafka.security_protocol SASL_PLAINTEXT with a password: the SASL exchange "
        f"({mechanism}) crosses the network unencrypted"
        + (", the password in clear" if mechanism == "PLAIN" else "")
        + "; use SASL_SSL outside a trusted network"
    )
    warnings.warn(message, UserWarning, stacklevel=2)
    log.warning("kafka_sasl_plaintext", mechanism=mechanism, hint="use SASL_SSL")
