"""The GPU topology on CPU: one shared embedder actor fed token ids by the workers.

``supervisor.embedder = "actor"`` is what ``auto`` picks on a cluster with a GPU.
Here it runs on CPU with the real broker, Ray and MiniLM: two stream workers
tokenize their batches and send them to one :class:`EmbedderActor`; every item
is labelled, with the same labels as the workers' own models would give. The
workers run the pipelined step (``worker.overlap``), which is meant for this
topology.
"""

from __future__ import annotations

import pytest

from streamlabel.kafka.client import LabelCollector, produce_feedback, produce_items
from streamlabel.runtime.supervisor import Runtime
from streamlabel.schemas import Feedback, Item
from streamlabel.testing import wait_until

pytestmark = pytest.mark.integration


def test_workers_feed_one_shared_embedder_actor_and_label_everything(
    make_runtime_settings, local_ray, tmp_path, so_test, embedder
) -> None:
    settings = make_runtime_settings(
        tmp_path / "state",
        # the pipelined step too, as it is meant to run beside a model on another device
        supervisor={"workers": 2, "embedder": "actor"},
        worker={"batch_size": 32, "overlap": True},
        ray={"embedder_num_cpus": 0},
        discovery={"run_every": 100000},
    )
    classes = sorted(set(so_test.labels))[:4]
    pairs = list(zip(so_test.texts, so_test.labels, strict=True))
    teach = [Feedback(text=t, label=y) for c in classes for t, y in
             [p for p in pairs if p[1] == c][:25]]  # fmt: skip
    items = [Item(id=f"a-{i}", text=t) for i, (t, y) in enumerate(pairs[200:360])]
    with Runtime(settings) as rt:
        assert rt._embedder is not None
        assert rt._embedder._tokenizer is not None
        produce_feedback(settings.kafka, teach)
        rt.wait_until_learned(len(teach), timeout_s=180)
        produce_items(settings.kafka, items)
        collector = LabelCollector(settings.kafka)
        try:
            wait_until(lambda: collector.poll() >= 0 and len(collector.first) >= len(items),
                       180, "labels")  # fmt: skip
        finally:
            collector.close()
        workers = rt.progress().workers
    got = {i: collector.first[i] for i in (it.id for it in items)}
    assert {r.model_id for r in got.values()} == {embedder.model_id}
    assert sum(w["items"] for w in workers) >= len(items)
    assert all(w["items"] > 0 for w in workers)  # both workers fed the one actor
    assert all(w["commits"] == w["batches"] for w in workers)  # every batch settled
    # the labels are the model's: the same texts through a local engine agree
    from streamlabel.pipeline import Engine
    from streamlabel.settings.engine import load_settings

    local = Engine(load_settings(discovery={"run_every": 100000}), embedder)
    local.learn(teach)
    expected = {r.item_id: r.label for r in local.process(items).labels}
    agree = sum(expected[i] == r.label for i, r in got.items())
    assert agree >= 0.97 * len(items), (agree, len(items))
