"""The console's state as its web app sees it: the views, the way to send
commands, and the runtime's readings.

The app never calls the actors: it reads :class:`~streamlabel.ui.views.ConsoleViews`
(filled from the topics by the feed), sends commands through a
:class:`Commander` (the control plane's :class:`~streamlabel.kafka.control.Client`)
and shows what a stats provider last reported (``streamlabel run`` hands in its
latest readings: lag per partition, restarts), "n/a" without one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamlabel.schemas.commands import Command, CommandKind, CommandResult
from streamlabel.ui.views import ConsoleViews

__all__ = ["Commander", "Console", "StatsProvider"]

StatsProvider = Callable[[], Mapping[str, Any] | None]
"""Returns the runtime's latest readings (``lag``: {"topic:partition": n}, ``restarts``,
``workers``, ``broker_resets``), or None while it has none. It must not block."""


class Commander(Protocol):
    """What sends a command and waits for its answer (:class:`streamlabel.Client`)."""

    def command(self, kind: CommandKind, **fields: Any) -> Command: ...

    def send(self, command: Command, *, timeout: float | None = None) -> CommandResult: ...


@dataclass
class Console:
    """Everything a console page is built from.

    Attributes:
        views: what the feed read from the topics.
        commander: sends the actions' commands (None: a read-only console).
        stats: the runtime's readings (None: shown as n/a).
        interval_s: the least time between two live updates of one page.
        command_timeout_s: how long an action waits for the learner's answer.
    """

    views: ConsoleViews
    commander: Commander | None = None
    stats: StatsProvider | None = None
    interval_s: float = 1.0
    command_timeout_s: float = 30.0
    closing: threading.Event = field(default_factory=threading.Event)
    _send_lock: threading.Lock = field(default_factory=threading.Lock)

    def readings(self) -> dict[str, Any] | None:
        """The runtime's latest readings, JSON-ready (None: no provider, or none yet)."""
        if self.stats is None:
            return None
        got = self.stats()
        if got is None:
            return None
        lag = {str(k): int(v) for k, v in dict(got.get("lag", {})).items()}
        return {
            "lag": dict(sorted(lag.items())),
            "lag_total": sum(lag.values()),
            "restarts": int(got.get("restarts", 0)),
            "workers": got.get("workers"),
            "broker_resets": int(got.get("broker_resets", 0)),
        }

    def send(self, kind: CommandKind, **fields: Any) -> CommandResult:
        """Builds and sends one command, waiting for its result (one at a time).

        Raises:
            StreamlabelError: the console is read-only, the command is invalid, or
                no answer came in time.
        """
        from streamlabel.errors import StreamlabelError

        if self.commander is None:
            raise StreamlabelError("this console is read-only (no control-plane client)")
        with self._send_lock:
            command = self.commander.command(kind, **fields)
            return self.commander.send(command, timeout=self.command_timeout_s)
