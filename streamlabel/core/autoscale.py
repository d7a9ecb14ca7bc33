"""How many stream workers a consumer lag calls for (pure: no clock, no I/O).

The supervisor feeds it the group's lag every few seconds; it answers with the
number of workers to run. The rules, in the style of a Kubernetes HPA with
stabilisation windows:

* the wanted count is ``ceil(lag / target_lag_per_worker)``, within
  ``[min_workers, max_workers]``;
* scale up only after the lag has called for more workers for ``up_after_s``
  without a break, then straight to the wanted count (catch up fast);
* scale down only after it has called for fewer for ``down_after_s``, then one
  worker at a time (each removal moves partitions: a rebalance pause);
* nothing changes for ``cooldown_s`` after a change (the new workers need time
  to load the model and join the group before the lag can fall).

Example:
    >>> a = Autoscaler(AutoscalePolicy(1, 4, target_lag_per_worker=1000, up_after_s=10))
    >>> a.decide(now=0.0, lag=3500, workers=1)
    1
    >>> a.decide(now=10.0, lag=3600, workers=1)
    4
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["AutoscalePolicy", "Autoscaler"]


@dataclass(frozen=True)
class AutoscalePolicy:
    """Bounds and windows of the autoscaler."""

    min_workers: int
    max_workers: int
    target_lag_per_worker: int
    up_after_s: float = 30.0
    down_after_s: float = 300.0
    cooldown_s: float = 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_workers <= self.max_workers:
            raise ValueError(
                f"need 1 <= min_workers ({self.min_workers}) <= max_workers ({self.max_workers})"
            )
        if self.target_lag_per_worker < 1:
            raise ValueError("target_lag_per_worker must be at least 1")

    def wanted(self, lag: int) -> int:
        """Workers the lag alone calls for, within the bounds."""
        need = math.ceil(max(lag, 0) / self.target_lag_per_worker)
        return min(self.max_workers, max(self.min_workers, need))


class Autoscaler:
    """Stateful decisions over a stream of ``(now, lag, workers)`` readings."""

    def __init__(self, policy: AutoscalePolicy) -> None:
        self.policy = policy
        self._up_since: float | None = None
        self._down_since: float | None = None
        self._changed_at: float | None = None
        self.desired = policy.min_workers

    def decide(self, now: float, lag: int, workers: int) -> int:
        """The number of workers to run now (``workers`` itself when nothing changes)."""
        p = self.policy
        wanted = p.wanted(lag)
        if workers < p.min_workers or workers > p.max_workers:  # out of bounds: fix at once
            return self._change(now, min(p.max_workers, max(p.min_workers, workers)))
        if wanted > workers:
            self._down_since = None
            self._up_since = now if self._up_since is None else self._up_since
        elif wanted < workers:
            self._up_since = None
            self._down_since = now if self._down_since is None else self._down_since
        else:
            self._up_since = self._down_since = None
        self.desired = workers
        if self._changed_at is not None and now - self._changed_at < p.cooldown_s:
            return workers
        if self._up_since is not None and now - self._up_since >= p.up_after_s:
            return self._change(now, wanted)
        if self._down_since is not None and now - self._down_since >= p.down_after_s:
            return self._change(now, workers - 1)
        return workers

    def _change(self, now: float, to: int) -> int:
        self._changed_at = now
        self._up_since = self._down_since = None
        self.desired = to
        return to
