"""A command's progress lines (``streamlabel.cli.progress``): start-up steps carry
the seconds since the command started; readings are text for a person or, with
JSON lines, one JSON object with the fields of a log line; lines go to stdout as
it is when they are written."""

from __future__ import annotations

import io
import json

import pytest

from streamlabel.cli.progress import LOGGER, ProgressStream
from streamlabel.testing import ManualClock


def test_a_step_carries_the_seconds_since_the_command_started() -> None:
    out, clock = io.StringIO(), ManualClock()
    progress = ProgressStream(out, clock=clock)
    clock.advance(0.25)
    progress.step("starting Ray")
    clock.advance(41.0)
    progress.step("worker-0 ready (1/2)")
    assert out.getvalue().splitlines() == [
        "[  0.2s] starting Ray",
        "[ 41.2s] worker-0 ready (1/2)",
    ]


def test_text_lines_are_written_as_given() -> None:
    out = io.StringIO()
    progress = ProgressStream(out)
    progress.say("teaching 900 labelled examples")
    progress.record("progress", "items 12  lag 0", items=12, lag=0)
    assert out.getvalue().splitlines() == ["teaching 900 labelled examples", "items 12  lag 0"]


def test_json_lines_have_the_fields_of_a_log_line() -> None:
    out, clock = io.StringIO(), ManualClock()
    progress = ProgressStream(out, json_lines=True, clock=clock)
    clock.advance(3.04)
    progress.step("starting Ray")
    progress.record("progress", "items 12", items=12, lag=0)
    progress.say("stopping")
    step, reading, note = (json.loads(line) for line in out.getvalue().splitlines())
    for line in (step, reading, note):
        assert {"event", "level", "logger", "timestamp"} <= line.keys()
        assert (line["level"], line["logger"]) == ("info", LOGGER)
    assert (step["event"], step["step"], step["elapsed_s"]) == ("step", "starting Ray", 3.0)
    assert (reading["event"], reading["items"], reading["lag"]) == ("progress", 12, 0)
    assert (note["event"], note["text"]) == ("note", "stopping")


def test_without_a_stream_lines_go_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    ProgressStream().say("ready")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("ready\n", "")
