"""The Engine's two roles apart: a Labeler over a replica and a Curator that writes.

A deployment runs them in different processes (the stream workers and the
learner), connected only by records: class events one way, unknowns and what
was labelled the other. These tests hold the split to the single-process
Engine: the same inputs give the same labels.
"""

from __future__ import annotations

import numpy as np
import pytest
from topic_world import topic_texts

from streamlabel.errors import StoreError
from streamlabel.pipeline import Engine, load_settings
from streamlabel.pipeline.cache import ItemCache
from streamlabel.pipeline.curator import Curator
from streamlabel.pipeline.labeler import Labeler
from streamlabel.schemas import UNKNOWN, Feedback, Item
from streamlabel.testing import HashEmbedder, ManualClock

SETTINGS = {"drift": {"enabled": False}, "discovery": {"enabled": False}}


def feedback(topics: list[str], n: int = 30) -> list[Feedback]:
    return [Feedback(text=x, label=t) for t in topics for x in topic_texts(t, n, 0)]


def items(topic: str, n: int, prefix: str) -> list[Item]:
    return [Item(id=f"{prefix}{i}", text=x) for i, x in enumerate(topic_texts(topic, n, 9))]


def labels(out) -> list[tuple[str, str, int, int]]:
    return [(r.item_id, r.label, r.revision, r.store_version) for r in out.labels]


def test_a_labeler_fed_the_curators_events_labels_like_the_single_process_engine() -> None:
    clock = ManualClock(0)
    settings = load_settings(**SETTINGS)
    engine = Engine(settings, HashEmbedder(dim=64), clock=clock)
    curator = Curator(settings, HashEmbedder(dim=64), clock=clock)
    labeler = Labeler(settings, HashEmbedder(dim=64), clock=clock)
    engine.learn(feedback(["python", "java"]))
    assert labeler.apply(curator.learn(feedback(["python", "java"])).class_events) == 2

    stream = items("python", 10, "p") + items("sql", 10, "s")
    assert labels(labeler.process(stream)) == labels(engine.process(stream))
    # a redelivered batch is labelled at revision 0 again: only the learner revises
    again = labeler.process(stream[:3])
    assert [r.revision for r in again.labels] == [0, 0, 0]


def test_the_labeler_never_writes_its_store() -> None:
    labeler = Labeler(load_settings(**SETTINGS), HashEmbedder(dim=64), clock=ManualClock(0))
    out = labeler.process(items("haskell", 20, "h"))
    assert len(out.unknowns) == 20
    assert labeler.store.version == 0
    assert labeler.store.active_ids() == []


def test_the_curator_buffers_what_a_labeler_in_its_process_rejected() -> None:
    settings = load_settings(drift={"enabled": False})
    engine = Engine(settings, HashEmbedder(dim=64), clock=ManualClock(0))
    engine.learn(feedback(["python"]))
    out = engine.process(items("haskell", 12, "h"))
    assert len(out.unknowns) == 12
    assert sorted(engine.buffer.ids) == sorted(u.item_id for u in out.unknowns)


def test_one_step_stamps_every_label_alike() -> None:
    clock = ManualClock(50.0)
    engine = Engine(load_settings(**SETTINGS), HashEmbedder(dim=64), clock=clock)
    engine.learn(feedback(["python", "java"]))
    out = engine.process(items("python", 5, "p") + items("haskell", 5, "h"))
    assert {(r.emitted_at, r.store_version, r.model_id) for r in out.labels} == {
        (50.0, engine.store.version, engine.embedder.model_id)
    }


def test_a_restored_engine_labels_with_the_restored_store() -> None:
    settings = load_settings(**SETTINGS)
    source = Engine(settings, HashEmbedder(dim=64), clock=ManualClock(0))
    source.learn(feedback(["python", "java"]))
    engine = Engine(settings, HashEmbedder(dim=64), clock=ManualClock(0))
    engine.load_state(source.state())
    assert engine.labeler.store is engine.store
    out = engine.process(items("python", 5, "p"))
    assert {r.label for r in out.labels} == {"python"}


def test_labeler_and_curator_refuse_a_store_of_another_dimension() -> None:
    settings = load_settings(**SETTINGS)
    store = Engine(settings, HashEmbedder(dim=32)).store
    with pytest.raises(StoreError, match="dimension"):
        Labeler(settings, HashEmbedder(dim=64), store=store)
    with pytest.raises(StoreError, match="dimension"):
        Curator(settings, HashEmbedder(dim=64), store=store)


# ------------------------------------------------------------------ item cache
def test_the_item_cache_forgets_the_least_recently_seen_first() -> None:
    cache = ItemCache(2)
    vec = np.zeros(2, np.float32)
    cache.remember("a", vec, None, UNKNOWN, 0)
    cache.remember("b", vec, None, UNKNOWN, 0)
    cache.remember("a", vec, None, "x", 1)  # seen again: now the most recent
    cache.remember("c", vec, None, UNKNOWN, 0)
    assert list(cache.ids()) == ["a", "c"]
    assert cache.revised_past("a", 0)
    assert not cache.revised_past("a", 1)


def test_an_item_cache_of_capacity_zero_keeps_nothing() -> None:
    cache = ItemCache(0)
    cache.remember("a", np.zeros(2, np.float32), None, UNKNOWN, 0)
    assert len(cache) == 0
    assert "a" not in cache


def test_a_redelivered_item_never_outranks_a_learner_revision() -> None:
    """Highest revision wins: a stream label is revision 0, so the learner's feedback
    revision stays the winner however often the item is redelivered."""
    engine = Engine(load_settings(**SETTINGS), HashEmbedder(dim=64), clock=ManualClock(0))
    engine.learn(feedback(["python", "java"]))
    item = items("python", 1, "p")
    assert [r.revision for r in engine.process(item).labels] == [0]
    revised = engine.learn([Feedback(item_id="p0", label="java")]).labels
    assert [(r.revision, r.label) for r in revised] == [(1, "java")]
    for _ in range(3):  # redelivered: stream labels stay at revision 0
        assert [r.revision for r in engine.process(item).labels] == [0]
    again = engine.learn([Feedback(item_id="p0", label="python")]).labels
    assert [r.revision for r in again] == [2]  # the learner keeps counting past itself
