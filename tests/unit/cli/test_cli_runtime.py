"""The ``streamlabel`` command line: the runtime commands parse, and fail cleanly without Kafka."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from streamlabel.cli import build_parser, main

with warnings.catch_warnings():  # kafka-python loads its protocol files with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401  (the commands import it on first use)


@pytest.fixture(autouse=True)
def _no_kafka_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STREAMLABEL_* variable (bootstrap servers above all) from the machine leaks in."""
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("STREAMLABEL_KAFKA__BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # main() sets it; restore it afterwards


@pytest.fixture
def tsv(tmp_path: Path) -> Path:
    path = tmp_path / "rows.tsv"
    path.write_text("text\tlabel\nsort a python list\tpython\njoin two tables\tsql\n")
    return path


# -------------------------------------------------------------------- parse
def test_version_prints_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"streamlabel {version('streamlabel')}"


def test_the_package_runs_as_a_module() -> None:
    """``python -m streamlabel.cli`` is what the chaos harness and the tests spawn."""
    from importlib.metadata import version

    proc = subprocess.run(
        [sys.executable, "-m", "streamlabel.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"streamlabel {version('streamlabel')}"


def test_demo_parses_with_its_defaults() -> None:
    args = build_parser().parse_args(["demo"])
    assert (args.command, args.dataset, args.items, args.seed) == (
        "demo",
        "data/stackoverflow",
        3000,
        0,
    )
    assert (args.workers, args.config, args.bootstrap_servers) == (None, None, None)


def test_demo_parses_its_options() -> None:
    args = build_parser().parse_args(
        ["demo", "--dataset", "d", "--workers", "3", "--items", "50", "--seed", "2", "--json"]
    )
    assert (args.dataset, args.workers, args.items, args.seed, args.json) == ("d", 3, 50, 2, True)


def test_run_parses_the_common_options() -> None:
    args = build_parser().parse_args(
        [
            "run",
            "--config",
            "prod.toml",
            "--bootstrap-servers",
            "k1:9092,k2:9092",
            "--topic-prefix",
            "prod.",
            "--workers",
            "6",
            "--progress-every",
            "2.5",
        ]
    )
    assert args.command == "run"
    assert (args.config, args.bootstrap_servers, args.topic_prefix) == (
        "prod.toml",
        "k1:9092,k2:9092",
        "prod.",
    )
    assert (args.workers, args.progress_every) == (6, 2.5)


def test_produce_parses_a_tsv_and_a_feedback_fraction() -> None:
    args = build_parser().parse_args(
        ["produce", "--tsv", "rows.tsv", "--feedback-fraction", "0.2", "--limit", "10"]
    )
    assert (args.command, args.tsv, args.feedback_fraction, args.limit, args.seed) == (
        "produce",
        "rows.tsv",
        0.2,
        10,
        0,
    )


def test_produce_takes_a_file_and_its_format_and_json_fields() -> None:
    args = build_parser().parse_args(
        ["produce", "items.data", "--format", "jsonl", "--id-field", "key",
         "--text-field", "body", "--label-field", "tag", "--vector-field", "emb"]
    )  # fmt: skip
    assert (args.file, args.tsv, args.format) == ("items.data", None, "jsonl")
    assert (args.id_field, args.text_field, args.label_field, args.vector_field) == (
        "key",
        "body",
        "tag",
        "emb",
    )


def test_produce_defaults_to_the_suffix_format_and_the_usual_json_keys() -> None:
    args = build_parser().parse_args(["produce", "items.jsonl"])
    assert (args.file, args.format, args.feedback_fraction, args.limit) == (
        "items.jsonl",
        None,
        0.0,
        None,
    )
    assert (args.id_field, args.text_field, args.label_field, args.vector_field) == (
        "id",
        "text",
        "label",
        "vector",
    )


def test_produce_takes_a_file_or_tsv_not_both(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["produce", "a.jsonl", "--tsv", "b.tsv"])
    assert "not allowed with" in capsys.readouterr().err


def test_produce_rejects_an_unknown_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["produce", "a.csv", "--format", "csv"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("fraction", ["2", "-0.1", "1.01"])
def test_produce_rejects_a_feedback_fraction_outside_zero_to_one(
    fraction: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["produce", "--tsv", "x.tsv", "--feedback-fraction", fraction])
    assert caught.value.code == 2
    assert "--feedback-fraction" in capsys.readouterr().err


def test_produce_requires_a_tsv(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["produce"])
    assert "--tsv" in capsys.readouterr().err


def test_tail_reads_every_topic_the_deployment_has() -> None:
    from streamlabel.cli.main import TAIL_TOPICS
    from streamlabel.kafka.client import RECORD_TYPES
    from streamlabel.kafka.topics import TOPIC_KINDS

    assert TAIL_TOPICS == TOPIC_KINDS
    assert set(RECORD_TYPES) | {"dlq"} == set(TOPIC_KINDS)


@pytest.mark.parametrize("topic", ["items", "labels", "dlq", "command_results"])
def test_tail_parses_each_topic_it_can_print(topic: str) -> None:
    args = build_parser().parse_args(["tail", topic, "--limit", "5", "--idle-exit", "1.5"])
    assert (args.command, args.topic, args.limit, args.idle_exit) == ("tail", topic, 5, 1.5)
    assert (args.from_beginning, args.json) == (False, False)
    args = build_parser().parse_args(["tail", topic, "--from-beginning", "--json"])
    assert (args.from_beginning, args.json) == (True, True)


def test_tail_rejects_a_topic_that_does_not_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tail", "nope"])
    assert "invalid choice" in capsys.readouterr().err


def test_tail_lines_are_readable_and_dead_letters_show_where_and_why() -> None:
    from types import SimpleNamespace

    from streamlabel.cli.runtime import _dead_letter, _line, _printable
    from streamlabel.schemas import LabelRecord

    label = LabelRecord(item_id="i1", label="python", class_name="python", score=0.8123,
                        is_unknown=False,
                        margin=0.1, revision=2, store_version=7, model_id="m",
                        emitted_at=1.0)  # fmt: skip
    assert _line("labels", _printable(label)) == "i1  python  score=0.812  rev=2  store_version=7"
    message = SimpleNamespace(value=b"\xc1 junk", headers=[
        ("source.topic", b"sl.items"), ("source.partition", b"3"), ("source.offset", b"41"),
        ("error.reason", b"not_msgpack"), ("error.message", b"not a msgpack message"),
    ])  # fmt: skip
    dead = _dead_letter(message)
    assert _line("dlq", dead) == "sl.items:3@41  not_msgpack: not a msgpack message"
    assert dead["bytes"] == 6


@pytest.mark.parametrize("mode", ["engine", "kafka", "both"])
def test_bench_openworld_parses_each_mode(mode: str) -> None:
    args = build_parser().parse_args(
        ["bench", "openworld", "--train", "a.tsv", "--test", "b.tsv", "--mode", mode]
    )
    assert (args.command, args.bench, args.mode) == ("bench", "openworld", mode)
    assert args.workers is None


def test_bench_openworld_parses_workers_for_kafka_mode() -> None:
    args = build_parser().parse_args(
        ["bench", "openworld", "--train", "a", "--test", "b", "--mode", "kafka", "--workers", "3"]
    )
    assert (args.mode, args.workers) == ("kafka", 3)


def test_bench_openworld_rejects_an_unknown_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["bench", "openworld", "--train", "a", "--test", "b", "--mode", "ray"]
        )
    assert "invalid choice" in capsys.readouterr().err


# --------------------------------------------------------- no Kafka configured
def test_produce_without_bootstrap_servers_exits_2_naming_the_setting(
    tsv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["produce", "--tsv", str(tsv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamlabel: error:")
    assert "kafka.bootstrap_servers" in err


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("items.jsonl", '{"text": "fine"}\nnot json\n', "items.jsonl:2: not JSON"),
        ("rows.tsv", 'text\tlabel\n"two\nlines"\tok\n"open\tok\n', "rows.tsv:4: "),
        ("rows.data", "x\n", "cannot tell the format"),
    ],
)
def test_produce_reads_the_whole_file_before_connecting_and_names_a_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str, where: str
) -> None:
    """No broker listens on port 9: the error is the file's, found before any send."""
    path = tmp_path / name
    path.write_text(content)
    assert main(["produce", str(path), "--bootstrap-servers", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamlabel: error:")
    assert where in err


def test_tail_without_bootstrap_servers_exits_2_naming_the_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["tail", "labels"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamlabel: error:")
    assert "kafka.bootstrap_servers" in err


def test_invalid_bootstrap_servers_exit_2_naming_the_setting(
    tsv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["produce", "--tsv", str(tsv), "--bootstrap-servers", "no-port"]) == 2
    assert "kafka.bootstrap_servers" in capsys.readouterr().err


def test_a_missing_config_file_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent.toml"
    assert main(["tail", "alerts", "--config", str(missing)]) == 2
    assert "absent.toml" in capsys.readouterr().err


def test_a_missing_demo_dataset_exits_2_without_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--dataset", str(tmp_path / "nope")]) == 2
    assert "--dataset" in capsys.readouterr().err
