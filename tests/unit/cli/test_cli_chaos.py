"""The ``chaos`` and ``replay`` commands parse, and ``chaos`` rejects bad arguments before
it starts a deployment (the runner's Harness is replaced by one that fails the test)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest
import structlog

from streamlabel.chaos import ORDER, runner
from streamlabel.cli import build_parser, main


def _refuse(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("the chaos command started a deployment")


@pytest.fixture(autouse=True)
def _nothing_starts(monkeypatch: pytest.MonkeyPatch):
    """No STREAMLABEL_* variable leaks in; no deployment; logging setup does not leak out."""
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # main() sets it; restore it afterwards
    monkeypatch.setattr(runner, "Harness", _refuse)
    monkeypatch.setattr(runner, "chaos_settings", _refuse)
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    for split in ("train", "test"):
        (tmp_path / f"{split}.tsv").write_text("text\tlabel\nsort a list\tpython\n")
    return tmp_path


# -------------------------------------------------------------------- parse
def test_chaos_parses_its_options() -> None:
    args = build_parser().parse_args(
        ["chaos", "--scenarios", "worker_kill,poison", "--cycles", "2", "--json"]
    )
    assert args.command == "chaos"
    assert args.scenarios == ["worker_kill", "poison"]
    assert (args.cycles, args.json) == (2, True)


def test_chaos_defaults_run_every_scenario_on_the_bundled_dataset() -> None:
    args = build_parser().parse_args(["chaos"])
    assert args.scenarios is None
    assert (args.dataset, args.cycles, args.items, args.workers, args.seed, args.json) == (
        "data/stackoverflow",
        10,
        400,
        2,
        0,
        False,
    )


def test_chaos_scenario_names_are_trimmed_and_empty_entries_dropped() -> None:
    args = build_parser().parse_args(["chaos", "--scenarios", " stall, ,poison ,"])
    assert args.scenarios == ["stall", "poison"]


def test_chaos_rejects_an_empty_scenario_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["chaos", "--scenarios", " , "])
    assert exc.value.code == 2
    assert "comma-separated" in capsys.readouterr().err


def test_chaos_help_lists_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["chaos", "--help"])
    out = capsys.readouterr().out
    assert [name for name in ORDER if name not in out] == []


def test_replay_parses_the_snapshot_partition_and_offset_range() -> None:
    args = build_parser().parse_args(
        ["replay", "--snapshot", "f", "--partition", "0", "--from", "3", "--to", "9"]
    )
    assert args.command == "replay"
    assert (args.snapshot, args.partition, args.start, args.end) == ("f", 0, 3, 9)
    assert (args.config, args.bootstrap_servers, args.topic_prefix) == (None, None, None)


@pytest.mark.parametrize("missing", ["--snapshot", "--partition", "--from", "--to"])
def test_replay_requires_each_of_its_options(
    missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    given = {"--snapshot": "f", "--partition": "0", "--from": "3", "--to": "9"}
    argv = ["replay"] + [x for k, v in given.items() if k != missing for x in (k, v)]
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert missing in capsys.readouterr().err


# ---------------------------------------------------------------------- run
def test_chaos_without_a_dataset_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chaos", "--dataset", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamlabel: error:")
    assert "--dataset '/nonexistent'" in err
    assert "train.tsv" in err


def test_chaos_with_half_a_dataset_fails_cleanly(
    dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (dataset / "test.tsv").unlink()
    assert main(["chaos", "--dataset", str(dataset)]) == 2
    assert "--dataset" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["--cycles", "0"], ["--workers", "0"], ["--items", "9"]], ids=lambda a: a[0]
)
def test_chaos_rejects_out_of_range_sizes(
    dataset: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chaos", "--dataset", str(dataset), *argv]) == 2
    assert argv[0] in capsys.readouterr().err


def test_chaos_with_an_unknown_scenario_fails_before_starting_a_deployment(
    dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chaos", "--dataset", str(dataset), "--scenarios", "poison,nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown chaos scenario(s) nope" in err
    assert "worker_kill" in err  # the known names are listed


def test_replay_without_the_snapshot_fails_before_touching_kafka(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "learner.snapshot"
    argv = ["replay", "--snapshot", str(missing), "--partition", "0", "--from", "0", "--to", "5",
            "--bootstrap-servers", "127.0.0.1:1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no snapshot" in err
    assert str(missing) in err
