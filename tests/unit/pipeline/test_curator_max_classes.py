"""A learner at ``store.max_classes``: new labels are dead-lettered, discovery skips new classes."""

from __future__ import annotations

from structlog.testing import capture_logs
from test_engine_runtime_api import DISCOVERY, haskell_items, teach

from streamlabel.schemas import Feedback


def test_feedback_past_max_classes_is_dead_lettered_with_the_reason(make_engine) -> None:
    """The label that would create one class too many is rejected; the others still apply."""
    engine = make_engine(store={"max_classes": 2})
    teach(engine, ["python", "java"], n=10)
    out = engine.learn(
        [Feedback(text="select join where", label="sql"),
         Feedback(text="def list comprehension", label="python")]
    )  # fmt: skip
    assert [(e.kind, e.class_id) for e in out.class_events] == [("updated", "python")]
    assert [d.reason for d in out.dead_letters] == ["rejected"]
    assert "store.max_classes=2 reached" in out.dead_letters[0].error
    assert sorted(engine.curator.classes()) == ["java", "python"]


def test_discovery_past_max_classes_logs_the_finding_and_adopts_nothing(make_engine) -> None:
    """A new class found at the cap is skipped with a log line, not a crash."""
    discovery = {**DISCOVERY, "persistence": 1}
    capped = make_engine(discovery=discovery, store={"max_classes": 3})
    free = make_engine(discovery=discovery)
    for engine in (capped, free):
        teach(engine, ["python", "java", "sql"], n=40)
        engine.process(haskell_items(40))
    assert any(e.kind == "created" for e in free.discover().class_events)
    with capture_logs() as logs:
        out = capped.discover()
    assert out.class_events == []
    rejected = [e for e in logs if e["event"] == "discovery_finding_rejected"]
    assert rejected
    assert "store.max_classes=3 reached" in rejected[0]["error"]
    assert sorted(capped.curator.classes()) == ["java", "python", "sql"]
