"""``streamlabel bench scale``, the class event: what one change costs as the store grows.

A store of ``classes`` labelled classes (synthetic clustered vectors of the
model's dimension, 4 examples each, like :mod:`streamlabel.bench.scale`) is
built and compiled once (the metric fit and every class derived: what a
metric refit costs). Then a few dozen class events are timed, each until the
store can classify with it (the next read brings the store up to date):

* **leader**: ``learn`` of 2 new examples for an existing class, then
  ``refresh`` (the feedback path of the learner, until the change is readable);
* **replica**: a store restored from the leader's snapshot before those events
  ``apply``-s each of them, then ``refresh`` (a stream worker tailing ``classes``).

Classification itself is not part of an event's cost (``bench scale``'s store
table times it).

Reported per side: p50 and p99 milliseconds per event, how many events fell
on a scheduled metric refit (those pay a refit; see
:mod:`streamlabel.core.metric_fit`) and the classes derived per event (1 when
only the event's class was recomputed). The replica must end with the leader's
metric fit and labels, which is checked.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from streamlabel.core.store import PrototypeStore
from streamlabel.schemas import ClassEvent
from streamlabel.settings.engine import EngineSettings

__all__ = ["DIM", "cluster", "event_cost", "synthetic_store", "unit_vectors"]

DIM = 384
EXAMPLES = 4


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random unit vectors of ``DIM`` dimensions."""
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cluster(rng: np.random.Generator, centre: np.ndarray, n: int, spread: float) -> np.ndarray:
    """``n`` unit vectors scattered around ``centre``."""
    x = centre[None, :] + spread * rng.standard_normal((n, centre.shape[0])).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic_store(
    rng: np.random.Generator, classes: int, examples: int
) -> tuple[PrototypeStore, np.ndarray, float]:
    """A store of ``classes`` known classes of ``examples`` examples each, around random
    centres, with the default settings and no class cap; returns it, the centres and
    the seconds adding the classes took."""
    settings = EngineSettings()
    config = replace(settings.store.to_config(settings.seed), max_classes=None)
    store = PrototypeStore(DIM, config, clock=time.time)
    centres = unit_vectors(rng, classes)
    t0 = time.perf_counter()
    for k in range(classes):
        vectors = cluster(rng, centres[k], examples, 0.05)
        store.add_class(f"c{k}", f"class {k}", vectors, status="known", origin="feedback")
    return store, centres, time.perf_counter() - t0


def event_cost(classes: int, *, events: int = 40, seed: int = 0) -> dict[str, Any]:
    """Times ``events`` class events on a store of ``classes`` classes, leader and replica."""
    import faiss

    faiss.omp_set_num_threads(1)  # as in a stream worker
    rng = np.random.default_rng(seed)
    leader, centres, build_s = synthetic_store(rng, classes, EXAMPLES)
    config = leader.config
    probe = cluster(rng, centres[int(rng.integers(0, classes, 1)[0])], 1, 0.2)
    t1 = time.perf_counter()
    leader.classify(probe)
    refit_s = time.perf_counter() - t1
    replica = PrototypeStore.restore(leader.snapshot(), config, clock=time.time)
    replica.classify(probe)
    targets = rng.integers(0, classes, events)
    batches = [cluster(rng, centres[t], 2, 0.05) for t in targets]
    sent: list[ClassEvent] = []
    leader_ms, leader_refits, leader_derived = _timed(
        leader, [lambda t=t, b=b: sent.append(leader.learn(f"c{t}", b)) for t, b in
                 zip(targets.tolist(), batches, strict=True)], probe)  # fmt: skip
    replica_ms, replica_refits, replica_derived = _timed(
        replica, [lambda e=e: replica.apply(e) for e in sent], probe
    )
    if replica.metric_version != leader.metric_version:
        raise AssertionError("the replica's metric is not the leader's")
    agree = replica.classify(probe).label(0) == leader.classify(probe).label(0)
    return {
        "classes": classes,
        "events": events,
        "build_s": round(build_s, 2),
        "refit_s": round(refit_s, 2),
        "leader": _summary(leader_ms, leader_refits, leader_derived),
        "replica": _summary(replica_ms, replica_refits, replica_derived),
        "same_label": agree,
    }


def _timed(
    store: PrototypeStore, steps: list[Any], probe: np.ndarray
) -> tuple[list[float], int, list[int]]:
    ms, refits, derived = [], 0, []
    for step in steps:
        fit_before = store.metric_version
        done_before = store.classes_derived
        t = time.perf_counter()
        step()
        store.refresh()
        ms.append((time.perf_counter() - t) * 1e3)
        refits += store.metric_version != fit_before
        derived.append(store.classes_derived - done_before)
    return ms, refits, derived


def _summary(ms: list[float], refits: int, derived: list[int]) -> dict[str, Any]:
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(np.max(ms)), 2),
        "refits": refits,
        "classes_derived_per_event": round(float(np.median(derived)), 1),
    }
