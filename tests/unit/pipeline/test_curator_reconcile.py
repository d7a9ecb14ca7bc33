"""A restored learner makes the replicas (which hold the changelog) match its store."""

from __future__ import annotations

from streamlabel.pipeline import Engine, load_settings
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import ClassEvent, Feedback
from streamlabel.testing import HashEmbedder, ManualClock


def engine() -> Engine:
    return Engine(
        load_settings(drift={"enabled": False}), HashEmbedder(dim=16), clock=ManualClock(1.0)
    )


def reconcile(leader: Engine, events: list[ClassEvent]) -> EngineOutput:
    return leader.curator.reconcile(events)


def test_a_changelog_equal_to_the_store_needs_no_event() -> None:
    leader = engine()
    events = leader.learn([Feedback(text="python list", label="python")]).class_events
    assert reconcile(leader, events).class_events == []


def test_classes_that_differ_are_reasserted_and_unknown_ones_retired() -> None:
    """Changelog: python at an older state, java the store never had; store: python, css."""
    leader = engine()
    old = leader.learn([Feedback(text="python list", label="python")]).class_events
    leader.learn([Feedback(text="python dict", label="python")])
    leader.learn([Feedback(text="css flexbox", label="css")])
    other = engine()
    java = other.learn([Feedback(text="java jar", label="java")]).class_events
    before = leader.store.version
    fixes = reconcile(leader, [*old, *java]).class_events
    by_class = {e.class_id: e for e in fixes}
    assert set(by_class) == {"python", "css", "java"}
    assert by_class["python"].state == leader.store.get("python")  # current state, new version
    assert by_class["python"].store_version > before
    assert by_class["java"].kind == "retired"
    assert leader.store.get("java").status == "retired"
    assert "java" not in leader.store.active_ids()


def test_reasserted_events_supersede_what_a_replica_holds() -> None:
    """A replica that applied the stale changelog converges once it applies the fixes."""
    leader = engine()
    old = leader.learn([Feedback(text="python list", label="python")]).class_events
    leader.learn([Feedback(text="python dict", label="python")])
    replica = engine()
    replica.apply(old)
    replica.apply(reconcile(leader, old).class_events)
    assert replica.store.states() == leader.store.states()
