"""The learner consumes ``commands`` with its other inputs: each command is applied,
its events and result published through the checkpoint, and a command id is never
applied twice, across restarts included (fake Kafka clients, no broker, no Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kafka.structs import TopicPartition

from streamlabel.kafka.topics import Topics
from streamlabel.schemas import ClassEvent, Feedback, decode, encode
from streamlabel.schemas.commands import Command, CommandResult
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import HashEmbedder
from streamlabel.testing.kafka import FakeChangelog, FakeConsumer, FakePublisher, consumed
from streamlabel.workers.learner import Learner

TOPICS = Topics("t.")
FEEDBACK = TopicPartition(TOPICS.feedback, 0)
COMMANDS = TopicPartition(TOPICS.commands, 0)


def feedback(offset: int, text: str, label: str) -> Any:
    return consumed(TOPICS.feedback, 0, offset, encode(Feedback(text=text, label=label)))


def command(offset: int, command_id: str, kind: str, **fields: Any) -> Any:
    cmd = Command(command_id=command_id, kind=kind, issued_by="ana", issued_at=1.0, **fields)
    return consumed(TOPICS.commands, 0, offset, encode(cmd), key=cmd.key.encode())


class Rig:
    """A learner over fakes, its snapshot under ``state_dir``."""

    def __init__(self, state_dir: Path, *, polls: list[Any] = (), **kw: Any) -> None:
        settings = load_runtime_settings(
            None,
            kafka={"topic_prefix": "t."},
            learner={"state_dir": str(state_dir)},
            logging={"level": "warning"},
            metrics={"enabled": False},
        )
        self.consumer = FakeConsumer({FEEDBACK, COMMANDS}, polls=list(polls))
        self.publisher = FakePublisher(TOPICS)
        self.learner = Learner(
            settings,
            embedder=HashEmbedder(dim=32),
            consumer=self.consumer,
            publisher=self.publisher,
            changelog=FakeChangelog(**kw),
        )

    def start(self) -> Learner:
        assert self.learner.ready()
        return self.learner

    def class_events(self) -> list[ClassEvent]:
        return [decode(r[2], ClassEvent) for r in self.publisher.on("classes")]

    def results(self) -> list[CommandResult]:
        return [decode(r[2], CommandResult) for r in self.publisher.on("command_results")]


def test_the_learner_subscribes_to_commands() -> None:
    assert TOPICS.commands in TOPICS.learner_inputs()


def test_a_command_is_applied_published_with_its_result_and_committed(tmp_path: Path) -> None:
    rig = Rig(
        tmp_path,
        polls=[
            {FEEDBACK: [feedback(0, "python list dict", "python")]},
            {COMMANDS: [command(0, "c1", "rename", class_id="python", name="py")]},
        ],
    )
    learner = rig.start()
    learner.step()
    assert learner.step() == 1
    assert [(e.class_id, e.kind) for e in rig.class_events()] == [
        ("python", "created"),
        ("python", "renamed"),
    ]
    [result] = rig.results()
    assert (result.command_id, result.status, result.issued_by) == ("c1", "applied", "ana")
    assert [(e.class_id, e.kind) for e in result.events] == [("python", "renamed")]
    assert rig.publisher.on("command_results")[0][1] == b"c1"  # keyed by command id
    assert rig.consumer.commit_history()[-1] == {FEEDBACK: 1, COMMANDS: 1}
    assert learner.stats()["commands"] == 1


def test_a_command_that_cannot_apply_is_answered_rejected(tmp_path: Path) -> None:
    rig = Rig(tmp_path, polls=[{COMMANDS: [command(0, "c1", "retire", class_id="nope")]}])
    rig.start().step()
    assert [(r.status, r.reason) for r in rig.results()] == [("rejected", "no active class 'nope'")]
    assert rig.class_events() == []


def test_an_undecodable_command_is_dead_lettered(tmp_path: Path) -> None:
    bad = consumed(TOPICS.commands, 0, 0, b"\xc1 not msgpack")
    rig = Rig(tmp_path, polls=[{COMMANDS: [bad]}])
    rig.start().step()
    assert rig.results() == []
    [letter] = rig.publisher.on("dlq")
    assert letter[2] == b"\xc1 not msgpack"
    assert ("error.reason", b"not_msgpack") in letter[3]


def test_a_command_id_seen_again_after_a_restart_is_not_applied_again(tmp_path: Path) -> None:
    first = Rig(
        tmp_path,
        polls=[
            {FEEDBACK: [feedback(0, "python list dict", "python")]},
            {COMMANDS: [command(0, "c1", "rename", class_id="python", name="py")]},
        ],
    )
    learner = first.start()
    learner.step()
    learner.step()
    learner.close()
    [applied] = first.results()

    # the same command sent again (a client retrying) reaches the restarted learner
    again = Rig(
        tmp_path,
        events=first.class_events(),
        polls=[{COMMANDS: [command(1, "c1", "rename", class_id="python", name="py")]}],
    )
    restarted = again.start()
    version = restarted.stats()["store_version"]
    restarted.step()
    assert again.class_events() == []  # nothing applied, nothing re-published
    assert again.results() == [applied]  # answered with the first result
    assert restarted.stats()["store_version"] == version


def test_a_restored_learner_seeks_commands_past_those_it_applied(tmp_path: Path) -> None:
    first = Rig(tmp_path, polls=[{COMMANDS: [command(6, "c1", "retire", class_id="nope")]}])
    first.start().step()
    first.learner.close()
    restarted = Rig(tmp_path)
    restarted.start()
    restarted.consumer.rebalance(assigned={COMMANDS})
    assert restarted.consumer.seeks == {COMMANDS: 7}
