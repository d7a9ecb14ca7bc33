"""One pipeline for every log line (``streamlabel.logging``):

* with JSON lines on, a library's standard-library record, a Python warning, an
  exception and our own structlog line each come out as one JSON object with
  ``event``, ``level``, ``logger`` and ``timestamp``;
* in console mode a library's warning and a Python warning render like our lines;
* ``logging.libraries`` holds library chatter back without holding back our lines;
* a library that installed a console handler of its own is routed through ours
  (no line twice, none in another format); Ray's token-auth notice is held back;
* without a stream the lines go to ``sys.stderr`` as it is when they come.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from streamlabel.logging import QUIETER, adopt_library_loggers, configure_logging
from streamlabel.settings.deployment import LoggingSettings

FIELDS = {"event", "level", "logger", "timestamp"}


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Puts the process's logging back as it was (handlers, levels, structlog, warnings)."""
    manager = logging.Logger.manager
    before = {
        name: (lg.level, lg.propagate, list(lg.handlers))
        for name, lg in manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    root = logging.getLogger()
    root_state = (root.level, list(root.handlers))
    showwarning = warnings.showwarning
    yield
    logging.captureWarnings(False)
    warnings.showwarning = showwarning
    root.setLevel(root_state[0])
    root.handlers = root_state[1]
    for name, lg in list(manager.loggerDict.items()):
        if isinstance(lg, logging.Logger):
            level, propagate, handlers = before.get(name, (logging.NOTSET, True, []))
            lg.setLevel(level)
            lg.propagate = propagate
            lg.handlers = handlers
    structlog.reset_defaults()


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    """Every line of ``out`` as JSON (fails on a line that is not one JSON object)."""
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_library_record_comes_out_as_one_json_object_with_the_fields() -> None:
    out = io.StringIO()
    configure_logging(json_logs=True, stream=out)
    logging.getLogger("kafka.conn").warning("connection to %s refused", "127.0.0.1:9")
    [line] = lines(out)
    assert line.keys() >= FIELDS
    assert (line["event"], line["level"], line["logger"]) == (
        "connection to 127.0.0.1:9 refused", "warning", "kafka.conn",
    )  # fmt: skip
    assert line["timestamp"].endswith("Z")


def test_a_python_warning_comes_out_as_one_json_object_with_its_category() -> None:
    out = io.StringIO()
    configure_logging(json_logs=True, stream=out)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("kafka.retries is deprecated", DeprecationWarning, stacklevel=1)
    [line] = lines(out)
    assert line.keys() >= FIELDS
    assert (line["event"], line["level"], line["logger"]) == (
        "kafka.retries is deprecated", "warning", "py.warnings",
    )  # fmt: skip
    assert line["category"] == "DeprecationWarning"
    assert line["where"].startswith(__file__)


def test_our_lines_and_a_library_exception_are_one_json_object_each() -> None:
    out = io.StringIO()
    configure_logging(json_logs=True, stream=out)
    structlog.get_logger("streamlabel.test.json").info("batch_done", items=3)
    try:
        raise OSError("socket closed")
    except OSError:
        logging.getLogger("urllib3.connectionpool").exception("request failed")
    ours, failed = lines(out)
    assert ours.keys() >= FIELDS
    assert failed.keys() >= FIELDS
    assert (ours["event"], ours["logger"], ours["items"]) == (
        "batch_done", "streamlabel.test.json", 3,
    )  # fmt: skip
    assert failed["level"] == "error"
    assert "OSError: socket closed" in failed["exception"]


def test_in_console_mode_library_lines_and_warnings_render_like_ours() -> None:
    out = io.StringIO()
    configure_logging(json_logs=False, stream=out)
    structlog.get_logger("streamlabel.test.console").warning("drift_alert", kind="embedding")
    logging.getLogger("kafka.coordinator").warning("heartbeat failed")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("an old setting", UserWarning, stacklevel=1)
    ours, library, warned = out.getvalue().splitlines()
    for line, event, logger in (
        (ours, "drift_alert", "streamlabel.test.console"),
        (library, "heartbeat failed", "kafka.coordinator"),
        (warned, "an old setting", "py.warnings"),
    ):
        assert "[warning  ]" in line
        assert f" {event} " in line
        assert f"[{logger}]" in line
    assert "category=UserWarning" in warned
    assert "\x1b[" not in out.getvalue()  # no colour codes on a stream that is no terminal


def test_library_chatter_is_held_back_at_logging_libraries_but_not_our_lines() -> None:
    out = io.StringIO()
    configure_logging(json_logs=True, level="debug", stream=out)
    logging.getLogger("kafka.consumer.fetcher").info("fetching offsets")
    structlog.get_logger("streamlabel.test.levels").debug("assigned")
    assert [line["event"] for line in lines(out)] == ["assigned"]

    out = io.StringIO()
    configure_logging(json_logs=True, level="warning", libraries="info", stream=out)
    logging.getLogger("kafka.consumer.fetcher").info("fetching offsets")
    structlog.get_logger("streamlabel.test.levels2").info("assigned")
    assert [line["event"] for line in lines(out)] == ["fetching offsets"]


def test_the_settings_default_holds_library_info_back() -> None:
    s = LoggingSettings()
    out = io.StringIO()
    configure_logging(json_logs=s.json_lines, level=s.level, libraries=s.libraries, stream=out)
    logging.getLogger("kafka.conn").info("connecting")
    logging.getLogger("kafka.conn").warning("refused")
    assert "connecting" not in out.getvalue()
    assert "refused" in out.getvalue()


def test_a_library_with_a_console_handler_of_its_own_goes_through_ours() -> None:
    out, own = io.StringIO(), io.StringIO()
    configure_logging(json_logs=True, stream=out)
    library = logging.getLogger("somelib")  # what transformers/torch/ray do when imported
    library.addHandler(logging.StreamHandler(own))
    library.propagate = False
    library.setLevel(logging.DEBUG)
    adopt_library_loggers()
    library.info("loaded weights")  # below logging.libraries now
    library.warning("weights are old")
    assert own.getvalue() == ""
    assert [line["event"] for line in lines(out)] == ["weights are old"]


def test_rays_token_auth_notice_is_held_back() -> None:
    out = io.StringIO()
    configure_logging(json_logs=True, stream=out)
    [name] = QUIETER
    logging.getLogger(name).warning("Token authentication is enabled for this Ray cluster.")
    logging.getLogger(name).error("no token found")
    assert [line["event"] for line in lines(out)] == ["no token found"]


def test_without_a_stream_lines_go_to_stderr_as_it_is_then(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(json_logs=True)
    logging.getLogger("kafka.conn").warning("refused")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["event"] == "refused"


def test_configuring_again_replaces_the_handler_instead_of_adding_one() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(json_logs=True, stream=first)
    configure_logging(json_logs=True, stream=second)
    logging.getLogger("kafka.conn").warning("refused")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging(json_logs=True, level="loud")
