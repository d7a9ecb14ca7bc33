"""``streamlabel bench throughput``: end to end against the bare model, in one run.

On the same texts and machine:

(a) **bare** ``model.encode`` items/s (sentence-transformers' own call at the
    model's batch size and dtype, all cores) and **the embedder alone**
    (streamlabel's length-bucketed, packed call on the same model), each measured
    before and again after the end-to-end part (a shared machine's speed drifts;
    the ratios use their means, and all are reported);
(b) **end to end** items/s through the embedded broker, Ray and the actors, from
    the first produce to the broker timestamp of the last first label, for a
    backlog of ``items`` texts;
(c) **latency** p50/p99 from produce to label (the label message's broker
    timestamp minus the item's send time) for a stream paced at shares of the
    end-to-end rate (``--loads``); the labels are read after the paced sends, so
    the bench's reader takes no CPU from the deployment meanwhile;
(d) **stages**: seconds per item and share of the workers' busy time for each
    step of a batch (poll, decode, embed, classify, encode, publish, commit,
    observe), from the workers' own counters over the backlog; the learner's
    drift and discovery seconds over the same span; and, measured on the same
    texts outside the pipeline, how decode splits into msgpack and validation
    and how embedding splits into tokenization and the forward pass;
(e) **memory**: each actor's RSS (and the GPU's peak allocation when there is one).

With the pipelined step, stages overlap: ``overlap_ms_per_item`` gives the Kafka
work done while the model ran and the time then left waiting for the model.

With ``--json`` the last line is ``{"encode_items_per_s", "e2e_items_per_s",
"ratio", "p50_ms", "p99_ms", "stages", ...}``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from streamlabel.bench.console_load import ConsoleLoad
from streamlabel.bench.cpu_budget import CpuBudget
from streamlabel.bench.runtime import bare_rates
from streamlabel.datasets import LabelledTexts
from streamlabel.errors import StreamlabelError
from streamlabel.kafka.client import TopicReader, produce_feedback, produce_items
from streamlabel.kafka.publisher import Publisher
from streamlabel.kafka.topics import Topics
from streamlabel.ops.metrics import STAGES
from streamlabel.runtime.supervisor import Runtime
from streamlabel.schemas import Feedback, Item, LabelRecord, decode, encode
from streamlabel.settings.runtime import RuntimeSettings

__all__ = [
    "batch_shape",
    "latency_percentiles",
    "overdue",
    "run_throughput_bench",
    "send_ticks",
    "stage_table",
]

WORKER_STAGES = STAGES
LEARNER_STAGES = ("drift", "discovery", "adopt")
OVERLAP_STAGES = ("io_overlapped", "embed_wait")
"""With ``worker.overlap``: the Kafka work a step did while the model ran (settling
the batch before, class events, prefetching), and what was left of the model's
time after it (the main thread waiting for the embedding). Waiting left over means
the I/O was hidden."""


def stage_table(
    before: dict[str, float], after: dict[str, float], items: int, stages: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Per stage: milliseconds per item and share of the summed time, over a span.

    Example:
        >>> after = {"embed": 3.0, "commit": 0.5}
        >>> t = stage_table({"embed": 1.0}, after, 1000, ("embed", "commit"))
        >>> t["embed"], t["commit"]["share"]
        ({'ms_per_item': 2.0, 'share': 0.8}, 0.2)
    """
    spent = {s: max(0.0, after.get(s, 0.0) - before.get(s, 0.0)) for s in stages}
    total = sum(spent.values()) or 1.0
    return {
        s: {"ms_per_item": round(spent[s] * 1e3 / max(items, 1), 4),
            "share": round(spent[s] / total, 4)}
        for s in stages
    }  # fmt: skip


def latency_percentiles(sent_ms: dict[str, float], labelled_ms: dict[str, float]) -> dict[str, Any]:
    """p50/p99/max of ``labelled - sent`` over the ids present in both (milliseconds).

    Example:
        >>> latency_percentiles({"a": 0, "b": 10}, {"a": 5, "b": 30})["p50_ms"]
        12.5
    """
    ids = sorted(sent_ms.keys() & labelled_ms.keys())
    if not ids:
        raise StreamlabelError("no item of the paced stream was labelled")
    lat = np.array([labelled_ms[i] - sent_ms[i] for i in ids], dtype=np.float64)
    return {
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(lat.max()), 1),
        "samples": len(ids),
    }


def _summed(workers: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for w in workers:
        for stage, seconds in w.get("stage_s", {}).items():
            out[stage] = out.get(stage, 0.0) + float(seconds)
    return out


class _Labels:
    """First labels read back, with their broker timestamps (ms)."""

    def __init__(self, runtime: Runtime) -> None:
        self._reader = TopicReader(runtime.settings.kafka, "labels")
        self.first_ms: dict[str, float] = {}

    def poll(self, timeout_ms: int = 200) -> None:
        for m in self._reader.poll(timeout_ms=min(timeout_ms, 200)):
            try:
                r = decode(m.value, LabelRecord)
            except StreamlabelError:
                continue
            if r.revision == 0 and r.item_id not in self.first_ms:
                self.first_ms[r.item_id] = float(m.timestamp)

    def wait_for(self, ids: set[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ids <= self.first_ms.keys():
            if time.monotonic() > deadline:
                missing = len(ids - self.first_ms.keys())
                raise StreamlabelError(f"{missing} items were not labelled in {timeout_s:g}s")
            self.poll()

    def close(self) -> None:
        self._reader.close()


def _split_decode(texts: list[str]) -> dict[str, float]:
    """Milliseconds per item of msgpack alone and of decode+validate, on these texts."""
    import msgpack

    raw = [encode(Item(id=f"x-{i}", text=t)) for i, t in enumerate(texts)]
    t0 = time.perf_counter()
    for r in raw:
        msgpack.unpackb(r, raw=False)
    t1 = time.perf_counter()
    for r in raw:
        decode(r, Item)
    t2 = time.perf_counter()
    n = max(len(raw), 1)
    return {"msgpack_ms": (t1 - t0) * 1e3 / n, "decode_ms": (t2 - t1) * 1e3 / n}


def _split_embed(settings: RuntimeSettings, texts: list[str]) -> dict[str, float]:
    """Milliseconds per item of tokenization alone (the model's tokenizer, its batches)."""
    from streamlabel.core.embedder import TextTokenizer

    m = settings.model
    tokenizer = TextTokenizer(m.path, batch_size=m.batch_size, max_seq_length=m.max_seq_length)
    tokenizer.load()
    t0 = time.perf_counter()
    for i in range(0, len(texts), m.batch_size):
        tokenizer.tokenize(texts[i : i + m.batch_size])
    return {"tokenize_ms": (time.perf_counter() - t0) * 1e3 / max(len(texts), 1)}


def run_throughput_bench(
    settings: RuntimeSettings,
    train: LabelledTexts,
    test: LabelledTexts,
    *,
    items: int,
    workers: int,
    paced_s: float = 20.0,
    loads: tuple[float, ...] = (0.5,),
    tick_ms: float = 10.0,
    console: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs the measurements; returns them as plain data (the ``--json`` line).

    ``loads``: shares of the end-to-end rate at which latency is measured
    (``latency`` and ``p50_ms``/``p99_ms`` are the one nearest 0.5;
    ``latency_curve`` has them all); the paced stream is sent in ticks of
    ``tick_ms`` (see :func:`_paced_latency`). ``console``: the web console serves the
    deployment with a headless browser on its Overview through the whole run
    (:mod:`~streamlabel.bench.console_load`), to measure what it costs.
    """
    if not loads or any(not 0 < x <= 1 for x in loads):
        raise StreamlabelError(f"loads are shares of the end-to-end rate in (0, 1], got {loads}")
    texts = test.texts[:items]
    if len(texts) < items:
        raise StreamlabelError(f"the test file has {len(texts)} texts, fewer than --items {items}")
    bare, alone = bare_rates(settings, texts)
    say(f"bare model.encode: {bare:.1f} items/s on {len(texts)} texts "
        f"(streamlabel's embedder alone: {alone:.1f})")  # fmt: skip
    decode_split = _split_decode(texts)
    embed_split = _split_embed(settings, texts)
    feedback = [Feedback(text=t, label=y) for t, y in zip(train.texts, train.labels, strict=True)]
    s = settings.model_copy(
        update={"supervisor": settings.supervisor.model_copy(update={"workers": workers})}
    )
    with Runtime(s) as rt, contextlib.ExitStack() as stack:
        if console:
            url = stack.enter_context(ConsoleLoad(rt)).url
            say(f"console at {url} with a headless browser on its overview")
        kafka = rt.settings.kafka
        produce_feedback(kafka, feedback[:600])
        rt.wait_until_learned(min(600, len(feedback)))
        rt.wait_until_assigned()
        labels = _Labels(rt)
        # (b) a backlog: first produce to last first label
        p0 = rt.progress()
        batch = [Item(id=f"b-{i}", text=t) for i, t in enumerate(texts)]
        budget = CpuBudget()
        budget.start()
        t0 = time.time()
        produce_items(kafka, batch)
        labels.wait_for({i.id for i in batch}, 1800)
        cpu = budget.stop()
        e2e = len(batch) / (max(labels.first_ms[i.id] for i in batch) / 1e3 - t0)
        p1 = rt.progress()
        say(f"end to end: {e2e:.1f} items/s with {workers} worker(s) ({e2e / bare:.2f} of bare, "
            f"{e2e / alone:.2f} of the embedder alone)")  # fmt: skip
        spent0, spent1 = _summed(p0.workers), _summed(p1.workers)
        stages = stage_table(spent0, spent1, len(batch), WORKER_STAGES)
        backlog_batches = batch_shape(p0.workers, p1.workers)
        overlap = {
            k: v["ms_per_item"]
            for k, v in stage_table(spent0, spent1, len(batch), OVERLAP_STAGES).items()
        }
        learner = stage_table(
            p0.learner.get("stage_s", {}), p1.learner.get("stage_s", {}), len(batch),
            LEARNER_STAGES,
        )  # fmt: skip
        busy = sum(spent1.get(k, 0.0) - spent0.get(k, 0.0) for k in WORKER_STAGES)
        learner_s = sum(v["ms_per_item"] for v in learner.values()) * len(batch) / 1e3
        # (c) latency at shares of the end-to-end rate, one item at a time
        curve = [
            _paced_latency(rt, labels, texts, rate=max(e2e * load, 1.0), paced_s=paced_s,
                           tag=f"p{int(load * 100)}", tick_s=tick_ms / 1e3)
            | {"load": load}
            for load in loads
        ]  # fmt: skip
        for point in curve:
            say(f"latency at {point['paced_items_per_s']:.0f} items/s ({point['load']:.0%} of "
                f"end to end): p50 {point['p50_ms']} ms, p99 {point['p99_ms']} ms (sent late: "
                f"p99 {point['sent_late']['p99_ms']} ms)")  # fmt: skip
        latency = min(curve, key=lambda c: abs(c["load"] - 0.5))
        p2 = rt.progress()
        device_memory = rt.embedder_memory()
        labels.close()
    bare_after, alone_after = bare_rates(settings, texts)
    say(f"bare model.encode again: {bare_after:.1f} items/s (embedder alone: {alone_after:.1f})")
    bare_first, bare = bare, (bare + bare_after) / 2
    alone_first, alone = alone, (alone + alone_after) / 2
    per_item = {k: round(v, 4) for k, v in {**decode_split, **embed_split}.items()}
    result: dict[str, Any] = {
        "encode_items_per_s": round(bare, 1),
        "encode_items_per_s_before_after": [round(bare_first, 1), round(bare_after, 1)],
        "e2e_items_per_s": round(e2e, 1),
        "ratio": round(e2e / bare, 3),
        "embedder_items_per_s": round(alone, 1),
        "embedder_items_per_s_before_after": [round(alone_first, 1), round(alone_after, 1)],
        "ratio_to_embedder": round(e2e / alone, 3),
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "stages": stages,
        "backlog_batches": backlog_batches,
        "learner_stages": learner,
        "overlap_ms_per_item": overlap,
        "learner_share_of_worker_time": round(learner_s / busy, 4) if busy else 0.0,
        "cpu_budget": cpu,
        "outside_pipeline_ms_per_item": per_item,
        "latency": {k: v for k, v in latency.items() if k != "load"},
        "latency_curve": curve,
        "workers": workers,
        "items": len(batch),
        "tick_ms": tick_ms,
        "console": console,
        "rss_gib": {
            **{w["worker_id"]: round(w["rss_bytes"] / 2**30, 2) for w in p2.workers},
            "learner": round(p2.learner.get("rss_bytes", 0) / 2**30, 2),
        },
        "gpu_peak_gib": _gpu_peak_gib(device_memory),
    }
    return result


def _paced_latency(
    rt: Runtime,
    labels: _Labels,
    texts: list[str],
    *,
    rate: float,
    paced_s: float,
    tag: str,
    tick_s: float,
) -> dict[str, Any]:
    """Produce-to-label latency of a stream offered at ``rate`` items/s for ``paced_s``,
    with what the workers' batches were like meanwhile and the CPU budget of the phase.

    Every ``tick_s`` the items that have fallen due since the last tick are sent
    together (one produce request, as a producer with ``linger.ms`` would), and
    each item's latency counts from the moment it fell due, so the wait for its
    tick counts against the pipeline. One request per item cost this bench's own
    Python producer 12% of the 2 cores at half the end-to-end rate; ``tick_s``
    0 sends each item on its own at its moment. A tick that comes late (a slow
    flush) takes every later tick already due with it (:func:`overdue`), so the
    bench catches up in one request instead of falling further behind. ``sent_late``
    is how late this bench handed each item to its producer (its own share of
    the latency: a starved or blocked bench shows there, not in the pipeline)."""
    n_paced = max(50, min(len(texts), int(rate * paced_s)))
    sent: dict[str, float] = {}
    handed: dict[str, float] = {}
    kafka = rt.settings.kafka
    topics = Topics.of(kafka)
    publisher = Publisher(kafka, topics)
    before = rt.progress().workers
    budget = CpuBudget()
    budget.start()
    try:
        # Only sleep between sends: the labels are read afterwards (the latency is
        # the label's broker timestamp minus the due time). Reading them meanwhile
        # took 19% of the 2 cores from the deployment under test.
        start, wall0 = time.monotonic(), time.time()
        plan, i = send_ticks(n_paced, rate, tick_s), 0
        while i < len(plan):
            time.sleep(max(0.0, start + plan[i][0] - time.monotonic()))
            ks, i = overdue(plan, i, time.monotonic() - start)
            for k in ks:
                item = Item(id=f"{tag}-{k}", text=texts[k % len(texts)])
                sent[item.id] = (wall0 + k / rate) * 1e3  # when it fell due
                handed[item.id] = time.time() * 1e3
                publisher.send(topics.items, item.id.encode(), encode(item))
            if tick_s > 0:
                publisher.flush()  # out now, not after kafka.linger_ms
        publisher.flush()
        offered = n_paced / (time.monotonic() - start)
        cpu = budget.stop()  # before the labels are read back: that is the bench's own work
    finally:
        publisher.close()
    labels.wait_for(set(sent), 600)
    return {
        **latency_percentiles(sent, labels.first_ms),
        "sent_late": latency_percentiles(sent, handed),
        "paced_items_per_s": round(offered, 1),
        "batches": batch_shape(before, rt.progress().workers),
        "cpu_budget": cpu,
    }


def send_ticks(n: int, rate: float, tick_s: float) -> list[tuple[float, list[int]]]:
    """When the paced stream sends which items: ``(seconds from the start, items)``.

    Item ``k`` falls due at ``k / rate``; a tick opens at the first item not yet
    sent and sends, ``tick_s`` later, every item due by then.

    Example:
        >>> send_ticks(5, 100.0, 0.025)  # items every 10 ms, ticks of 25 ms
        [(0.025, [0, 1, 2]), (0.055, [3, 4])]
        >>> send_ticks(2, 10.0, 0.0)
        [(0.0, [0]), (0.1, [1])]
    """
    plan: list[tuple[float, list[int]]] = []
    k = 0
    while k < n:
        at = k / rate + tick_s
        ks = list(range(k, min(n, int(at * rate + 1e-9) + 1)))
        plan.append((round(at, 9), ks))
        k = ks[-1] + 1
    return plan


def overdue(plan: list[tuple[float, list[int]]], i: int, now: float) -> tuple[list[int], int]:
    """The items of tick ``i`` of ``plan`` (:func:`send_ticks`) and of every later
    tick due by ``now`` (seconds from the start), and the next tick's index.

    Example:
        >>> plan = [(0.01, [0]), (0.02, [1, 2]), (0.03, [3])]
        >>> overdue(plan, 0, 0.01), overdue(plan, 0, 0.025)
        (([0], 1), ([0, 1, 2], 2))
    """
    items, j = list(plan[i][1]), i + 1
    while j < len(plan) and plan[j][0] <= now:
        items.extend(plan[j][1])
        j += 1
    return items, j


def batch_shape(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, float]:
    """The workers' batches over a span: how many, their mean size, the group's
    rebalances (each pauses the stream for a join), and the mean milliseconds one
    batch spent in each stage (``embed_ms``, ``publish_ms``...).

    Example:
        >>> a = [{"batches": 2, "items": 10, "stage_s": {"embed": 0.1}}]
        >>> b = [{"batches": 6, "items": 30, "stage_s": {"embed": 0.3}}]
        >>> batch_shape(a, b)
        {'batches': 4, 'items_per_batch': 5.0, 'rebalances': 0, 'embed_ms': 50.0}
    """

    def grew(counter: str) -> int:
        return sum(w.get(counter, 0) for w in after) - sum(w.get(counter, 0) for w in before)

    n = grew("batches")
    out: dict[str, float] = {
        "batches": n, "items_per_batch": round(grew("items") / max(n, 1), 2),
        "rebalances": grew("rebalances"),
    }  # fmt: skip
    spent0, spent1 = _summed(before), _summed(after)
    for stage in WORKER_STAGES:
        if stage in spent1:
            ms = (spent1[stage] - spent0.get(stage, 0.0)) * 1e3 / max(n, 1)
            out[f"{stage}_ms"] = round(ms, 2)
    return out


def _gpu_peak_gib(device_memory: dict[str, int]) -> float | None:
    """The GPU's peak allocation: the shared embedder actor's, else this process's
    (local mode on a GPU); None on CPU."""
    if "gpu_peak_bytes" in device_memory:
        return round(device_memory["gpu_peak_bytes"] / 2**30, 2)
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    except Exception:
        return None
