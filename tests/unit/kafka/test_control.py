"""The control client against an in-memory broker: commands are keyed and answered, a
missing answer times out, classes/labels/unknowns are read with the replicas' rules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from streamlabel.errors import BrokerError, PublishError, SettingsError
from streamlabel.kafka.control import Client
from streamlabel.kafka.control_views import (
    CommandTimeoutError,
    InvalidCommandError,
    build_command,
    os_user,
)
from streamlabel.kafka.topic_scan import TopicScan
from streamlabel.kafka.topics import Topics
from streamlabel.schemas import Feedback, Item, LabelRecord, decode, encode
from streamlabel.schemas.commands import Command, CommandResult
from streamlabel.settings.kafka import KafkaSettings
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import ManualClock
from streamlabel.testing.broker import (
    CommandResponder,
    MemoryBroker,
    MemoryConsumer,
    applied,
    rejected,
)
from streamlabel.testing.records import event, label, unknown

TOPICS = Topics("t.")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(0.0)


@pytest.fixture
def broker(clock: ManualClock) -> MemoryBroker:
    return MemoryBroker.deployment(TOPICS, clock=clock)


@pytest.fixture
def client(broker: MemoryBroker, clock: ManualClock) -> Iterator[Client]:
    with Client("127.0.0.1:9092", topic_prefix="t.", issued_by="ana", consumers=broker.consumer,
                producers=broker.producer, clock=clock, command_timeout_s=5.0) as c:  # fmt: skip
        yield c


def put(broker: MemoryBroker, kind: str, *records: Any, headers: Any = ()) -> None:
    for r in records:
        key = str(getattr(r, "item_id", None) or getattr(r, "class_id", "k"))
        broker.append(TOPICS.name(kind), key.encode(), encode(r), headers)


# ---------------------------------------------------------------- commands
def test_a_command_goes_to_the_commands_topic_keyed_by_its_class_and_its_answer_returns(
    broker: MemoryBroker, client: Client
) -> None:
    learner = CommandResponder(broker, TOPICS)
    result = client.rename("d-3", "billing")
    assert result.status == "applied"
    [sent] = broker.records(TOPICS.commands)
    command = decode(sent.value, Command)
    assert sent.key == b"d-3"
    assert (command.kind, command.class_id, command.name, command.issued_by) == (
        "rename", "d-3", "billing", "ana",
    )  # fmt: skip
    assert result.command_id == command.command_id == learner.commands[0].command_id


def test_the_answer_is_read_from_where_results_ended_before_the_send(
    broker: MemoryBroker, client: Client
) -> None:
    """An older answer with the same id (a repeated command) is not taken for the new one."""
    command = client.command("retire", class_id="c1")
    put(broker, "command_results", rejected(command, "an older answer"))
    CommandResponder(broker, TOPICS)
    result = client.send(command)
    assert (result.status, result.reason) == ("applied", None)


def test_a_rejected_command_returns_the_learners_reason(
    broker: MemoryBroker, client: Client
) -> None:
    CommandResponder(broker, TOPICS, lambda c: rejected(c, "no active class 'zz'"))
    result = client.retire("zz")
    assert (result.status, result.reason, result.kind) == ("rejected", "no active class 'zz'",
                                                          "retire")  # fmt: skip


def test_no_answer_times_out_naming_the_topics_and_the_command(
    broker: MemoryBroker, client: Client, clock: ManualClock
) -> None:
    CommandResponder(broker, TOPICS, lambda c: None)
    with pytest.raises(CommandTimeoutError) as caught:
        client.merge("a", "b", timeout=2.0)
    message = str(caught.value)
    assert "t.command_results" in message
    assert "t.commands" in message
    assert "merge" in message
    assert "within 2s" in message
    assert len(caught.value.missing) == 1
    assert caught.value.answered == []
    assert 2.0 <= clock() < 2.5  # waited the timeout, not much longer


def test_many_commands_are_answered_in_the_order_sent_whatever_order_the_answers_come(
    broker: MemoryBroker, client: Client
) -> None:
    seen: list[Command] = []

    def answer_all_backwards(command: Command) -> CommandResult | None:
        seen.append(command)
        if len(seen) < 3:
            return None
        for c in reversed(seen[:-1]):
            put(broker, "command_results", applied(c, reason=c.label))
        return applied(command, reason=command.label)

    CommandResponder(broker, TOPICS, answer_all_backwards)
    commands = [client.command("teach", label=f"l{i}", text=f"text {i}") for i in range(3)]
    results = client.send_many(commands)
    assert [r.reason for r in results] == ["l0", "l1", "l2"]


def test_a_partial_answer_times_out_with_the_answers_that_came(
    broker: MemoryBroker, client: Client
) -> None:
    CommandResponder(broker, TOPICS, lambda c: applied(c) if c.label == "yes" else None)
    commands = [client.command("teach", label=x, item_ids=("i1",)) for x in ("yes", "no")]
    with pytest.raises(CommandTimeoutError) as caught:
        client.send_many(commands, timeout=1.0)
    assert [r.command_id for r in caught.value.answered] == [commands[0].command_id]
    assert caught.value.missing == [commands[1].command_id]
    assert "1 of 2 commands" in str(caught.value)


@pytest.mark.parametrize(
    ("call", "kind", "fields", "key"),
    [
        (lambda c: c.merge("s", "t"), "merge", {"class_id": "s", "target": "t"}, b"s"),
        (lambda c: c.retire("r"), "retire", {"class_id": "r"}, b"r"),
        (lambda c: c.add_class("linq", "C# query syntax"), "add_class",
         {"name": "linq", "description": "C# query syntax"}, b"linq"),
        (lambda c: c.teach("sql", item_id="i9"), "teach",
         {"label": "sql", "item_ids": ("i9",), "text": None}, b"sql"),
        (lambda c: c.teach("sql", text="join two tables"), "teach",
         {"label": "sql", "item_ids": (), "text": "join two tables"}, b"sql"),
        (lambda c: c.split_off("c1", ["i1", "i2"], "new"), "split_off",
         {"class_id": "c1", "item_ids": ("i1", "i2"), "name": "new"}, b"c1"),
        (lambda c: c.set_threshold("c1", 0.35), "set_threshold",
         {"class_id": "c1", "threshold": 0.35}, b"c1"),
    ],
)  # fmt: skip
def test_each_convenience_method_builds_its_command(
    broker: MemoryBroker, client: Client, call: Any, kind: str, fields: dict[str, Any], key: bytes
) -> None:
    learner = CommandResponder(broker, TOPICS)
    before = time.time()
    call(client)
    [command], [sent_key] = learner.commands, learner.keys
    assert command.kind == kind
    assert sent_key == key
    assert {f: getattr(command, f) for f in fields} == fields
    assert command.issued_by == "ana"
    assert before <= command.issued_at <= time.time()


def test_commands_get_fresh_ids_and_the_os_user_by_default(broker: MemoryBroker) -> None:
    client = Client("127.0.0.1:9092", consumers=broker.consumer, producers=broker.producer)
    a, b = (client.command("retire", class_id="c") for _ in range(2))
    assert a.command_id != b.command_id
    assert len(a.command_id) == 32
    assert a.issued_by == os_user() != ""


def test_an_incomplete_command_is_refused_before_anything_is_sent(
    broker: MemoryBroker, client: Client
) -> None:
    with pytest.raises(InvalidCommandError, match="needs a text or item_ids"):
        client.teach("sql")
    with pytest.raises(InvalidCommandError, match="reserved"):
        build_command("rename", issued_by="ana", class_id="c", name="unknown")
    assert broker.records(TOPICS.commands) == []


# ---------------------------------------------------------------- settings
def test_a_client_needs_bootstrap_servers() -> None:
    with pytest.raises(SettingsError, match="bootstrap_servers"):
        Client()


def test_explicit_servers_and_prefix_win_over_the_settings_given() -> None:
    runtime = load_runtime_settings(kafka={"topic_prefix": "p.", "bootstrap_servers": "h:1"})
    assert Client(settings=runtime).topics.commands == "p.commands"
    assert Client(settings=runtime.kafka).kafka.bootstrap_servers == "h:1"
    client = Client("h:2", settings=runtime, topic_prefix="q.")
    assert (client.kafka.bootstrap_servers, client.topics.labels) == ("h:2", "q.labels")
    with pytest.raises(SettingsError, match="bootstrap_servers"):
        Client("no-port")
    with pytest.raises(SettingsError, match="expected KafkaSettings"):
        Client("h:1", settings={"bootstrap_servers": "h:1"})


def test_commands_are_written_in_the_commands_topics_format(broker: MemoryBroker) -> None:
    kafka = KafkaSettings(bootstrap_servers="h:1", topic_prefix="t.", format={"commands": "json"})
    CommandResponder(broker, TOPICS)
    with Client(settings=kafka, consumers=broker.consumer, producers=broker.producer) as client:
        client.retire("c1")
    assert broker.records(TOPICS.commands)[0].value.startswith(b"{")


# ----------------------------------------------------------------- produce
def test_items_and_feedback_are_produced_keyed_and_the_producer_closed_once(
    broker: MemoryBroker, client: Client
) -> None:
    assert client.produce_items([Item(id="i1", text="a"), Item(id="i2", text="b")]) == 2
    sent = client.feedback("sql", item_id="i1")
    client.produce_feedback([Feedback(text="join", label="sql")])
    assert sorted(m.key for m in broker.records(TOPICS.items)) == [b"i1", b"i2"]
    fb = [decode(m.value, Feedback) for m in broker.records(TOPICS.feedback)]
    assert sent == fb[0]
    assert fb[0].source == "ana"
    assert fb[1].text == "join"
    assert not broker.producers[0].closed  # one producer for the client's life
    client.close()
    assert broker.producers[0].closed
    assert len(broker.producers) == 1


# ------------------------------------------------------------------- reads
def test_classes_keeps_each_classs_latest_state_and_skips_fenced_and_garbage(
    broker: MemoryBroker, client: Client
) -> None:
    put(broker, "classes", event("a", version=3, name="new"), event("a", version=2, name="old"),
        headers=[("learner.epoch", b"2")])  # fmt: skip
    broker.append(TOPICS.classes, b"x", b"garbage")
    put(broker, "classes", event("a", version=9, name="stale"), headers=[("learner.epoch", b"1")])
    put(broker, "classes", event("b", version=4, status="retired"),
        headers=[("learner.epoch", b"2")])  # fmt: skip
    states = client.classes()
    assert list(states) == ["a", "b"]
    assert states["a"].name == "new"
    assert states["b"].status == "retired"
    assert all(c.closed for c in broker.consumers)


def test_a_classs_history_has_its_events_and_those_naming_it(
    broker: MemoryBroker, client: Client
) -> None:
    put(broker, "classes", event("a", version=1), event("b", version=2),
        event("a", version=3, kind="renamed", name="x", cause="operator"),
        event("b", version=4, kind="updated", cause="merge", related=["a"]),
        event("a", version=5, kind="merged", cause="merge", related=["b"],
              status="retired"))  # fmt: skip
    history = client.class_history("a")
    assert [(h.store_version, h.kind, h.class_id) for h in history] == [
        (1, "created", "a"), (3, "renamed", "a"), (4, "updated", "b"), (5, "merged", "a"),
    ]  # fmt: skip
    assert history[1].name == "x"
    assert history[2].related == ("a",)


def test_labels_are_each_items_highest_revision(broker: MemoryBroker, client: Client) -> None:
    put(broker, "labels",
        label("i1", "unknown"), label("i1", "c1", revision=2), label("i1", "c2", revision=1),
        label("i2", "c1"), label("i2", "c3", reason="later, same revision"))  # fmt: skip
    current = {r.item_id: r for r in client.labels()}
    assert (current["i1"].label, current["i1"].revision) == ("c1", 2)
    assert (current["i2"].label, current["i2"].reason) == ("c3", "later, same revision")


def test_following_labels_yields_only_records_that_supersede(
    broker: MemoryBroker, client: Client
) -> None:
    put(broker, "labels", label("i1", "c1", revision=1))
    late = [label("i1", "c0", revision=0), label("i1", "c2", revision=2), label("i2", "c1")]
    got: list[LabelRecord] = []

    def stop() -> bool:
        if late:
            put(broker, "labels", late.pop(0))
        return not late and len(got) >= 3

    for r in client.labels(follow=True, stop=stop):
        got.append(r)
    assert [(r.item_id, r.label) for r in got] == [("i1", "c1"), ("i1", "c2"), ("i2", "c1")]


def test_unknowns_sample_takes_the_newest_items_whose_current_label_is_unknown(
    broker: MemoryBroker, client: Client
) -> None:
    put(broker, "classes", event("c1", name="python"), event("c2", version=2, name="sql"))
    put(broker, "labels",
        label("old", "unknown", emitted_at=1, top_k=[("c1", 0.4)]),
        label("new", "unknown", emitted_at=5, score=0.3, top_k=[("c2", 0.3), ("c1", 0.2)]),
        label("gone", "unknown", emitted_at=9),
        label("gone", "c1", revision=1, emitted_at=10),  # taught since: not unknown any more
        label("mid", "unknown", emitted_at=3, top_k=[("zz", 0.1)]),
        label("known", "c1", emitted_at=20))  # fmt: skip
    put(broker, "unknowns", unknown("new", "how do I join"), unknown("old", "sort a list"),
        unknown("new", "how do I join two tables", revision=1), unknown("other", "x"))  # fmt: skip
    samples = client.unknowns_sample(2)
    assert [s.item_id for s in samples] == ["new", "mid"]
    new, mid = samples
    assert (new.text, new.score, new.labelled_at) == ("how do I join two tables", 0.3, 5)
    nearest = [(n.class_id, n.name, n.score) for n in new.nearest]
    assert nearest == [("c2", "sql", 0.3), ("c1", "python", 0.2)]
    assert mid.text is None
    assert mid.nearest[0].name is None
    assert [s.item_id for s in client.unknowns_sample(10)] == ["new", "mid", "old"]


def test_unknowns_sample_of_a_stream_without_unknowns_is_empty(
    broker: MemoryBroker, client: Client
) -> None:
    put(broker, "labels", label("i1", "c1"))
    assert client.unknowns_sample(5) == []


def test_reading_a_topic_that_does_not_exist_names_it(client: Client) -> None:
    empty = MemoryBroker()
    with pytest.raises(BrokerError, match=r"'t\.labels' does not exist"):
        TopicScan(client.kafka, "labels", empty.consumer())


def test_a_read_that_makes_no_progress_fails_after_the_stall_timeout(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    class Behind(MemoryConsumer):
        def end_offsets(self, partitions: Any) -> dict[Any, int]:
            return dict.fromkeys(partitions, 5)  # records the broker never serves

    kafka = KafkaSettings(topic_prefix="t.")
    scan = TopicScan(kafka, "alerts", Behind(broker), stall_timeout_s=3, clock=clock)
    with scan, pytest.raises(BrokerError, match=r"could not read 't\.alerts' to its end"):
        list(scan.to_end())
    assert clock() >= 3


def test_a_command_too_large_to_publish_fails_at_once_instead_of_waiting(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    CommandResponder(broker, TOPICS)
    client = Client("h:1", topic_prefix="t.", consumers=broker.consumer,
                    producers=broker.producer, clock=clock)  # fmt: skip
    huge = client.command("teach", label="sql", text="x" * 2_000_000)
    with pytest.raises(PublishError, match=r"could not be published to 't\.commands'"):
        client.send(huge)
    assert broker.records(TOPICS.commands) == []
    assert clock() == 0  # no wait for an answer
