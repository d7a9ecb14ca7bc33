"""The split_off command: items named by id leave a class for a new one; their labels
get revisions, the source's mean loses those that were its examples, every replica
converges, and a command that cannot apply changes nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from topic_world import topic_texts

from streamlabel.pipeline import Engine
from streamlabel.pipeline.commands import apply_command
from streamlabel.pipeline.labeler import Labeler
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import ClassEvent, Feedback, Item
from streamlabel.schemas.commands import Command, CommandResult
from streamlabel.testing import ManualClock

MOVED = ("s0", "s1", "s2", "s3")


def world(make_engine: Any) -> tuple[Engine, list[ClassEvent]]:
    """python and java taught by text; four sql items taught as python by their ids
    (a mislabelling the split corrects). Returns the engine and every class event."""
    engine: Engine = make_engine()
    events: list[ClassEvent] = []
    for topic in ("python", "java"):
        texts = topic_texts(topic, 30, seed=0)
        events += engine.learn([Feedback(text=t, label=topic) for t in texts]).class_events
    texts = topic_texts("sql", len(MOVED), seed=1)
    engine.process([Item(id=i, text=t) for i, t in zip(MOVED, texts, strict=True)])
    taught = engine.learn([Feedback(item_id=i, label="python") for i in MOVED])
    return engine, events + taught.class_events


def command(command_id: str = "c1", **fields: Any) -> Command:
    fields = {"class_id": "python", "name": "sql", "item_ids": MOVED, **fields}
    return Command(command_id=command_id, kind="split_off", issued_by="ana", issued_at=5.0,
                   **fields)  # fmt: skip


def run(engine: Engine, cmd: Command) -> tuple[EngineOutput, CommandResult]:
    return apply_command(engine.curator, cmd, now=10.0)


def moved_vectors(engine: Engine, ids: tuple[str, ...] = MOVED) -> np.ndarray:
    return np.stack([item.vector for i in ids if (item := engine.curator.cache.get(i))])


def mean(engine: Engine, class_id: str) -> np.ndarray:
    return np.asarray(engine.store.get(class_id).mean, np.float64)


# ------------------------------------------------------------ what it does
def test_split_off_moves_the_items_to_a_new_class_and_revises_their_labels(make_engine) -> None:
    engine, _ = world(make_engine)
    out, result = run(engine, command())
    assert (result.status, result.reason) == ("applied", None)
    assert [(e.class_id, e.kind, e.cause) for e in out.class_events] == [
        ("sql", "created", "split"),
        ("python", "updated", "split"),
    ]
    assert out.class_events[1].related == ("sql",)
    assert [(r.class_id, r.kind) for r in result.events] == [
        ("sql", "created"),
        ("python", "updated"),
    ]
    new = engine.store.get("sql")
    assert (new.name, new.status, new.origin, new.count) == ("sql", "known", "feedback", 4)
    assert [(r.item_id, r.label, r.class_name, r.revision, r.reason) for r in out.labels] == [
        (i, "sql", "sql", 2, "split") for i in MOVED
    ]
    assert result.revisions == 4
    assert {engine.curator.cache.get(i).label for i in MOVED} == {"sql"}  # type: ignore[union-attr]
    later = engine.process([Item(id="x", text=topic_texts("sql", 1, seed=9)[0])]).labels[0]
    assert later.label == "sql"


def test_the_source_loses_exactly_the_examples_that_leave_and_moves_away(make_engine) -> None:
    engine, _ = world(make_engine)
    before, java = engine.store.get("python"), engine.store.get("java")
    old_mean, vectors = mean(engine, "python"), moved_vectors(engine).astype(np.float64)
    moved_texts = {c.text for i, c in engine.curator.cache.items() if i in MOVED}
    assert moved_texts <= set(before.exemplar_texts)
    run(engine, command())
    after = engine.store.get("python")
    assert after.count == before.count - 4
    assert len(after.exemplars) == len(before.exemplars) - 4
    expected = (old_mean * before.count - vectors.sum(axis=0)) / (before.count - 4)
    np.testing.assert_allclose(mean(engine, "python"), expected, atol=1e-5)
    centre = vectors.mean(axis=0)

    def cosine(m: np.ndarray) -> float:
        return float(m @ centre / np.linalg.norm(m) / np.linalg.norm(centre))

    assert cosine(mean(engine, "python")) < cosine(old_mean) - 0.05
    assert not moved_texts & set(after.exemplar_texts)
    assert engine.store.get("java") == java  # untouched


def test_items_labelled_by_classification_alone_leave_the_sources_mean_as_it_is(
    make_engine,
) -> None:
    engine, _ = world(make_engine)
    ids = ("p0", "p1", "p2")
    texts = topic_texts("python", 3, seed=4)
    labels = engine.process([Item(id=i, text=t) for i, t in zip(ids, texts, strict=True)]).labels
    assert {r.label for r in labels} == {"python"}
    before = engine.store.get("python")  # its reservoir holds every example: they are not in it
    _, result = run(engine, command(name="scripts", item_ids=ids))
    assert result.status == "applied"
    after = engine.store.get("python")
    assert (after.count, after.mean, after.exemplars) == (
        before.count,
        before.mean,
        before.exemplars,
    )
    assert engine.store.get("scripts").count == 3


def test_an_item_only_in_the_unknown_buffer_moves_with_the_class_it_settled_into(
    make_engine,
) -> None:
    engine, _ = world(make_engine)
    vector = engine.embedder.embed(["python pip decorator generator"]).astype(np.float32)
    engine.buffer.add(["b1"], vector, ["python pip decorator generator"], [0])
    engine.buffer.settle({"b1": ("python", 1)})
    assert "b1" not in engine.curator.cache
    out, result = run(engine, command(item_ids=(*MOVED, "b1")))
    assert result.status == "applied"
    assert [(r.item_id, r.revision) for r in out.labels][-1] == ("b1", 2)
    cached = engine.curator.cache.get("b1")
    assert cached is not None
    assert (cached.label, cached.revision) == ("sql", 2)
    assert "b1" not in engine.buffer.ids


def test_a_replica_applying_the_class_events_holds_the_same_classes(
    make_engine, clock: ManualClock
) -> None:
    engine, events = world(make_engine)
    out, _ = run(engine, command())
    replica = Labeler(engine.settings, engine.embedder, clock=clock)
    replica.apply(events + out.class_events)
    assert replica.store.states() == engine.store.states()
    item = Item(id="x", text=topic_texts("sql", 1, seed=9)[0])
    assert replica.process([item]).labels[0].label == "sql"


# ------------------------------------------------------------ rejected, whole
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"class_id": "nope"}, "no active class 'nope'"),
        ({"name": "java"}, "the name 'java' is taken by class 'java'"),
        ({"name": "python"}, "the name 'python' is taken by class 'python'"),
        ({"item_ids": ("s0", "never", "gone")}, "items not seen or no longer remembered: "
         "['never', 'gone']"),
        ({"item_ids": ("s0", "j0")}, "items not labelled with class 'python': ['j0']"),
        ({"class_id": "tiny", "item_ids": ("t0", "t1")},
         "class 'tiny' would be left without an example"),
    ],
    ids=["unknown-class", "name-taken", "name-of-source", "unresolved", "other-class", "emptied"],
)  # fmt: skip
def test_a_split_that_cannot_apply_is_rejected_and_changes_nothing(
    make_engine, fields: dict[str, Any], reason: str
) -> None:
    engine, _ = world(make_engine)
    engine.process([Item(id="j0", text=topic_texts("java", 1, seed=2)[0])])
    engine.process([Item(id=f"t{i}", text=f"tiny word{i}") for i in range(2)])
    engine.learn([Feedback(item_id=f"t{i}", label="tiny") for i in range(2)])
    states = engine.store.states()
    cached = {i: (c.label, c.revision) for i, c in engine.curator.cache.items()}
    out, result = run(engine, command(**fields))
    assert (result.status, result.reason) == ("rejected", reason)
    assert (out.class_events, out.labels, result.events) == ([], [], ())
    assert engine.store.states() == states
    assert {i: (c.label, c.revision) for i, c in engine.curator.cache.items()} == cached


def test_a_name_held_by_a_retired_class_is_taken(make_engine) -> None:
    engine, _ = world(make_engine)
    engine.curator.retire("java")
    _, result = run(engine, command(name="java"))
    assert result.status == "rejected"
    assert result.reason == "the name 'java' is taken by class 'java'"


def test_an_empty_item_list_is_refused_by_the_record_and_rejected_by_the_learner(
    make_engine,
) -> None:
    with pytest.raises(ValueError, match="a split_off command needs item_ids"):
        command(item_ids=())
    engine, _ = world(make_engine)
    _, result = run(engine, command().model_copy(update={"item_ids": ()}))
    assert (result.status, result.reason) == ("rejected", "no items to move")


# ------------------------------------------------------------ once
def test_a_repeated_split_is_answered_again_not_applied_again(
    make_engine, clock: ManualClock
) -> None:
    engine, _ = world(make_engine)
    cmd = command()
    _, first = run(engine, cmd)
    version = engine.store.version
    out, again = run(engine, cmd)
    assert again == first
    assert (out.class_events, out.labels, engine.store.version) == ([], [], version)
    restored = Engine(engine.settings, engine.embedder, clock=clock)
    restored.load_state(engine.state())
    out, again = run(restored, cmd)  # a restarted learner does not apply it twice
    assert (again, out.class_events, out.labels) == (first, [], [])
    assert restored.store.states() == engine.store.states()
