"""``streamlabel classes|feedback|unknowns`` against an in-memory broker: what they parse,
send and print (tables and JSON lines), and their exit codes (0 applied, 1 rejected with
the learner's reason, 3 no answer in time, 2 through ``main`` for other errors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamlabel.cli import build_parser, main
from streamlabel.cli.control import (
    EXIT_REJECTED,
    EXIT_TIMEOUT,
    cmd_classes,
    cmd_feedback,
    cmd_unknowns,
    read_feedback_file,
    table,
)
from streamlabel.errors import StreamlabelError
from streamlabel.kafka.control import Client
from streamlabel.kafka.topics import Topics
from streamlabel.schemas import Feedback, decode, encode
from streamlabel.schemas.commands import Command
from streamlabel.testing import ManualClock
from streamlabel.testing.broker import CommandResponder, MemoryBroker, applied, rejected
from streamlabel.testing.records import event, label, unknown

TOPICS = Topics("sl.")


@pytest.fixture(autouse=True)
def _no_kafka_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # main() sets it; restore it afterwards


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker.deployment(TOPICS, clock=ManualClock(0.0))


@pytest.fixture
def client(broker: MemoryBroker) -> Iterator[Client]:
    assert broker.clock is not None
    with Client("127.0.0.1:9092", issued_by="ana", consumers=broker.consumer,
                producers=broker.producer, clock=broker.clock) as c:  # fmt: skip
        yield c


def run(command: Any, argv: list[str], client: Client) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = command(build_parser().parse_args(argv), lines.append, client=client)
    return code, lines


def put(broker: MemoryBroker, kind: str, *records: Any) -> None:
    for r in records:
        key = str(getattr(r, "item_id", None) or getattr(r, "class_id", "k"))
        broker.append(TOPICS.name(kind), key.encode(), encode(r))


def sent(broker: MemoryBroker) -> list[Command]:
    return [decode(m.value, Command) for m in broker.records(TOPICS.commands)]


# -------------------------------------------------------------------- parse
def test_every_class_verb_parses_its_arguments_and_the_common_flags() -> None:
    parse = build_parser().parse_args
    args = parse(["classes", "rename", "d-3", "billing", "--bootstrap-servers", "h:1", "--json",
                  "--config", "c.toml", "--timeout", "5", "--issued-by", "bot"])  # fmt: skip
    assert (args.command, args.verb, args.id, args.name) == ("classes", "rename", "d-3", "billing")
    assert (args.bootstrap_servers, args.config, args.json) == ("h:1", "c.toml", True)
    assert (args.timeout, args.issued_by) == (5.0, "bot")
    merge = parse(["classes", "merge", "a", "b"])
    assert (merge.source, merge.target) == ("a", "b")
    add = parse(["classes", "add", "linq", "--description", "C# queries"])
    assert (add.name, add.description) == ("linq", "C# queries")
    split = parse(["classes", "split", "c1", "--items", "i1,i2", "--name", "new"])
    assert (split.id, split.items, split.name) == ("c1", ["i1", "i2"], "new")
    assert parse(["classes", "threshold", "c1", "-0.25"]).value == -0.25
    assert parse(["classes", "list"]).all is False
    assert parse(["unknowns", "sample"]).n == 20
    assert parse(["unknowns", "sample", "--n", "5"]).n == 5


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["classes", "threshold", "c1", "1.5"], "must be in [-1, 1]"),
        (["classes", "add", "linq"], "--description"),
        (["classes", "rename", "c1"], "NAME"),
        (["classes", "retire", "c1", "--timeout", "0"], "must be more than 0"),
        (["feedback", "--item", "i1", "--text", "t", "--label", "x"], "not allowed with"),
        (["feedback", "--label", "x"], "one of the arguments --item --text --file"),
        (["unknowns", "sample", "--n", "0"], "at least 1"),
    ],
)
def test_bad_arguments_are_refused_naming_the_problem(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert error in capsys.readouterr().err


def test_without_bootstrap_servers_a_verb_exits_2_naming_the_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["classes", "list"]) == 2
    assert "kafka.bootstrap_servers" in capsys.readouterr().err


def test_the_control_verbs_import_no_model_ray_or_faiss() -> None:
    code = (
        "import sys\n"
        "from streamlabel.cli import build_parser\n"
        "import streamlabel.cli.control\n"
        "build_parser().parse_args(['classes', 'list'])\n"
        "print([x for x in ('torch', 'ray', 'faiss', 'sentence_transformers', 'sklearn')"
        " if x in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------- commands
def test_an_applied_rename_prints_what_it_did_and_exits_0(
    broker: MemoryBroker, client: Client
) -> None:
    CommandResponder(broker, TOPICS, lambda c: applied(c, reason="note"))
    code, lines = run(cmd_classes, ["classes", "rename", "d-3", "billing"], client)
    assert code == 0
    assert lines == ["applied: rename (0 class events, 0 labels revised, store version 1; note)"]
    [command] = sent(broker)
    assert (command.kind, command.class_id, command.name, command.issued_by) == (
        "rename", "d-3", "billing", "ana",
    )  # fmt: skip


def test_a_rejected_command_exits_1_with_the_learners_reason(
    broker: MemoryBroker, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    CommandResponder(broker, TOPICS, lambda c: rejected(c, "no active class 'zz'"))
    code, lines = run(cmd_classes, ["classes", "retire", "zz"], client)
    assert code == EXIT_REJECTED == 1
    assert lines == []
    assert "rejected: retire: no active class 'zz'" in capsys.readouterr().err


def test_json_prints_the_result_as_one_line_even_when_rejected(
    broker: MemoryBroker, client: Client
) -> None:
    CommandResponder(broker, TOPICS, lambda c: rejected(c, "taken"))
    code, lines = run(cmd_classes, ["classes", "merge", "a", "b", "--json"], client)
    assert code == 1
    [line] = lines
    assert json.loads(line)["status"] == "rejected"
    assert json.loads(line)["reason"] == "taken"


def test_no_answer_exits_3_with_a_clear_message(
    broker: MemoryBroker, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    CommandResponder(broker, TOPICS, lambda c: None)
    argv = ["classes", "add", "linq", "--description", "C# queries", "--timeout", "1"]
    code, _lines = run(cmd_classes, argv, client)
    assert code == EXIT_TIMEOUT == 3
    err = capsys.readouterr().err
    assert "no answer to command add_class" in err
    assert "is the learner running" in err


@pytest.mark.parametrize(
    ("argv", "fields"),
    [
        (["classes", "split", "c1", "--items", "i1,i2", "--name", "n"],
         {"kind": "split_off", "class_id": "c1", "item_ids": ("i1", "i2"), "name": "n"}),
        (["classes", "threshold", "c1", "0.3"],
         {"kind": "set_threshold", "class_id": "c1", "threshold": 0.3}),
        (["classes", "add", "linq", "--description", "d"],
         {"kind": "add_class", "name": "linq", "description": "d"}),
        (["classes", "merge", "a", "b"], {"kind": "merge", "class_id": "a", "target": "b"}),
    ],
)  # fmt: skip
def test_each_verb_sends_its_command(
    broker: MemoryBroker, client: Client, argv: list[str], fields: dict[str, Any]
) -> None:
    CommandResponder(broker, TOPICS)
    assert run(cmd_classes, argv, client)[0] == 0
    [command] = sent(broker)
    assert {f: getattr(command, f) for f in fields} == fields


# ------------------------------------------------------------------ classes
@pytest.fixture
def classes(broker: MemoryBroker) -> None:
    put(broker, "classes",
        event("c1", name="python", keywords=("list", "dict"), count=12),
        event("d-7", version=2, name="novel-d-7", origin="discovery", status="provisional"),
        event("c1", version=3, kind="renamed", name="py", cause="operator",
              aliases=("python",), keywords=("list", "dict"), count=12,
              exemplar_texts=("sort a list",), threshold_override=0.4),
        event("old", version=4, status="retired", kind="retired"))  # fmt: skip


@pytest.mark.usefixtures("classes")
def test_classes_list_is_an_aligned_table_of_the_active_classes(client: Client) -> None:
    code, lines = run(cmd_classes, ["classes", "list"], client)
    assert code == 0
    assert lines == table(
        ["ID", "NAME", "STATUS", "ORIGIN", "COUNT", "THRESHOLD", "KEYWORDS"],
        [["c1", "py", "known", "feedback", "12", "0.400", "list, dict"],
         ["d-7", "novel-d-7", "provisional", "discovery", "1", "-", ""]],
    )  # fmt: skip
    assert lines[0].index("NAME") == lines[1].index("py") == lines[2].index("novel-d-7")


@pytest.mark.usefixtures("classes")
def test_classes_list_all_as_json_lines_includes_retired_ones_without_vectors(
    client: Client,
) -> None:
    code, lines = run(cmd_classes, ["classes", "list", "--all", "--json"], client)
    rows = [json.loads(line) for line in lines]
    assert code == 0
    assert [(r["class_id"], r["status"]) for r in rows] == [
        ("c1", "known"), ("d-7", "provisional"), ("old", "retired"),
    ]  # fmt: skip
    assert "exemplars" not in rows[0]
    assert rows[0]["aliases"] == ["python"]


@pytest.mark.usefixtures("classes")
def test_classes_show_by_an_alias_prints_the_state_exemplars_and_history(client: Client) -> None:
    code, lines = run(cmd_classes, ["classes", "show", "python"], client)
    text = "\n".join(lines)
    assert code == 0
    for expected in ("class               c1", "name                py",
                     "aliases             python", "threshold override  0.400",
                     "keywords            list, dict", "  - sort a list"):  # fmt: skip
        assert expected in text
    history = lines[lines.index("history:") + 1 :]
    assert history[0].split() == ["VERSION", "KIND", "CLASS", "NAME", "STATUS", "COUNT", "CAUSE",
                                  "RELATED", "AT"]  # fmt: skip
    assert [row.split()[:2] for row in history[1:]] == [["1", "created"], ["3", "renamed"]]


@pytest.mark.usefixtures("classes")
def test_classes_show_json_is_one_object_with_its_history(client: Client) -> None:
    _code, lines = run(cmd_classes, ["classes", "show", "c1", "--json"], client)
    [obj] = [json.loads(line) for line in lines]
    assert (obj["class_id"], obj["name"], obj["exemplar_texts"]) == ("c1", "py", ["sort a list"])
    assert [h["kind"] for h in obj["history"]] == ["created", "renamed"]


@pytest.mark.usefixtures("classes")
def test_classes_show_of_no_such_class_is_an_error(client: Client) -> None:
    with pytest.raises(StreamlabelError, match="no class 'nope'"):
        run(cmd_classes, ["classes", "show", "nope"], client)


# ----------------------------------------------------------------- feedback
def test_feedback_by_item_sends_a_teach_command(broker: MemoryBroker, client: Client) -> None:
    CommandResponder(broker, TOPICS)
    code, lines = run(cmd_feedback, ["feedback", "--item", "i7", "--label", "sql"], client)
    assert code == 0
    assert lines[0].startswith("applied: teach")
    [command] = sent(broker)
    assert (command.kind, command.label, command.item_ids, command.text) == (
        "teach", "sql", ("i7",), None,
    )  # fmt: skip


def test_feedback_by_text_without_waiting_goes_to_the_feedback_topic(
    broker: MemoryBroker, client: Client
) -> None:
    argv = ["feedback", "--text", "join two tables", "--label", "sql", "--no-wait"]
    assert run(cmd_feedback, argv, client) == (0, [])
    [record] = [decode(m.value, Feedback) for m in broker.records(TOPICS.feedback)]
    assert (record.text, record.label, record.source) == ("join two tables", "sql", "ana")
    assert sent(broker) == []


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["feedback", "--item", "i1"], "need --label"),
        (["feedback", "--file", "x.jsonl", "--label", "a"], "a file names its labels"),
        (["feedback", "--item", "i1", "--label", "unknown"], "reserved"),
    ],
)
def test_feedback_without_a_usable_label_is_an_error(
    broker: MemoryBroker, client: Client, argv: list[str], error: str
) -> None:
    with pytest.raises(StreamlabelError, match=error):
        run(cmd_feedback, argv, client)
    assert sent(broker) == []


def test_a_feedback_file_sends_one_teach_per_line_and_prints_each_answer(
    broker: MemoryBroker, client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"item_id": "i1", "label": "sql"}\n\n{"text": "sort", "label": "python"}\n'
                    '{"item_id": 7, "label": "zz"}\n')  # fmt: skip
    learner = CommandResponder(
        broker, TOPICS, lambda c: rejected(c, "nope") if c.label == "zz" else applied(c)
    )
    code, lines = run(cmd_feedback, ["feedback", "--file", str(path), "--json"], client)
    assert code == 1
    assert [json.loads(line)["status"] for line in lines] == ["applied", "applied", "rejected"]
    assert [(c.item_ids, c.text, c.label) for c in learner.commands] == [
        (("i1",), None, "sql"), ((), "sort", "python"), (("7",), None, "zz"),
    ]  # fmt: skip
    assert "rejected: teach: nope" in capsys.readouterr().err


def test_a_feedback_tsv_reads_quoted_multi_line_texts(tmp_path: Path) -> None:
    path = tmp_path / "labels.tsv"
    path.write_text('text\tlabel\n"two\nlines"\tpython\nplain\tsql\n')
    rows = read_feedback_file(path)
    assert [(r.text, r.label, r.item_id) for r in rows] == [
        ("two\nlines", "python", None), ("plain", "sql", None),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ('{"item_id": "i1"}\n', r"labels.jsonl:1: no 'label'"),
        ('{"label": "a"}\n', r"labels.jsonl:1: no 'item_id' or 'text'"),
        ('{"label": "a", "text": "x"}\nnot json\n', r"labels.jsonl:2: not JSON"),
        ('["a"]\n', r"labels.jsonl:1: expected a JSON object"),
        ('{"label": "", "text": "x"}\n', r"labels.jsonl:1: 'label' must be a non-empty string"),
        ("\n", "no examples"),
    ],
)
def test_a_bad_feedback_file_is_refused_naming_the_line_before_anything_is_sent(
    broker: MemoryBroker, client: Client, tmp_path: Path, content: str, error: str
) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(content)
    with pytest.raises(StreamlabelError, match=error):
        run(cmd_feedback, ["feedback", "--file", str(path)], client)
    assert sent(broker) == []


def test_a_feedback_file_of_plain_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("no labels here\n")
    with pytest.raises(StreamlabelError, match=r"a \.jsonl or a \.tsv"):
        read_feedback_file(path)


# ----------------------------------------------------------------- unknowns
@pytest.fixture
def unknowns(broker: MemoryBroker) -> None:
    put(broker, "classes", event("c1", name="python"), event("c2", version=2, name="sql"))
    put(broker, "labels",
        label("u1", "unknown", emitted_at=2, score=0.31, top_k=[("c2", 0.31), ("c1", 0.2)]),
        label("u2", "unknown", emitted_at=1, score=0.12, top_k=[("c1", 0.12)]),
        label("u3", "unknown", emitted_at=3),
        label("u3", "c1", revision=1, emitted_at=4),
        label("u4", "unknown", emitted_at=0.5, score=-1.0))  # fmt: skip
    put(broker, "unknowns", unknown("u1", "how do I\njoin two tables " + "x" * 80))


@pytest.mark.usefixtures("unknowns")
def test_unknowns_sample_is_a_table_of_the_current_unknowns_with_nearest_names(
    client: Client,
) -> None:
    code, lines = run(cmd_unknowns, ["unknowns", "sample"], client)
    assert code == 0
    assert lines[0].split() == ["ITEM", "SCORE", "TEXT", "NEAREST"]
    assert lines[1].startswith("u1    0.310  how do I join two tables xxx")
    assert lines[1].endswith("…  sql 0.31, python 0.20")
    assert lines[2].split() == ["u2", "0.120", "-", "python", "0.12"]
    assert lines[3].split() == ["u4", "-", "-", "-"]  # labelled before any class existed
    assert len(lines) == 4  # u3 is labelled c1 now


@pytest.mark.usefixtures("unknowns")
def test_unknowns_sample_json_lines_carry_text_and_scored_nearest_classes(client: Client) -> None:
    _code, lines = run(cmd_unknowns, ["unknowns", "sample", "--n", "1", "--json"], client)
    [obj] = [json.loads(line) for line in lines]
    assert obj["item_id"] == "u1"
    assert obj["text"].startswith("how do I\njoin")
    assert obj["nearest"] == [{"class_id": "c2", "name": "sql", "score": 0.31},
                              {"class_id": "c1", "name": "python", "score": 0.2}]  # fmt: skip


def test_an_empty_sample_says_so_on_stderr(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(cmd_unknowns, ["unknowns", "sample"], client) == (0, [])
    assert "no item's current label is unknown" in capsys.readouterr().err
