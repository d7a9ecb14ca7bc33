"""Commands applied through the Curator: each kind applied or rejected with its reason,
applied once per command id, audited, aliases kept, affected labels revised."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamlabel.pipeline.commands import apply_command, decode_commands
from streamlabel.pipeline.curator import Curator, load_settings
from streamlabel.pipeline.inputs import RawRecord
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import Feedback, SourceRef, encode
from streamlabel.schemas.commands import Command, CommandResult
from streamlabel.testing import HashEmbedder, ManualClock

SOURCE = SourceRef(topic="t.commands", partition=0, offset=0)


def curator() -> Curator:
    c = Curator(load_settings(drift={"enabled": False}), HashEmbedder(dim=32), clock=ManualClock(1))
    c.learn([Feedback(text="python list dict pandas", label="python")])
    c.learn([Feedback(text="java jvm spring maven", label="java")])
    return c


def command(kind: str, command_id: str = "c1", **fields: Any) -> Command:
    return Command(command_id=command_id, kind=kind, issued_by="ana", issued_at=5.0, **fields)


def run(c: Curator, cmd: Command) -> tuple[EngineOutput, CommandResult]:
    return apply_command(c, cmd, now=10.0)


def remember(c: Curator, item_id: str, label: str, text: str) -> None:
    vector = c.embedder.embed([text])[0]
    c.cache.remember(item_id, np.asarray(vector, np.float32), text, label, 0)


# --------------------------------------------------------------- the records
@pytest.mark.parametrize(
    ("kind", "fields", "missing"),
    [
        ("rename", {"class_id": "a"}, "name"),
        ("merge", {"class_id": "a"}, "target"),
        ("retire", {}, "class_id"),
        ("add_class", {"name": "a"}, "description"),
        ("set_threshold", {"class_id": "a"}, "threshold"),
        ("teach", {"label": "a"}, "a text or item_ids"),
        ("split_off", {"class_id": "a", "name": "b"}, "item_ids"),
    ],
)
def test_a_command_without_the_fields_of_its_kind_is_refused_naming_them(
    kind: str, fields: dict[str, Any], missing: str
) -> None:
    with pytest.raises(ValueError, match=f"a {kind} command needs {missing}"):
        command(kind, **fields)


def test_an_undecodable_command_is_dead_lettered() -> None:
    out = EngineOutput()
    bad = RawRecord(value=encode(Feedback(text="x", label="y")), source=SOURCE)
    good = RawRecord(value=encode(command("retire", class_id="java")), source=SOURCE)
    assert [c.kind for c in decode_commands([bad, good], load_settings().limits, out)] == ["retire"]
    assert [d.reason for d in out.dead_letters] == ["wrong_type"]


# --------------------------------------------------------------- each kind
def test_rename_keeps_the_id_makes_the_old_name_an_alias_and_revises_its_labels() -> None:
    c = curator()
    remember(c, "i1", "python", "python list")
    remember(c, "i2", "java", "java jvm")
    out, result = run(c, command("rename", class_id="python", name="py"))
    assert (result.status, result.reason) == ("applied", None)
    assert [(e.class_id, e.kind) for e in out.class_events] == [("python", "renamed")]
    assert [(e.class_id, e.kind) for e in result.events] == [("python", "renamed")]
    assert c.store.get("python").name == "py"
    assert c.store.resolve("python") == c.store.resolve("py") == "python"
    assert [(r.item_id, r.label, r.class_name, r.revision, r.reason) for r in out.labels] == [
        ("i1", "python", "py", 1, "renamed")
    ]
    assert result.revisions == 1
    assert out.command_results == [result]


def test_merge_makes_the_source_an_alias_of_the_target_and_revises_its_labels() -> None:
    c = curator()
    remember(c, "i1", "python", "python list")
    remember(c, "i2", "java", "java jvm")
    out, result = run(c, command("merge", class_id="python", target="java"))
    assert result.status == "applied"
    assert [(e.class_id, e.kind) for e in out.class_events] == [
        ("java", "updated"),
        ("python", "merged"),
    ]
    assert c.store.resolve("python") == "java"
    assert [(r.item_id, r.label, r.revision, r.reason) for r in out.labels] == [
        ("i1", "java", 1, "merged")
    ]
    cached = c.cache.get("i1")
    assert cached is not None
    assert cached.label == "java"
    # a later command naming the old id reaches the target
    _, again = run(c, command("rename", "c2", class_id="python", name="jvm-langs"))
    assert again.status == "applied"
    assert c.store.get("java").name == "jvm-langs"


def test_retire_stops_the_class() -> None:
    c = curator()
    out, result = run(c, command("retire", class_id="java"))
    assert result.status == "applied"
    assert [e.kind for e in out.class_events] == ["retired"]
    assert "java" not in c.store.active_ids()


def test_add_class_creates_a_zero_shot_class_from_its_description() -> None:
    c = curator()
    out, result = run(c, command("add_class", name="sql", description="sql query join index"))
    assert result.status == "applied"
    assert [e.kind for e in out.class_events] == ["created"]
    created = out.class_events[0].state
    assert (created.name, created.origin) == ("sql", "zero_shot")


def test_teach_by_text_and_by_item_id() -> None:
    c = curator()
    remember(c, "i9", "unknown", "haskell monad functor")
    out, result = run(c, command("teach", label="haskell", text="haskell ghc", item_ids=("i9",)))
    assert (result.status, result.reason) == ("applied", None)
    assert [(e.class_id, e.kind) for e in out.class_events] == [("haskell", "created")]
    assert [(r.item_id, r.label, r.reason) for r in out.labels] == [("i9", "haskell", "feedback")]


def test_teach_naming_an_item_not_seen_yet_waits_for_it() -> None:
    c = curator()
    out, result = run(c, command("teach", label="python", item_ids=("later",)))
    assert result.status == "applied"
    assert result.reason == "waiting for items ['later']"
    assert out.class_events == []
    assert "later" in c.pending


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (command("rename", class_id="nope", name="x"), "no active class 'nope'"),
        (command("rename", class_id="python", name="java"), "taken by class 'java'"),
        (command("rename", class_id="python", name="python"), "is already named"),
        (command("merge", class_id="python", target="nope"), "no active class 'nope'"),
        (command("merge", class_id="python", target="python"), "are the same class"),
        (command("retire", class_id="nope"), "no active class 'nope'"),
        (command("add_class", name="java", description="x"), "already answers to 'java'"),
    ],
    ids=[
        "rename-unknown",
        "rename-taken",
        "rename-same",
        "merge-unknown",
        "merge-self",
        "retire-unknown",
        "add-existing",
    ],
)
def test_a_command_that_cannot_apply_is_rejected_with_its_reason(cmd: Command, reason: str) -> None:
    c = curator()
    before = c.store.states()
    out, result = run(c, cmd)
    assert result.status == "rejected"
    assert result.reason is not None
    assert reason in result.reason
    assert (out.class_events, out.labels, result.events) == ([], [], ())
    assert out.command_results == [result]
    assert c.store.states() == before


def test_a_retired_class_is_no_longer_a_command_target() -> None:
    c = curator()
    run(c, command("retire", class_id="java"))
    _, result = run(c, command("rename", "c2", class_id="java", name="jvm"))
    assert (result.status, result.reason) == ("rejected", "no active class 'java'")


# --------------------------------------------------------------- once, audited
def test_a_repeated_command_id_is_answered_again_not_applied_again() -> None:
    c = curator()
    cmd = command("teach", label="python", text="python numpy")
    _, first = run(c, cmd)
    version = c.version
    out, again = apply_command(c, cmd, now=99.0)
    assert again == first
    assert c.version == version
    assert (out.class_events, out.command_results) == ([], [first])


def test_a_rejected_command_id_stays_rejected() -> None:
    c = curator()
    _, first = run(c, command("retire", class_id="sql"))
    c.learn([Feedback(text="sql query", label="sql")])
    _, again = run(c, command("retire", class_id="sql"))
    assert again == first
    assert again.status == "rejected"


def test_every_command_is_audited_who_when_what_and_the_version_after() -> None:
    c = curator()
    run(c, command("rename", class_id="python", name="py"))
    run(c, command("retire", "c2", class_id="nope"))
    history = c.commands.history()
    assert [(h["command_id"], h["kind"], h["status"]) for h in history] == [
        ("c1", "rename", "applied"),
        ("c2", "retire", "rejected"),
    ]
    first = history[0]
    assert (first["issued_by"], first["issued_at"], first["at"]) == ("ana", 5.0, 10.0)
    assert first["what"]["class_id"] == "python"
    assert first["what"]["name"] == "py"
    assert first["store_version"] == c.version


def test_the_applied_ids_and_the_audit_survive_the_curators_state() -> None:
    c = curator()
    cmd = command("rename", class_id="python", name="py")
    _, first = run(c, cmd)
    restored = Curator(c.settings, c.embedder, clock=ManualClock(1))
    restored.load_state(c.state())
    out, again = run(restored, cmd)
    assert again == first
    assert out.class_events == []
    assert restored.commands.history() == c.commands.history()


def test_a_state_without_commands_loads_with_none_applied() -> None:
    c = curator()
    state = c.state()
    del state["commands"]
    restored = Curator(c.settings, c.embedder, clock=ManualClock(1))
    restored.load_state(state)
    assert len(restored.commands) == 0
