"""What the store derives from its class states, kept up to date event by event.

A :class:`DerivedView` sits beside the store's ``class_id -> ClassState`` map.
The store tells it of every applied change (:meth:`DerivedView.changed`); it
marks the class, and asks the :class:`~streamlabel.core.metric_fit.RefitSchedule`
whether the metric is due for a refit. The work happens at the next read
(:meth:`DerivedView.compiled`): a pending refit first, on the states as they
were when it was decided (each class touched since keeps its state of then),
then the marked classes are derived into the
:class:`~streamlabel.core.class_table.ClassTable`. A refit that changes the
metric derives every class once; otherwise a read derives the classes changed
since the last one, whatever the store's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streamlabel.core.class_arrays import ClassArrays
from streamlabel.core.class_table import ClassTable
from streamlabel.core.compiled import CompiledStore
from streamlabel.core.metric_fit import MetricFit, RefitSchedule, fit_metric
from streamlabel.core.store_config import StoreConfig
from streamlabel.schemas import ClassState

__all__ = ["DerivedView"]

Image = tuple[ClassState, ClassArrays] | None
"""A class's state and vectors at some version (None: it did not exist)."""


@dataclass
class _PendingRefit:
    """A refit decided at ``version``: ``before`` holds the state each class touched since
    had at ``version``."""

    version: int
    before: dict[str, Image] = field(default_factory=dict)


class DerivedView:
    """The derived table of a store, its metric fit and refit schedule.

    Args:
        states: the store's class states (read, never written).
        arrays: the store's class vectors (read, never written).
        dim: the embedding dimension.
        use_gpu: put the FAISS index on a GPU when faiss has GPU support.
    """

    def __init__(
        self,
        states: Mapping[str, ClassState],
        arrays: Mapping[str, ClassArrays],
        config: StoreConfig,
        *,
        dim: int,
        use_gpu: bool = False,
    ) -> None:
        self._states, self._arrays, self._dim, self._use_gpu = states, arrays, dim, use_gpu
        self.fit = MetricFit.identity(dim)
        self.schedule = RefitSchedule(config)
        self._pending: _PendingRefit | None = None
        self._table: ClassTable | None = None
        self._table_config: StoreConfig | None = None
        self._dirty: set[str] = set()
        self._derived = 0  # classes derived by tables dropped since

    @property
    def classes_derived(self) -> int:
        """Classes derived so far (a class event derives its class, a refit every class)."""
        return self._derived + (self._table.classes_derived if self._table is not None else 0)

    def changed(
        self, class_id: str, before: Image, after: Image, previous_version: int, version: int
    ) -> None:
        """Records a change the store applied (``before``: the class's state until now)."""
        if self._pending is not None and class_id not in self._pending.before:
            self._pending.before[class_id] = before
        self._dirty.add(class_id)
        if after is not None and self.schedule.observe(before, after, previous_version, version):
            self.schedule.refitted()
            self._pending = _PendingRefit(version)

    def restored(self, fit: dict[str, Any] | None, counters: dict[str, Any], version: int) -> None:
        """Takes the fit and counters of a snapshot (the states already in the map); without
        a fit, the metric is fitted on the states at the next read.

        Raises:
            ValueError: the fit is inconsistent.
        """
        for cid, state in self._states.items():
            self.schedule.count(state, self._arrays[cid])
        if fit is None:
            self._pending = _PendingRefit(version)
            return
        self.fit = MetricFit.from_plain(fit, self._dim)
        self.schedule.changed = int(counters.get("changed", 0))
        self.schedule.at_refit = int(counters.get("at_refit", 0))

    def settle_fit(self) -> MetricFit:
        """Runs a pending refit, on the states as they were when it was decided."""
        pending, self._pending = self._pending, None
        if pending is not None:
            states, arrays = dict(self._states), dict(self._arrays)
            for cid, image in pending.before.items():
                if image is None:
                    states.pop(cid, None)
                    arrays.pop(cid, None)
                else:
                    states[cid], arrays[cid] = image
            cfg = self.schedule.config
            fit = fit_metric(states, arrays, cfg, dim=self._dim, version=pending.version)
            if not fit.same_as(self.fit) and self._table is not None:
                self._derived += self._table.classes_derived
                self._table = None  # every class is derived again, once
            self.fit = fit
        return self.fit

    def compiled(self, config: StoreConfig) -> CompiledStore:
        """The read view, brought up to date: a pending refit, then the changed classes.

        A ``config`` other than the last one's derives every class again.
        """
        fit = self.settle_fit()
        if self._table is None or self._table_config is not config:
            if self._table is not None:
                self._derived += self._table.classes_derived
            self._table = ClassTable.build(
                self._states, self._arrays, fit, config, dim=self._dim, use_gpu=self._use_gpu
            )
            self._table_config = config
        elif self._dirty:
            changed = sorted(self._dirty)
            retired = [c for c in changed if self._states[c].status == "retired"]
            self._table.update(
                [(c, self._states[c], self._arrays[c]) for c in changed if c not in retired],
                retired,
            )
        self._table.fit = fit  # the same metric when a refit changed nothing
        self._dirty.clear()
        return CompiledStore(self._table)
