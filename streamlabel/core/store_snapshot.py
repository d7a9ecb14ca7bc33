"""The prototype store's persisted form: a snapshot, written and read back.

A snapshot is plain data that msgpack can pack: the store's dimension and
version, every class state (vectors as float32 bytes, as on the wire), the
metric fit in force (:meth:`~streamlabel.core.metric_fit.MetricFit.to_plain`)
and the refit schedule's counters, so a restored store refits at the same
versions as the one that wrote it. :func:`from_snapshot` also reads the older
forms: vectors as lists of floats (the JSON form) and no fit or counters, in
which case the metric is fitted on the states at the next read.

These functions are :meth:`PrototypeStore.snapshot
<streamlabel.core.store.PrototypeStore.snapshot>` and :meth:`PrototypeStore.restore
<streamlabel.core.store.PrototypeStore.restore>`, kept apart from the store's
mutations; they read and fill the store's maps as its own methods would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamlabel.core.class_arrays import arrays_of
from streamlabel.core.store_config import StoreConfig
from streamlabel.errors import SnapshotError, StoreError
from streamlabel.schemas import ClassState

if TYPE_CHECKING:
    from streamlabel.core.store import PrototypeStore

__all__ = ["SNAPSHOT_FORMAT", "from_snapshot", "to_snapshot"]

SNAPSHOT_FORMAT = 1


def to_snapshot(store: PrototypeStore) -> dict[str, Any]:
    """A plain-data copy of a store's state, msgpack-able (a pending refit runs first)."""
    fit = store._view.settle_fit()
    return {
        "format": SNAPSHOT_FORMAT,
        "dim": store.dim,
        "version": store._version,
        "classes": [s.model_dump() for s in store._states.values()],
        "metric": fit.to_plain(),
        "refit": store._view.schedule.to_plain(),
    }


def from_snapshot(
    cls: type[PrototypeStore],
    snapshot: dict[str, Any],
    config: StoreConfig | None = None,
    *,
    clock: Callable[[], float],
    use_gpu: bool = False,
) -> PrototypeStore:
    """Rebuilds a store of type ``cls`` from :func:`to_snapshot`'s output.

    Raises:
        SnapshotError: unknown format or inconsistent content.
    """
    try:
        if snapshot["format"] != SNAPSHOT_FORMAT:
            raise SnapshotError(f"snapshot format {snapshot['format']!r} is not supported")
        store = cls(int(snapshot["dim"]), config, clock=clock, use_gpu=use_gpu)
        for raw in snapshot["classes"]:
            state = ClassState.model_validate(raw)
            store._states[state.class_id] = state
            store._arrays[state.class_id] = arrays_of(state, store.dim)
            store._names.add(state)
        store._version = int(snapshot["version"])
        store._view.restored(snapshot.get("metric"), snapshot.get("refit") or {}, store._version)
    except SnapshotError:
        raise
    except (KeyError, TypeError, ValueError, StoreError) as exc:
        raise SnapshotError(f"invalid snapshot: {exc}") from exc
    return store
