"""``streamlabel bench scale``: what the store and discovery cost as they grow.

Pure core, no broker and no model: synthetic unit vectors of the model's
dimension (384), clustered like embeddings of a class (a random centre plus
noise). Reported:

* **store**: for 10, 1k and 100k classes, the time to compile the store after
  a change (metric, thresholds, FAISS index) and to classify one batch of 256,
  per batch and per item; and that classification as a share of embedding the
  same batch, given the model's measured ms per item. From 20k classes the
  opt-in IVF index (``store.approximate_above``) is timed too, at ``nprobe`` 16
  and 64, with its agreement with the exact index on each item's nearest class
  and open-set decision (queries lie as close to their class as its members);
* **discovery**: one run (PCA, HDBSCAN, the acceptance tests) over buffers of
  500 to 5,000 unknowns;
* **class events**: for 1k, 10k and 100k classes, the cost of one class event
  on the leader (``learn``) and on a replica (``apply``), p50/p99 over a few
  dozen events, and of a metric refit (:mod:`streamlabel.bench.scale_events`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from streamlabel.bench.scale_events import DIM, cluster, event_cost, synthetic_store, unit_vectors
from streamlabel.core.discovery import Discoverer, UnknownBuffer
from streamlabel.core.store import PrototypeStore
from streamlabel.settings.engine import EngineSettings

__all__ = ["discovery_cost", "run_scale_bench", "store_cost"]

APPROXIMATE_FROM = 20_000
"""Class counts from which the IVF index is timed beside the exact one."""
IVF_NPROBES = (16, 64)


def store_cost(
    classes: int, *, batch: int = 256, examples: int = 4, repeats: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Builds a store of ``classes`` classes and times compile and classify.

    From ``APPROXIMATE_FROM`` classes the same store is compiled and timed with
    the IVF index too, at each of ``IVF_NPROBES``, with the share of items whose
    nearest class and open-set decision agree with the exact index.
    """
    rng = np.random.default_rng(seed)
    store, centres, add_s = synthetic_store(rng, classes, examples)
    config = store.config
    queries = np.vstack([cluster(rng, centres[c], 1, 0.2) for c in rng.integers(0, classes, batch)])
    row: dict[str, Any] = {"classes": classes, "add_classes_s": round(add_s, 3)}
    exact = _timed_classify(store, queries, repeats)
    row.update(exact["row"])
    if classes >= APPROXIMATE_FROM:
        row["ivf"] = []
        for nprobe in IVF_NPROBES:
            store.config = replace(config, approximate_above=0, nprobe=nprobe)
            ivf = _timed_classify(store, queries, repeats)
            a, b = ivf["result"], exact["result"]
            agree = float(((a.best == b.best) & (a.accepted == b.accepted)).mean())
            row["ivf"].append({"nprobe": nprobe, **ivf["row"], "agreement": round(agree, 4)})
        store.config = config
    return row


def _timed_classify(store: PrototypeStore, queries: np.ndarray, repeats: int) -> dict[str, Any]:
    t1 = time.perf_counter()
    # the first call compiles: a new store, or a new config (every class derived, the index)
    result = store.classify(queries)
    compile_s = time.perf_counter() - t1
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        store.classify(queries)
        times.append(time.perf_counter() - t)
    per_batch = float(np.median(times))
    return {
        "result": result,
        "row": {
            "index": "ivf" if store._compile().index.approximate else "exact",
            "compile_s": round(compile_s, 3),
            "classify_ms_per_batch": round(per_batch * 1e3, 3),
            "classify_ms_per_item": round(per_batch * 1e3 / len(queries), 4),
        },
    }


def discovery_cost(buffered: int, *, clusters: int = 8, seed: int = 0) -> dict[str, float]:
    """One discovery run over ``buffered`` unknowns (``clusters`` dense groups, 30% noise)
    against a store of 20 known classes."""
    rng = np.random.default_rng(seed)
    settings = EngineSettings()
    store = PrototypeStore(DIM, settings.store.to_config(settings.seed), clock=time.time)
    for k, centre in enumerate(unit_vectors(rng, 20)):
        store.add_class(f"k{k}", f"known {k}", cluster(rng, centre, 30, 0.05),
                        status="known", origin="feedback")  # fmt: skip
    centres = unit_vectors(rng, clusters)
    dense = int(buffered * 0.7)
    rows = [cluster(rng, centres[k % clusters], 1, 0.05)[0] for k in range(dense)]
    vectors = np.vstack([np.asarray(rows), unit_vectors(rng, buffered - dense)]).astype(np.float32)
    buffer = UnknownBuffer(max(buffered, 10), DIM)
    buffer.add([f"u{i}" for i in range(buffered)], vectors, [""] * buffered)
    discoverer = Discoverer(settings.discovery.to_config(settings.seed))
    t0 = time.perf_counter()
    report = discoverer.run(buffer, store)
    seconds = time.perf_counter() - t0
    return {
        "buffered": buffered,
        "seconds": round(seconds, 3),
        "clusters": report.clusters,
        "candidates": len(report.findings),
    }


def run_scale_bench(
    classes: Sequence[int],
    buffers: Sequence[int],
    *,
    event_classes: Sequence[int] = (),
    events: int = 40,
    embed_ms_per_item: float | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The three tables; with the model's ms per item, classification as a share of embedding."""
    store_rows = []
    for n in classes:
        row = store_cost(n)
        if embed_ms_per_item:
            row["share_of_embed"] = round(row["classify_ms_per_item"] / embed_ms_per_item, 4)
        say(f"store {n:>7} classes ({row['index']}): compile {row['compile_s']} s, classify "
            f"{row['classify_ms_per_batch']} ms / 256 items")  # fmt: skip
        for ivf in row.get("ivf", []):
            say(f"              ivf nprobe {ivf['nprobe']}: compile {ivf['compile_s']} s, "
                f"classify {ivf['classify_ms_per_batch']} ms; "
                f"agreement {ivf['agreement']:.2%}")  # fmt: skip
        store_rows.append(row)
    disc_rows = []
    for n in buffers:
        row = discovery_cost(n)
        say(f"discovery over {n:>5} unknowns: {row['seconds']} s")
        disc_rows.append(row)
    event_rows = []
    for n in event_classes:
        row = event_cost(n, events=events)
        for side in ("leader", "replica"):
            r = row[side]
            say(f"class event {n:>7} classes, {side:<7}: p50 {r['p50_ms']} ms, "
                f"p99 {r['p99_ms']} ms ({r['refits']} of {events} on a metric refit; "
                f"a refit {row['refit_s']} s)")  # fmt: skip
        event_rows.append(row)
    return {
        "store": store_rows,
        "discovery": disc_rows,
        "events": event_rows,
        "embed_ms_per_item": embed_ms_per_item,
    }
