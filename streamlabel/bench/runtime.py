"""``streamlabel bench runtime``: the distributed runtime against the bare model.

In one run, on the same texts: (a) bare ``model.encode`` items/s at the model's
batch size; (b) end-to-end items/s through the embedded broker, Ray and the
actors (first produce to last first label read back), for each worker count;
(c) a rebalance while items flow — a worker added, then removed — timing each
worker's pause (partitions revoked to assigned) and counting duplicate first
labels; (d) each actor's resident memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from streamlabel.core.embedder import SentenceTransformerEmbedder
from streamlabel.datasets import LabelledTexts
from streamlabel.errors import StreamlabelError
from streamlabel.kafka.client import LabelCollector, produce_feedback, produce_items
from streamlabel.runtime.supervisor import Runtime
from streamlabel.schemas import Feedback, Item
from streamlabel.settings.runtime import RuntimeSettings
from streamlabel.waiting import wait_until

__all__ = ["run_runtime_bench"]


def bare_rates(settings: RuntimeSettings, texts: list[str]) -> tuple[float, float]:
    """Items/s on ``texts`` of the bare model, in one call each, on this process's threads:
    sentence-transformers' own ``encode`` (padded batches of the model's batch size), then
    streamlabel's embedder alone (length-bucketed, packed where uneven). Same model, dtype
    and batch size as the deployment's."""
    model = _bare_model(settings, texts)
    return _rate(model.reference_encode, texts), _rate(model.embed, texts)


def bare_encode_rate(settings: RuntimeSettings, texts: list[str]) -> float:
    """Items/s of sentence-transformers' ``encode`` on ``texts`` (see :func:`bare_rates`)."""
    return _rate(_bare_model(settings, texts).reference_encode, texts)


def _bare_model(settings: RuntimeSettings, texts: list[str]) -> SentenceTransformerEmbedder:
    """The deployment's model in this process, warmed up on the first model batch."""
    m = settings.model
    model = SentenceTransformerEmbedder(m.path, **m.embedder_options())
    model.reference_encode(texts[: m.batch_size])
    return model


def _rate(call: Callable[[list[str]], Any], texts: list[str]) -> float:
    t0 = time.perf_counter()
    call(texts)
    return len(texts) / (time.perf_counter() - t0)


def run_runtime_bench(
    settings: RuntimeSettings,
    train: LabelledTexts,
    test: LabelledTexts,
    *,
    items: int,
    worker_counts: list[int],
    rebalance: bool = True,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs the measurements; returns them as plain data."""
    texts = test.texts[:items]
    if len(texts) < items:
        raise StreamlabelError(f"the test file has {len(texts)} texts, fewer than --items {items}")
    feedback = [Feedback(text=t, label=y) for t, y in zip(train.texts, train.labels, strict=True)]
    feedback = feedback[:600]
    bare = bare_encode_rate(settings, texts)
    say(f"bare model.encode: {bare:.1f} items/s on {len(texts)} texts")
    result: dict[str, Any] = {"encode_items_per_s": round(bare, 1), "runs": []}
    for workers in worker_counts:
        s = settings.model_copy(
            update={"supervisor": settings.supervisor.model_copy(update={"workers": workers})}
        )
        with Runtime(s) as rt:
            kafka = rt.settings.kafka
            produce_feedback(kafka, feedback)
            rt.wait_until_learned(len(feedback))
            batch = [Item(id=f"w{workers}-{i}", text=t) for i, t in enumerate(texts)]
            collector = LabelCollector(kafka)
            t0 = time.perf_counter()
            produce_items(kafka, batch)
            if not collector.wait_for({i.id for i in batch}, 1800):
                raise StreamlabelError("not every item was labelled")
            rate = len(batch) / (time.perf_counter() - t0)
            p = rt.progress()
            run: dict[str, Any] = {
                "workers": workers,
                "e2e_items_per_s": round(rate, 1),
                "ratio": round(rate / bare, 2),
                "rss_gib": {
                    **{w["worker_id"]: round(w["rss_bytes"] / 2**30, 2) for w in p.workers},
                    "learner": round(p.learner["rss_bytes"] / 2**30, 2),
                },
            }
            say(f"{workers} worker(s): {rate:.1f} items/s end to end ({rate / bare:.2f} of bare)")
            run["new_class_on_every_worker_s"] = round(_new_class_latency(rt), 2)
            say(f"a new label reached every worker in {run['new_class_on_every_worker_s']} s")
            if rebalance and workers == worker_counts[-1]:
                run["rebalance"] = _rebalance(rt, test.texts[items:], collector)
                say(f"rebalance: {run['rebalance']}")
            collector.close()
            result["runs"].append(run)
    return result


def _new_class_latency(rt: Runtime) -> float:
    """Seconds from producing feedback with a never-seen label to every replica using it."""
    before = rt.progress()
    want = before.classes + 1
    t0 = time.monotonic()
    produce_feedback(
        rt.settings.kafka, [Feedback(text="how do I pickle a lambda in python", label="new-label")]
    )

    def everywhere() -> bool:
        p = rt.progress()
        return p.classes >= want and all(w["classes"] >= want for w in p.workers)

    wait_until(everywhere, 120, "the new class on every worker")
    return time.monotonic() - t0


def _rebalance(rt: Runtime, texts: list[str], collector: LabelCollector) -> dict[str, Any]:
    """Adds then removes a worker while items flow; times the pauses, counts duplicates."""
    kafka = rt.settings.kafka
    stop = threading.Event()
    sent: list[str] = []

    def flow() -> None:  # keeps the partitions busy until the rebalances are over
        n = 0
        while not stop.is_set():
            chunk = [Item(id=f"rb-{n + i}", text=texts[(n + i) % len(texts)]) for i in range(100)]
            produce_items(kafka, chunk)
            sent.extend(item.id for item in chunk)
            n += len(chunk)
            time.sleep(0.5)

    producer = threading.Thread(target=flow, daemon=True)
    producer.start()
    t0 = time.monotonic()
    name = rt.add_worker()
    started_s = time.monotonic() - t0
    t1 = time.monotonic()

    def new_worker_busy() -> bool:
        return any(w["worker_id"] == name and w["items"] > 0 for w in rt.progress().workers)

    wait_until(new_worker_busy, 300, "the added worker's first item")
    first_item_s = time.monotonic() - t1
    pauses_add = {w["worker_id"]: round(w["last_rebalance_s"], 2) for w in rt.progress().workers}
    t2 = time.monotonic()
    rt.remove_worker()
    removed_s = time.monotonic() - t2
    time.sleep(10.0)  # the remaining workers take the partitions back while items flow
    stop.set()
    producer.join()
    if not collector.wait_for(set(sent), 1800):
        raise StreamlabelError("not every item was labelled during the rebalance")
    collector.drain(quiet_s=2.0)
    pauses_remove = {w["worker_id"]: round(w["last_rebalance_s"], 2) for w in rt.progress().workers}
    return {
        "add_worker_ready_s": round(started_s, 1),
        "added_worker_first_item_s": round(first_item_s, 1),
        "pause_on_add_s": pauses_add,
        "remove_worker_s": round(removed_s, 1),
        "pause_on_remove_s": pauses_remove,
        "duplicate_first_labels": sum(n - 1 for n in collector.first_counts.values() if n > 1),
    }
