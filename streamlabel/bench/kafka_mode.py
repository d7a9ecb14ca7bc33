"""The open-world benchmark through the real system (``bench openworld --mode kafka``).

The same protocol, seeds and scoring as :mod:`streamlabel.bench.openworld`, but
feedback goes to the ``feedback`` topic, items to ``items``, stream workers
(Ray actors, read replicas of the store) label them, the learner discovers new
classes in the background, and the FINAL label of each test item is read back
from ``labels`` (latest revision). Items carry the same pre-computed vectors as
in engine mode, so the two modes differ only by the distributed runtime:
replicas that lag the learner, discovery in the background, and revisions
published as records.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import numpy as np

from streamlabel.bench.openworld import (
    SeedResult,
    diagnose,
    protocol_feedback,
    split_protocol,
    stream_order,
)
from streamlabel.datasets import LabelledTexts
from streamlabel.errors import StreamlabelError
from streamlabel.kafka.client import LabelCollector, produce_feedback, produce_items
from streamlabel.runtime.supervisor import Runtime
from streamlabel.schemas import UNKNOWN, Item
from streamlabel.scoring import open_world_scores
from streamlabel.settings.runtime import RuntimeSettings

__all__ = ["run_seed_kafka"]


def run_seed_kafka(
    train: LabelledTexts,
    test: LabelledTexts,
    train_vectors: np.ndarray,
    test_vectors: np.ndarray,
    *,
    settings: RuntimeSettings,
    seed: int,
    known_ratio: float,
    labeled_ratio: float,
    progress: Callable[[str], None] | None = None,
    timeout_s: float = 1800.0,
) -> SeedResult:
    """Runs one seed through broker + Ray and scores the labels read back from Kafka."""
    say = progress or (lambda _msg: None)
    split = split_protocol(
        train.labels, known_ratio=known_ratio, labeled_ratio=labeled_ratio, seed=seed
    )
    run_id = uuid.uuid4().hex[:8]
    s = settings.model_copy(
        update={
            "seed": seed,
            "kafka": settings.kafka.model_copy(
                update={"topic_prefix": f"bench-{run_id}.", "group_id": f"bench-{run_id}"}
            ),
        }
    )
    feedback = protocol_feedback(train, train_vectors, split)
    order = stream_order(split, len(test), seed)
    items = []
    for part, i in order:
        data, vecs = (train, train_vectors) if part == "train" else (test, test_vectors)
        items.append(Item(id=f"{part}-{i}", text=data.texts[i], vector=vecs[i]))
    with Runtime(s) as rt:
        kafka = rt.settings.kafka
        started = time.perf_counter()
        produce_feedback(kafka, feedback)
        rt.wait_until_learned(len(feedback), timeout_s)
        produce_items(kafka, items, chunk=2000)
        collector = LabelCollector(kafka)
        ids = {it.id for it in items}
        deadline = time.monotonic() + timeout_s
        last = 0.0
        while not ids <= collector.first.keys():
            collector.poll(timeout_ms=500)
            rt.check()
            if time.monotonic() > deadline:
                missing = len(ids - collector.first.keys())
                raise StreamlabelError(f"seed {seed}: {missing} items still unlabelled")
            if time.monotonic() - last > 10:
                last = time.monotonic()
                say(f"seed {seed} (kafka): {rt.progress().line()}")
        rt.finish_discovery()
        collector.drain(quiet_s=3.0)
        seconds = time.perf_counter() - started
        classes = rt.call_learner("classes")
        collector.close()
    test_ids = [f"test-{i}" for i in range(len(test))]
    known = set(split.known)

    def labels(records: dict[str, object]) -> list[str]:
        return [getattr(records.get(i), "label", UNKNOWN) for i in test_ids]

    discovered = [
        (str(c["class_id"]), str(c["name"]), int(c["count"]))
        for c in classes
        if c["origin"] == "discovery" and c["status"] != "retired"
    ]
    duplicates = sum(n - 1 for n in collector.first_counts.values() if n > 1)
    say(f"seed {seed} (kafka): {collector.records} label records, {duplicates} duplicate firsts")
    final_labels = labels(collector.final)  # type: ignore[arg-type]
    return SeedResult(
        seed=seed,
        final=open_world_scores(test.labels, final_labels, known),
        first=open_world_scores(test.labels, labels(collector.first), known),  # type: ignore[arg-type]
        novel_found=len(discovered),
        novel_true=len(set(train.labels) - known),
        items=len(order),
        seconds=seconds,
        discovered=discovered,
        # discovery runs happen in the learner: their reports stay there
        diagnostics=diagnose(test.labels, final_labels, known, None),
    )
