"""The set_threshold command: a class's fixed open-set threshold changes what its
borderline items get labelled, a null threshold clears it, and the override lives in
the class's state (so it survives recompiles, snapshots and replicas)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from topic_world import topic_texts

from streamlabel.pipeline import Engine
from streamlabel.pipeline.commands import apply_command
from streamlabel.pipeline.labeler import Labeler
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import UNKNOWN, ClassEvent, Feedback, Item, LabelRecord
from streamlabel.schemas.commands import Command, CommandResult
from streamlabel.testing import ManualClock

JAVA_ITEM = Item(id="j", text=topic_texts("java", 1, seed=7)[0])
HASKELL_ITEM = Item(id="h", text=topic_texts("haskell", 1, seed=3)[0])


def taught(make_engine: Any, **overrides: object) -> Engine:
    engine: Engine = make_engine(**overrides)
    for topic in ("python", "java", "sql"):
        engine.learn([Feedback(text=t, label=topic) for t in topic_texts(topic, 30, seed=0)])
    return engine


def command(command_id: str = "c1", **fields: Any) -> Command:
    return Command(command_id=command_id, kind="set_threshold", issued_by="ana", issued_at=5.0,
                   **fields)  # fmt: skip


def run(engine: Engine, cmd: Command) -> tuple[EngineOutput, CommandResult]:
    return apply_command(engine.curator, cmd, now=10.0)


def label_of(labeler: Engine | Labeler, item: Item) -> LabelRecord:
    return labeler.process([item]).labels[0]


# ------------------------------------------------------------ what it changes
def test_a_threshold_above_a_borderline_items_score_makes_it_unknown(make_engine) -> None:
    engine = taught(make_engine)
    before = label_of(engine, JAVA_ITEM)
    assert before.label == "java"
    fixed = round(before.score + 0.01, 6)
    out, result = run(engine, command(class_id="java", threshold=fixed))
    assert (result.status, result.reason) == ("applied", None)
    assert [(e.class_id, e.kind, e.cause) for e in out.class_events] == [
        ("java", "threshold_set", "operator")
    ]
    assert [(r.class_id, r.kind) for r in result.events] == [("java", "threshold_set")]
    assert out.class_events[0].state.threshold_override == fixed
    assert out.labels == []  # labels already published stay as they are
    after = label_of(engine, JAVA_ITEM)
    assert (after.label, after.threshold) == (UNKNOWN, pytest.approx(fixed))
    assert engine.store.thresholds()["java"] == pytest.approx(fixed)


def test_a_threshold_below_a_rejected_items_score_accepts_it(make_engine) -> None:
    engine = taught(make_engine, store={"raw_threshold_quantile": None})  # the metric gate only
    before = label_of(engine, HASKELL_ITEM)
    nearest = before.top_k[0]
    assert before.label == UNKNOWN
    _, result = run(engine, command(class_id=nearest.class_id, threshold=nearest.score - 0.01))
    assert result.status == "applied"
    assert label_of(engine, HASKELL_ITEM).label == nearest.class_id


def test_a_null_threshold_clears_the_override_back_to_the_calibrated_one(make_engine) -> None:
    engine = taught(make_engine)
    calibrated = engine.store.thresholds()["java"]
    run(engine, command(class_id="java", threshold=0.99))
    assert label_of(engine, JAVA_ITEM).label == UNKNOWN
    out, result = run(engine, command("c2", class_id="java", threshold=None))
    assert result.status == "applied"
    assert [e.kind for e in out.class_events] == ["threshold_set"]
    assert engine.store.get("java").threshold_override is None
    assert engine.store.thresholds()["java"] == pytest.approx(calibrated)
    assert label_of(engine, JAVA_ITEM).label == "java"


def test_other_classes_keep_their_calibrated_thresholds(make_engine) -> None:
    engine = taught(make_engine)
    before = engine.store.thresholds()
    run(engine, command(class_id="java", threshold=0.9))
    after = engine.store.thresholds()
    assert {k: v for k, v in after.items() if k != "java"} == {
        k: v for k, v in before.items() if k != "java"
    }


# ------------------------------------------------------------ validated, once
def test_a_set_threshold_command_must_name_its_threshold_null_included() -> None:
    with pytest.raises(ValueError, match="a set_threshold command needs threshold"):
        command(class_id="java")
    assert command(class_id="java", threshold=None).threshold is None


@pytest.mark.parametrize("value", [1.5, -1.01, math.nan, math.inf])
def test_a_threshold_outside_minus_one_to_one_is_refused_by_the_record(value: float) -> None:
    with pytest.raises(ValueError, match="Input should be"):
        command(class_id="java", threshold=value)


@pytest.mark.parametrize("value", [1.5, -2.0, math.nan, math.inf])
def test_a_threshold_that_is_not_a_number_in_range_is_rejected_with_its_reason(
    make_engine, value: float
) -> None:
    engine = taught(make_engine)
    before = engine.store.states()
    unchecked = command(class_id="java", threshold=0.5).model_copy(update={"threshold": value})
    out, result = run(engine, unchecked)
    assert result.status == "rejected"
    assert result.reason is not None
    assert "a threshold is a number in [-1, 1]" in result.reason
    assert (out.class_events, engine.store.states()) == ([], before)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"class_id": "nope", "threshold": 0.5}, "no active class 'nope'"),
        ({"class_id": "java", "threshold": None}, "class 'java' already has no threshold override"),
    ],
    ids=["unknown-class", "nothing-to-clear"],
)
def test_a_set_threshold_that_cannot_apply_is_rejected(
    make_engine, fields: dict[str, Any], reason: str
) -> None:
    engine = taught(make_engine)
    out, result = run(engine, command(**fields))
    assert (result.status, result.reason) == ("rejected", reason)
    assert out.class_events == []


def test_setting_the_threshold_a_class_already_has_is_rejected(make_engine) -> None:
    engine = taught(make_engine)
    run(engine, command(class_id="java", threshold=0.5))
    _, result = run(engine, command("c2", class_id="java", threshold=0.5))
    assert result.status == "rejected"
    assert result.reason == "class 'java' already has the threshold 0.5"


def test_a_repeated_set_threshold_is_answered_again_not_applied_again(make_engine) -> None:
    engine = taught(make_engine)
    cmd = command(class_id="java", threshold=0.9)
    _, first = run(engine, cmd)
    run(engine, command("c2", class_id="java", threshold=None))
    version = engine.store.version
    out, again = run(engine, cmd)
    assert again == first
    assert (out.class_events, engine.store.version) == ([], version)
    assert engine.store.get("java").threshold_override is None  # not set again


# ------------------------------------------------------------ it lasts
def test_the_override_survives_a_recompile_after_more_examples(make_engine) -> None:
    engine = taught(make_engine)
    run(engine, command(class_id="java", threshold=0.9))
    out = engine.learn([Feedback(text=t, label="java") for t in topic_texts("java", 10, seed=5)])
    assert out.class_events[0].state.threshold_override == 0.9
    assert engine.store.thresholds()["java"] == pytest.approx(0.9)
    assert label_of(engine, JAVA_ITEM).label == UNKNOWN


def test_the_override_survives_a_snapshot_and_restore(make_engine, clock: ManualClock) -> None:
    engine = taught(make_engine)
    cmd = command(class_id="java", threshold=0.9)
    _, first = run(engine, cmd)
    restored = Engine(engine.settings, engine.embedder, clock=clock)
    restored.load_state(engine.state())
    assert restored.store.thresholds()["java"] == pytest.approx(0.9)
    assert label_of(restored, JAVA_ITEM).label == UNKNOWN
    out, again = run(restored, cmd)  # the restarted learner does not apply it twice
    assert (again, out.class_events) == (first, [])


@pytest.mark.parametrize("compacted", [False, True], ids=["every-event", "last-per-class"])
def test_a_replica_applying_the_class_events_uses_the_override(
    make_engine, clock: ManualClock, compacted: bool
) -> None:
    engine = taught(make_engine)
    events: list[ClassEvent] = [
        engine.store.reassert(cid, cause="test") for cid in engine.store.active_ids()
    ]
    events += run(engine, command(class_id="java", threshold=0.9))[0].class_events
    if compacted:
        events = list({e.class_id: e for e in events}.values())
    replica = Labeler(engine.settings, engine.embedder, clock=clock)
    replica.apply(events)
    assert replica.store.thresholds() == pytest.approx(engine.store.thresholds())
    assert label_of(replica, JAVA_ITEM).label == UNKNOWN
    replica.apply(run(engine, command("c2", class_id="java", threshold=None))[0].class_events)
    assert label_of(replica, JAVA_ITEM).label == "java"
