"""Named step points of an actor's loop, for whoever wants to watch them.

A stream worker calls ``probe.hit("after_embed")`` (and ``after_produce``,
``after_flush``); a learner ``feedback_applied``, ``discovery_adopted``,
``after_snapshot``, ``after_publish``. Deployed actors hold :data:`NO_PROBE`,
which does nothing: the note (what the actor holds in memory at that point)
is a callable, built only by a probe that wants it. ``streamlabel chaos``
brings actor subclasses whose probe arms faults at these points.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

__all__ = ["LEARNER_POINTS", "NO_PROBE", "WORKER_POINTS", "Note", "Probe"]

WORKER_POINTS = ("after_embed", "after_produce", "after_flush")
"""A stream worker's step: embedded (nothing sent), sent (not flushed), flushed (not committed)."""

LEARNER_POINTS = ("feedback_applied", "discovery_adopted", "after_snapshot", "after_publish")
"""A learner's step: feedback applied in memory; a discovery run adopted in memory; the
checkpoint written (nothing published); published (outbox not marked, offsets not committed)."""

Note = Callable[[], Mapping[str, Any]]
"""Builds the note of a hit on demand."""


class Probe(Protocol):
    """What an actor's loop calls at its step points."""

    def hit(self, point: str, note: Note | None = None) -> None:
        """The loop reached ``point``; ``note()`` says what it holds in memory there."""


class _NoProbe:
    """The deployed probe: every hit returns at once, no note is built."""

    def hit(self, point: str, note: Note | None = None) -> None:
        return None


NO_PROBE: Probe = _NoProbe()
