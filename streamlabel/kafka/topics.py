"""Topic names (with the configured prefix) and their creation at start-up.

See DESIGN.md §3. ``classes`` has one partition: it is the store's changelog and
every replica must read it in the learner's order. ``classes`` and ``labels``
ask for log compaction (brokers that do not compact, like tansu, just keep
everything; nothing here relies on compaction for correctness). ``commands``
(keyed by class id) is read by the learner only; it answers each command on
``command_results``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import structlog

from streamlabel.errors import BrokerError
from streamlabel.settings.kafka import KafkaSettings

__all__ = ["TOPIC_KINDS", "Topics", "ensure_topics"]

log = structlog.get_logger(__name__)

TOPIC_KINDS: Final = (
    "items", "labels", "feedback", "unknowns", "classes", "alerts", "dlq", "commands",
    "command_results",
)  # fmt: skip
_SINGLE_PARTITION: Final = frozenset({"classes", "alerts", "command_results"})
_COMPACTED: Final = frozenset({"classes", "labels"})


@dataclass(frozen=True)
class Topics:
    """The topic names for one deployment.

    Example:
        >>> Topics("sl.").labels
        'sl.labels'
    """

    prefix: str = "sl."
    items_topic: str | None = None
    feedback_topic: str | None = None

    @classmethod
    def of(cls, settings: KafkaSettings) -> Topics:
        """The topics of a deployment's Kafka settings (prefix and shared inputs)."""
        return cls(settings.topic_prefix, settings.items_topic, settings.feedback_topic)

    def name(self, kind: str) -> str:
        """The full name of a topic kind (``items``, ``labels``...).

        Example:
            >>> Topics("v2.", items_topic="sl.items").name("items")
            'sl.items'
        """
        if kind not in TOPIC_KINDS:
            raise ValueError(f"unknown topic kind {kind!r}")
        if kind == "items" and self.items_topic:
            return self.items_topic
        if kind == "feedback" and self.feedback_topic:
            return self.feedback_topic
        return f"{self.prefix}{kind}"

    @property
    def items(self) -> str:
        return self.name("items")

    @property
    def labels(self) -> str:
        return self.name("labels")

    @property
    def feedback(self) -> str:
        return self.name("feedback")

    @property
    def unknowns(self) -> str:
        return self.name("unknowns")

    @property
    def classes(self) -> str:
        return self.name("classes")

    @property
    def alerts(self) -> str:
        return self.name("alerts")

    @property
    def dlq(self) -> str:
        return self.name("dlq")

    @property
    def commands(self) -> str:
        return self.name("commands")

    @property
    def command_results(self) -> str:
        return self.name("command_results")

    def learner_inputs(self) -> list[str]:
        """The topics the learner consumes: ``feedback``, ``unknowns``, ``commands``."""
        return [self.feedback, self.unknowns, self.commands]

    def all(self) -> list[str]:
        """Every topic name."""
        return [self.name(k) for k in TOPIC_KINDS]


def ensure_topics(
    settings: KafkaSettings, topics: Topics | None = None, *, strict: bool = True
) -> list[str]:
    """Creates the missing topics; returns the names it created.

    With ``strict`` (start-up) a ``classes`` topic with more than one partition is
    refused. Without (recovery from a broker that lost its topics, where a client's
    fetch may have had the broker auto-create it with its default partitions) it
    is accepted with a warning: replicas read and the learner writes partition 0
    only, so the other partitions stay empty.

    Raises:
        BrokerError: the broker cannot be reached or refuses to create a topic.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    from streamlabel.kafka.io import client_errors  # kafka_io imports this module

    topics = topics or Topics.of(settings)
    with client_errors(settings):
        admin = KafkaAdminClient(**settings.client_kwargs())
    try:
        existing = set(admin.list_topics())
        if topics.classes in existing:
            try:
                _check_single_partition(admin, topics.classes)
            except BrokerError as exc:
                if strict:
                    raise
                log.warning("changelog_partitions", error=str(exc))
        missing = [
            NewTopic(
                name,
                1 if kind in _SINGLE_PARTITION else settings.partitions,
                settings.replication_factor,
                topic_configs={"cleanup.policy": "compact"} if kind in _COMPACTED else {},
            )
            for kind in TOPIC_KINDS
            if (name := topics.name(kind)) not in existing
        ]
        if not missing:
            return []
        if not settings.create_topics:
            names = ", ".join(t.name for t in missing)
            raise BrokerError(f"topics missing and kafka.create_topics is false: {names}")
        created = []
        for topic in missing:  # one by one: a concurrent creator is not an error
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                raise BrokerError(f"cannot create topic {topic.name!r}: {exc}") from exc
        log.info("topics_created", topics=created)
        return created
    except KafkaError as exc:
        raise BrokerError(f"Kafka admin request failed: {exc}") from exc
    finally:
        admin.close()


def _check_single_partition(admin: Any, topic: str) -> None:
    """The changelog must have exactly one partition (replicas read partition 0 in order)."""
    described = admin.describe_topics([topic])
    partitions = len(described[0].get("partitions", [])) if described else 0
    if partitions != 1:
        raise BrokerError(
            f"topic {topic!r} has {partitions} partitions; the class changelog needs exactly 1 "
            "(delete it or choose another kafka.topic_prefix)"
        )
