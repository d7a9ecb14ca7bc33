"""The Page–Hinkley change test on a scalar stream, and the unknown-rate detector built on it."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from streamlabel.core.drift.base import (
    DriftKind,
    DriftObservation,
    DriftSignal,
    Hysteresis,
    severity_for,
)

Direction = Literal["up", "down", "both"]


class PageHinkley:
    """Page–Hinkley test for a change in the mean of a scalar stream.

    With ``x̄_t`` the running mean of the items since the last (re)start,
    ``m_t = Σ (x_i - x̄_i - delta)`` and ``u_t = Σ (x_i - x̄_i + delta)``, the statistics are
    ``up_t = m_t - min_{s<=t} m_s`` (mean increased) and ``down_t = max_{s<=t} u_s - u_t``
    (mean decreased). A drift is detected when the statistic of the watched direction(s)
    exceeds ``threshold`` (lambda) and at least ``min_instances`` items were seen. The next
    update after a detection restarts the test.

    Batch updates (:meth:`update_many`) give bit-identical results to item-by-item updates.

    Example:
        >>> import numpy as np
        >>> from streamlabel.core.drift.page_hinkley import PageHinkley
        >>> stream = [0, 1] * 500 + [4, 5, 6, 7] * 250
        >>> ph = PageHinkley(delta=0.005, threshold=50.0, min_instances=30, direction="up")
        >>> for i, x in enumerate(stream):
        ...     if ph.update(x):
        ...         print(f"Change detected at index {i}, input value: {x}")
        Change detected at index 1010, input value: 6

    Args:
        delta: magnitude of change tolerated (subtracted from every deviation).
        threshold: lambda, the detection threshold on the statistic.
        min_instances: items needed since the (re)start before a detection is allowed.
        direction: ``"up"``, ``"down"`` or ``"both"``.
    """

    def __init__(
        self,
        delta: float = 0.005,
        threshold: float = 50.0,
        min_instances: int = 30,
        direction: Direction = "both",
    ) -> None:
        if delta < 0.0 or threshold <= 0.0 or min_instances < 1:
            raise ValueError(
                "need delta >= 0, threshold > 0 and min_instances >= 1; got "
                f"{delta}, {threshold}, {min_instances}"
            )
        if direction not in ("up", "down", "both"):
            raise ValueError(f"direction must be 'up', 'down' or 'both', got {direction!r}")
        self.delta = delta
        self.threshold = threshold
        self.min_instances = min_instances
        self.direction: Direction = direction
        self.reset()

    def reset(self) -> None:
        """Restart the test: forget the mean and the cumulative sums."""
        self.n_seen = 0
        self.drift_detected = False
        self.statistic = 0.0
        self.detected_direction: Literal["up", "down"] | None = None
        self._sum = 0.0
        self._up = 0.0
        self._up_min = 0.0
        self._down = 0.0
        self._down_max = 0.0

    @property
    def mean(self) -> float:
        """The running mean since the last (re)start (0.0 before any item)."""
        return self._sum / self.n_seen if self.n_seen else 0.0

    def update(self, x: float) -> bool:
        """Consume one value; return True when it completes a detection."""
        return self.update_many(np.array([x], dtype=np.float64)) is not None

    def update_many(self, xs: np.ndarray) -> int | None:
        """Consume values until the first detection.

        Returns:
            The index in ``xs`` of the value that completed a detection (the values after it
            are *not* consumed), or ``None`` when all values were consumed without one.
        """
        if self.drift_detected:
            self.reset()
        x = np.asarray(xs, dtype=np.float64).reshape(-1)
        k = len(x)
        if k == 0:
            return None
        # Prepending the carried state keeps every sum sequential, hence batch-independent.
        sums = np.cumsum(np.concatenate(([self._sum], x)))[1:]
        counts = np.arange(self.n_seen + 1, self.n_seen + k + 1, dtype=np.float64)
        dev = x - sums / counts
        up = np.cumsum(np.concatenate(([self._up], dev - self.delta)))[1:]
        up_min = np.minimum.accumulate(np.concatenate(([self._up_min], up)))[1:]
        down = np.cumsum(np.concatenate(([self._down], dev + self.delta)))[1:]
        down_max = np.maximum.accumulate(np.concatenate(([self._down_max], down)))[1:]
        stat_up = up - up_min
        stat_down = down_max - down
        if self.direction == "up":
            stat = stat_up
        elif self.direction == "down":
            stat = stat_down
        else:
            stat = np.maximum(stat_up, stat_down)
        alarm = (stat > self.threshold) & (counts >= self.min_instances)
        hits = np.flatnonzero(alarm)
        last = int(hits[0]) if len(hits) else k - 1
        self.n_seen += last + 1
        self._sum = float(sums[last])
        self._up, self._up_min = float(up[last]), float(up_min[last])
        self._down, self._down_max = float(down[last]), float(down_max[last])
        self.statistic = float(stat[last])
        if not len(hits):
            return None
        self.drift_detected = True
        self.detected_direction = "up" if stat_up[last] >= stat_down[last] else "down"
        if self.direction != "both":
            self.detected_direction = self.direction
        return last


class UnknownRateDetector:
    """Page–Hinkley (both directions) on the 0/1 "item is unknown" indicator.

    The reference is the running unknown rate since the last (re)start, with
    ``min_instances`` items of burn-in; the test is evaluated at every item (stride 1) and
    is its own hysteresis (the cumulative sum must grow past ``threshold``), so one
    exceedance fires. After an alarm the next ``cooldown`` items are ignored and the test
    restarts on the items after them. Statistic: the PH cumulative deviation; threshold:
    lambda; no p-value; no affected classes.

    Detection bound: ``ceil(2.5 * threshold / (0.3 - delta))`` items (300 with the
    defaults) after a jump of at least 0.3 in the unknown rate (e.g. 10% → 40% or back),
    provided at least ``4 * min_instances`` items were seen since the last (re)start.

    Args:
        delta: rate change tolerated per item.
        threshold: lambda.
        min_instances: burn-in items after each (re)start.
        cooldown: items ignored after an alarm.
        seed: unused (the test is deterministic); accepted for a uniform constructor.
    """

    kind: DriftKind = "unknown_rate"

    def __init__(
        self,
        *,
        delta: float = 0.05,
        threshold: float = 30.0,
        min_instances: int = 200,
        cooldown: int = 100,
        seed: int = 0,
    ) -> None:
        if delta >= 0.3:
            raise ValueError(f"delta must be below the targeted 0.3 jump, got {delta}")
        self.delta = delta
        self.threshold = threshold
        self.min_instances = min_instances
        self.cooldown = cooldown
        self.seed = seed
        self.detection_bound: int = math.ceil(2.5 * threshold / (0.3 - delta))
        self.n_seen: int = 0
        self._ph = PageHinkley(delta, threshold, min_instances, "both")
        self._hysteresis = Hysteresis(1, cooldown)
        self.reset()

    def reset(self) -> None:
        """Go back to the freshly constructed state."""
        self.n_seen = 0
        self._ph = PageHinkley(self.delta, self.threshold, self.min_instances, "both")
        self._hysteresis = Hysteresis(1, self.cooldown)

    def update(self, obs: DriftObservation) -> list[DriftSignal]:
        """Consume one batch; return the alerts it raised, oldest first."""
        x = obs.is_unknown.astype(np.float64)
        signals: list[DriftSignal] = []
        pos, n = 0, len(x)
        while pos < n:
            skipped = self._hysteresis.skip(n - pos)
            pos += skipped
            self.n_seen += skipped
            if pos >= n:
                break
            hit = self._ph.update_many(x[pos:])
            if hit is None:
                self.n_seen += n - pos
                break
            pos += hit + 1
            self.n_seen += hit + 1
            self._hysteresis.observe(True)
            signals.append(self._signal())
            self._ph.reset()
        return signals

    def _signal(self) -> DriftSignal:
        ph = self._ph
        stat = ph.statistic
        verb = "rose" if ph.detected_direction == "up" else "fell"
        return DriftSignal(
            kind=self.kind,
            statistic=stat,
            threshold=self.threshold,
            p_value=None,
            window=ph.n_seen,
            reference=min(self.min_instances, ph.n_seen),
            at_item=self.n_seen - 1,
            severity=severity_for(stat, self.threshold),
            affected_classes=(),
            detail=(
                f"The unknown rate {verb} (Page–Hinkley {stat:.3g} > {self.threshold:.3g}; "
                f"running rate {ph.mean:.1%} over the last {ph.n_seen} items)."
            ),
        )
