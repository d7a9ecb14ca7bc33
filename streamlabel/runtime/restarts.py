"""How often one supervised actor may be restarted: a budget per time window, with backoff.

An actor may be restarted ``max_restarts`` times within any ``window_s``
(a sliding window). The first restart in a window is immediate; each further
one waits ``backoff_s``, doubling up to ``backoff_max_s``. An actor that stays
up for a whole window gets its whole budget, and an immediate first restart,
back. One more failure once the budget is spent *exhausts* the slot: it is
tried again a window later (with its budget back), and meanwhile the rest of
the deployment keeps running. Failures to *start* (Kafka not back yet, no
node with room) are not restarts: they are retried with the same backoff
without spending the budget. The clock is passed in (``now``, monotonic
seconds).

Example:
    >>> policy = RestartPolicy(max_restarts=3, window_s=60.0, backoff_s=2.0, backoff_max_s=5.0)
    >>> budget = RestartBudget()
    >>> [policy.restart(budget, now) for now in (0.0, 1.0, 2.0, 3.0)]
    [0.0, 3.0, 6.0, None]
    >>> policy.restart(budget, 61.0)  # two restarts left the window: one is in it
    63.0
    >>> policy.restart(budget, 200.0)  # up for a whole window: immediate again
    200.0
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from streamlabel.settings.deployment import SupervisorSettings

__all__ = ["RestartBudget", "RestartPolicy"]


@dataclass
class RestartBudget:
    """The restarts of one slot still inside the window (their times, oldest first)."""

    times: deque[float] = field(default_factory=deque)

    def used(self, now: float, window_s: float) -> int:
        """Restarts within ``window_s`` before ``now`` (older ones are forgotten)."""
        while self.times and self.times[0] <= now - window_s:
            self.times.popleft()
        return len(self.times)


@dataclass(frozen=True)
class RestartPolicy:
    """``supervisor.max_restarts`` per ``supervisor.restart_window_s``, with backoff."""

    max_restarts: int = 5
    window_s: float = 600.0
    backoff_s: float = 5.0
    backoff_max_s: float = 120.0

    @classmethod
    def of(cls, settings: SupervisorSettings) -> RestartPolicy:
        """The policy of the ``supervisor.*`` settings."""
        return cls(
            max_restarts=settings.max_restarts,
            window_s=settings.restart_window_s,
            backoff_s=settings.restart_backoff_s,
            backoff_max_s=settings.restart_backoff_max_s,
        )

    def backoff(self, used: int) -> float:
        """The wait before a restart when ``used`` restarts came before it (in the
        window): none for the first, then ``backoff_s`` doubling up to ``backoff_max_s``.

        Example:
            >>> [RestartPolicy(backoff_s=5.0, backoff_max_s=30.0).backoff(n) for n in range(6)]
            [0.0, 5.0, 10.0, 20.0, 30.0, 30.0]
        """
        if used <= 0:
            return 0.0
        return float(min(self.backoff_s * 2.0 ** min(used - 1, 62), self.backoff_max_s))

    def restart(self, budget: RestartBudget, now: float) -> float | None:
        """Spends one restart of ``budget`` for a failure at ``now``; returns when to
        restart, or None when the budget is spent (the slot is exhausted, nothing spent)."""
        used = budget.used(now, self.window_s)
        if used >= self.max_restarts:
            return None
        budget.times.append(now)
        return now + self.backoff(used)

    def retry_exhausted(self, now: float) -> float:
        """When an exhausted slot is tried again: a whole window later, when its
        budget is back."""
        return now + self.window_s
