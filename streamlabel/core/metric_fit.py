"""When and on what the store's learned metric is fitted: the fit, and its refit schedule.

The metric (:class:`~streamlabel.core.metric.Metric`) is learned from the
labelled classes' exemplars (and discovered ones' with ``metric_pseudo_labels``):
its *inputs*. Everything else the store derives (prototype rows, member scores,
thresholds) is recomputed per class against the current :class:`MetricFit`, so
a class event costs one class; refitting the metric costs every class once.

The metric is therefore refitted on a schedule, decided at each applied event
from the event sequence alone (never the clock), so every store that applies
the same events refits at the same versions on the same states
(:class:`RefitSchedule`). A refit is due, after an event, when the metric's
inputs changed since the last refit and

* the labelled exemplars number at most ``metric_refit_exact_below``: a small
  store refits on every change of its inputs (cheap, and every replica holds
  the metric of its current states, however it got them); or
* the inputs changed by ``metric_refit_share`` of the labelled exemplars at the
  last refit (the first fit, from the identity, at once); or
* the version crossed a multiple of the *tick*: ``metric_refit_every``, or the
  number of labelled classes rounded up to a power of two when larger.

A replica that starts late, from the compacted changelog (the last event per
class), cannot see the states the leader last refitted on; it fits on the
states it caught up to. The tick makes it converge: the first tick after it
caught up leaves both with the metric of the same states (if either had
changes to fit, it refits at that version on states identical in both; if
neither had, their inputs have not changed since the older fit), and from then
on their counters agree, so they refit at the same versions. A snapshot holds
the fit itself (:meth:`MetricFit.to_plain`), so a restored store continues
with it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamlabel.core.calibration import fold_metrics
from streamlabel.core.class_arrays import ClassArrays
from streamlabel.core.metric import Metric
from streamlabel.core.store_config import StoreConfig
from streamlabel.schemas import ClassState

__all__ = ["MetricFit", "RefitSchedule", "fit_metric", "input_weight", "is_labelled"]


@dataclass(frozen=True, eq=False)
class MetricFit:
    """A fitted metric and the cross-fitting metrics its thresholds are calibrated with.

    Attributes:
        metric: the metric every vector is mapped by.
        folds: per fold, the metric learned without that fold's examples (labelled
            classes' member scores are out-of-fold); ``None``: scores are in-sample.
        version: the store version whose states it was fitted on.
    """

    metric: Metric
    folds: tuple[Metric, ...] | None
    version: int

    @classmethod
    def identity(cls, dim: int) -> MetricFit:
        """The fit of a store with nothing labelled (plain cosine)."""
        return cls(Metric.identity(dim), None, 0)

    def same_as(self, other: MetricFit) -> bool:
        """True when both map every vector alike (the version aside)."""
        pairs = [(self.metric, other.metric)]
        if (self.folds is None) != (other.folds is None):
            return False
        pairs += list(zip(self.folds or (), other.folds or (), strict=True))
        return all(
            a.n_examples == b.n_examples
            and np.array_equal(a.center, b.center)
            and np.array_equal(a.transform, b.transform)
            for a, b in pairs
        )

    def to_plain(self) -> dict[str, Any]:
        """Plain data for a snapshot (float32 bytes)."""
        return {
            "version": self.version,
            "metric": self.metric.to_plain(),
            "folds": None if self.folds is None else [m.to_plain() for m in self.folds],
        }

    @classmethod
    def from_plain(cls, plain: dict[str, Any], dim: int) -> MetricFit:
        """The fit :meth:`to_plain` wrote.

        Raises:
            ValueError: inconsistent content or another dimension than ``dim``.
        """
        metric = Metric.from_plain(plain["metric"])
        raw_folds = plain["folds"]
        folds = None if raw_folds is None else tuple(Metric.from_plain(m) for m in raw_folds)
        for m in (metric, *(folds or ())):
            if m.center.shape != (dim,):
                raise ValueError(f"the metric's dimension is not the store's ({dim})")
        return cls(metric, folds, int(plain["version"]))


def is_labelled(state: ClassState, arrays: ClassArrays) -> bool:
    """An active class taught by feedback with at least two exemplars (it shapes the metric)."""
    return state.status != "retired" and state.origin == "feedback" and len(arrays.exemplars) >= 2


def _is_pseudo(state: ClassState, arrays: ClassArrays, config: StoreConfig) -> bool:
    return (
        config.metric_pseudo_labels
        and state.status != "retired"
        and state.origin == "discovery"
        and len(arrays.exemplars) >= 2
    )


def input_weight(state: ClassState | None, arrays: ClassArrays | None, config: StoreConfig) -> int:
    """The exemplars a class contributes to the metric's fit (0 when it contributes none)."""
    if state is None or arrays is None:
        return 0
    if is_labelled(state, arrays) or _is_pseudo(state, arrays, config):
        return len(arrays.exemplars)
    return 0


def fit_metric(
    states: Mapping[str, ClassState],
    arrays: Mapping[str, ClassArrays],
    config: StoreConfig,
    *,
    dim: int,
    version: int,
) -> MetricFit:
    """Fits the metric, and its cross-fitting metrics, on class states.

    Args:
        states: every class state, retired ones included (they are left out).
        arrays: the vectors of each class, as unpacked from its state.
        config: the store's knobs.
        dim: the embedding dimension.
        version: the store version of these states (recorded in the fit).
    """
    cfg = config
    ids = sorted(states)
    labelled = [arrays[k].exemplars for k in ids if is_labelled(states[k], arrays[k])]
    pseudo = [arrays[k].exemplars for k in ids if _is_pseudo(states[k], arrays[k], cfg)]

    def fitter(min_examples: int) -> Callable[[list[np.ndarray]], Metric]:
        def fit(groups: list[np.ndarray]) -> Metric:
            if not groups:
                return Metric.identity(dim)
            return Metric.fit(groups, shrinkage=cfg.metric_shrinkage, min_examples=min_examples)

        return fit

    metric = fitter(cfg.metric_min_examples)(labelled + pseudo)
    folds = None
    if not metric.is_identity and cfg.calibration_folds > 1:
        # A fold sees (folds-1)/folds of the examples: the same estimator on a
        # subset, so the bar for learning it scales the same way.
        k = cfg.calibration_folds
        fold_min = max(2, math.ceil(cfg.metric_min_examples * (k - 1) / k))
        found = fold_metrics(labelled, fitter(fold_min), folds=k, require_learned=True)
        folds = None if found is None else tuple(found)
    return MetricFit(metric, folds, version)


@dataclass
class RefitSchedule:
    """Decides, event by event, when the metric is refitted (see the module docs).

    Attributes:
        labelled_examples: exemplars of the metric's inputs now.
        labelled_classes: classes that are inputs now.
        changed: exemplars of the inputs changed since the last refit decision.
        at_refit: ``labelled_examples`` at the last refit decision.
    """

    config: StoreConfig
    labelled_examples: int = 0
    labelled_classes: int = 0
    changed: int = 0
    at_refit: int = 0

    def tick(self) -> int:
        """Versions between two ticks: at least ``metric_refit_every``, else the labelled
        classes rounded up to a power of two."""
        return max(
            self.config.metric_refit_every, 1 << max(self.labelled_classes - 1, 0).bit_length()
        )

    def count(self, state: ClassState, arrays: ClassArrays) -> None:
        """Counts a class of a restored store (its inputs, not a change)."""
        weight = input_weight(state, arrays, self.config)
        self.labelled_examples += weight
        self.labelled_classes += weight > 0

    def observe(
        self,
        before: tuple[ClassState, ClassArrays] | None,
        after: tuple[ClassState, ClassArrays],
        previous_version: int,
        version: int,
    ) -> bool:
        """Counts one applied class change; True when the metric is due for a refit."""
        old = input_weight(*before, self.config) if before else 0
        new = input_weight(*after, self.config)
        self.labelled_examples += new - old
        self.labelled_classes += (new > 0) - (old > 0)
        if old and new:
            same = np.array_equal(before[1].exemplars, after[1].exemplars)  # type: ignore[index]
            moved = abs(after[0].count - before[0].count)  # type: ignore[index]
            self.changed += 0 if same else max(1, min(new, moved))
        else:
            self.changed += max(old, new)
        return self.due(previous_version, version)

    def due(self, previous_version: int, version: int) -> bool:
        """True when the inputs changed and a rule of the schedule fires at ``version``.

        A tick with nothing to refit still resets the share rule's reference, so
        two stores agree on their counters after any tick they both pass.
        """
        tick = self.tick()
        ticked = previous_version // tick < version // tick
        if self.changed == 0:
            if ticked:
                self.at_refit = self.labelled_examples
            return False
        return (
            ticked
            or self.labelled_examples <= self.config.metric_refit_exact_below
            or self.changed >= self.config.metric_refit_share * self.at_refit
        )

    def refitted(self) -> None:
        """Resets the counters: a refit was decided on the current states."""
        self.changed = 0
        self.at_refit = self.labelled_examples

    def to_plain(self) -> dict[str, int]:
        """The counters, for a snapshot."""
        return {"changed": self.changed, "at_refit": self.at_refit}
