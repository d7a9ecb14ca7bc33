"""Notices a broker that lost its data: a topic gone, or recreated under a new id.

A Kafka topic has a unique id (``topic_id``) for its whole life; a topic that
was deleted and created again, or that a broker without durable storage
(tansu in memory, a wiped test cluster) lost when it restarted, comes back
with a new one. The supervisor records the ids of its topics at start-up and
compares them every ``supervisor.broker_check_s``; a difference means that the
offsets, the committed positions and the records of *that* topic are gone.

What is recovered depends on which topics are new (:func:`reset_scope`): a
whole broker that restarted empty recreates them all; an operator purging
``dlq`` by deleting and recreating it touches nothing that is read back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from streamlabel.kafka.io import client_errors
from streamlabel.kafka.topics import Topics
from streamlabel.settings.kafka import KafkaSettings

__all__ = ["BrokerWatch", "ResetScope", "make_admin", "reset_scope"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ResetScope:
    """Who must recover from a set of recreated topics, and from which."""

    learner: tuple[str, ...] = ()
    """The recreated topics the learner acts on: an input (``feedback``, ``unknowns``)
    it reads again from its beginning, ``classes`` to which it re-publishes every
    class. Empty: the learner is not told."""
    workers: bool = False
    """True when ``items`` or ``classes`` is new: every stream worker re-reads the
    changelog and resumes each partition at a commit that still exists."""


def reset_scope(topics: Topics, changed: Iterable[str]) -> ResetScope:
    """Which actors recover from the recreated topics ``changed``, and from what.

    A new output topic (``labels``, ``alerts``, ``dlq``) is nobody's input: its
    records are gone, nothing is replayed.

    Example:
        >>> t = Topics("sl.")
        >>> reset_scope(t, ["sl.dlq"])
        ResetScope(learner=(), workers=False)
        >>> reset_scope(t, ["sl.feedback", "sl.labels"])
        ResetScope(learner=('sl.feedback',), workers=False)
        >>> reset_scope(t, t.all())
        ResetScope(learner=('sl.feedback', 'sl.unknowns', 'sl.classes'), workers=True)
    """
    new = set(changed)
    learner = tuple(n for n in (topics.feedback, topics.unknowns, topics.classes) if n in new)
    return ResetScope(learner=learner, workers=bool(new & {topics.items, topics.classes}))


def make_admin(settings: KafkaSettings) -> Any:
    """An admin client (kafka-python's ``KafkaAdminClient``).

    Raises:
        SettingsError, BrokerError: see :func:`~streamlabel.kafka.io.client_errors`.
    """
    from kafka import KafkaAdminClient

    with client_errors(settings):
        return KafkaAdminClient(**settings.client_kwargs())


class BrokerWatch:
    """Compares the ids of the deployment's topics with those seen at start-up.

    The admin client is built on first use (by ``make``, :func:`make_admin`
    unless given) and dropped after a failure.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Topics,
        *,
        make: Callable[[KafkaSettings], Any] = make_admin,
    ) -> None:
        self._settings = settings
        self._names = topics.all()
        self._make = make
        self._admin: Any = None
        self.ids: dict[str, str] = {}
        self.unreachable = False

    def baseline(self) -> dict[str, str]:
        """Records the current topic ids (after the topics were ensured).

        When the broker cannot be asked, nothing is recorded and :meth:`changed`
        takes the baseline at its next successful call instead: a failed baseline
        never makes healthy topics look recreated.
        """
        now = self._describe()
        if now is not None:
            self.ids = now
        return self.ids

    def changed(self) -> list[str] | None:
        """Topics that are missing or have a new id (empty: none); None when the
        broker cannot be asked right now.

        Topics without a usable id (a broker older than Kafka 2.8 reports none)
        are not watched.
        """
        now = self._describe()
        if now is None:
            return None
        if not self.ids:
            self.ids = now
            return []
        return sorted(n for n in self.ids if now.get(n) != self.ids[n])

    def _describe(self) -> dict[str, str] | None:
        try:
            if self._admin is None:
                self._admin = self._make(self._settings)
            existing = set(self._admin.list_topics())
            present = [n for n in self._names if n in existing]
            ids: dict[str, str] = {}
            if present:
                for d in self._admin.describe_topics(present):
                    topic_id = str(d.get("topic_id") or "")
                    if not d.get("error_code") and topic_id.strip("0-"):
                        ids[str(d["name"])] = topic_id
        except Exception as exc:  # down or restarting: any client error means "ask later"
            if not self.unreachable:
                log.warning("broker_unreachable", error=str(exc)[:300])
            self.unreachable = True
            self.close()
            return None
        if self.unreachable:
            log.info("broker_reachable")
        self.unreachable = False
        return ids

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()
