"""Where ``run`` and ``demo`` write, in a real process (its own stdout and stderr),
with the supervisor replaced by a fake that reports start-up steps, logs like a
library, an actor (a line Ray forwards to stderr) and streamlabel, and warns:

* ``run``: progress (steps, readings, the ``bootstrap:`` line) on stdout, every
  log line on stderr; with ``logging.json_lines`` every line of both is one JSON
  object with ``event``, ``level``, ``logger`` and ``timestamp``, except the
  plain ``bootstrap:`` line scripts wait for;
* ``demo``: progress on stdout, every log line in the log file whose path it
  prints first; the console's stderr only says why the command failed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

FIELDS = {"event", "level", "logger", "timestamp"}

_FAKE = r"""
import logging, os, signal, sys, warnings
from types import SimpleNamespace
import structlog
from streamlabel.errors import StreamlabelError
from streamlabel.runtime import supervisor
from streamlabel.runtime.progress import Progress

class FakeRuntime:
    def __init__(self, settings, actors=None, *, embedded_port=None, on_step=None):
        self.settings, self.on_step, self.broker = settings, on_step, None
        self.workers = []

    def start(self):
        self.on_step("starting the embedded broker")
        logging.getLogger("kafka.conn").info("connecting")  # below logging.libraries
        logging.getLogger("kafka.conn").warning("connection refused")
        warnings.warn("an old setting", UserWarning)
        print(os.environ["ACTOR_LINE"], file=sys.stderr, flush=True)  # as Ray forwards it
        structlog.get_logger("streamlabel.runtime.supervisor").info("runtime_started")
        if os.environ.get("FAIL"):
            self.stop()  # as the real one does
            raise StreamlabelError("the learner could not start: no model")
        self.broker = SimpleNamespace(bootstrap_servers="127.0.0.1:9")
        self.on_step("worker-0 ready (1/1)")
        return self

    __enter__ = start

    def __exit__(self, *exc):
        self.stop()

    def check(self):
        os.kill(os.getpid(), signal.SIGTERM)

    def health(self):
        return {"exhausted": False}

    def progress(self):
        return Progress(elapsed_s=1.0, items=7, items_per_s=7.0, lag=0, unknowns=1,
                        dead_letters=0, classes=3, store_version=4, alerts=0, discovered=0,
                        restarts=0)

    def worker_count(self):
        return 1

    def supervisor_stats(self, p):
        return {}

    def stop(self):
        structlog.get_logger("streamlabel.runtime.supervisor").info("runtime_stopped")

supervisor.Runtime = FakeRuntime
from streamlabel.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMLABEL_", "RAY_"))}
    clean.update({"STREAMLABEL_METRICS__ENABLED": "false", "STREAMLABEL_SCALING__ENABLED": "false",
                  "ACTOR_LINE": "(Learner pid=1) actor_warning", **env})  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", _FAKE, *argv], env=clean, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_run_prints_progress_on_stdout_and_logs_on_stderr() -> None:
    proc = _run("run", "--progress-every", "0")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert [re.sub(r"^\[ *[\d.]+s\] ", "", line) for line in out if line.startswith("[")] == [
        "starting the embedded broker",
        "worker-0 ready (1/1)",
        "stopping (workers, learner, Ray, broker)",
    ]
    assert "bootstrap: 127.0.0.1:9" in out
    assert any(line.lstrip().startswith("1.0s  items       7") for line in out)
    for log in ("connection refused", "an old setting", "actor_warning", "runtime_started",
                "shutdown_requested", "runtime_stopped"):  # fmt: skip
        assert log in proc.stderr
        assert log not in proc.stdout
    assert "connecting" not in proc.stderr  # a library's INFO, below logging.libraries
    assert "[kafka.conn]" in proc.stderr
    assert "category=UserWarning" in proc.stderr


def test_run_with_json_lines_writes_one_json_object_per_line_on_both_streams() -> None:
    actor = json.dumps({"event": "drift_alert", "level": "warning", "logger": "x",
                        "timestamp": "t"})  # fmt: skip
    # with JSON lines the driver has Ray forward an actor's line as it is (no prefix)
    proc = _run("run", "--progress-every", "0", STREAMLABEL_LOGGING__JSON_LINES="true",
                ACTOR_LINE=actor)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = [line for line in proc.stdout.splitlines() if line != "bootstrap: 127.0.0.1:9"]
    assert len(out) == len(proc.stdout.splitlines()) - 1
    progress = _json_lines("\n".join(out))
    assert all(line.keys() >= FIELDS for line in progress)
    assert [p["event"] for p in progress] == ["step", "step", "progress", "step"]
    assert progress[2]["items"] == 7
    parsed = _json_lines(proc.stderr)
    assert all(line.keys() >= FIELDS for line in parsed)
    assert {(line["logger"], line["event"]) for line in parsed} >= {
        ("kafka.conn", "connection refused"),
        ("py.warnings", "an old setting"),
        ("streamlabel.cli", "shutdown_requested"),
        ("streamlabel.runtime.supervisor", "runtime_stopped"),
        ("x", "drift_alert"),
    }


def test_the_demo_prints_progress_and_keeps_its_logs_in_the_file_it_names(
    tmp_path: Path,
) -> None:
    data = Path(__file__).parents[2] / "data"
    (tmp_path / "train.tsv").write_text((data / "stackoverflow_small_train.tsv").read_text())
    (tmp_path / "test.tsv").write_text((data / "stackoverflow_small_test.tsv").read_text())
    proc = _run("demo", "--dataset", str(tmp_path), "--items", "60", FAIL="1")
    assert proc.returncode == 2
    first, *rest = proc.stdout.splitlines()
    assert first.startswith("logs: ")
    log_file = Path(first.removeprefix("logs: "))
    try:
        assert any(line.endswith("] starting the embedded broker") for line in rest)
        assert proc.stderr.splitlines() == [
            "streamlabel: error: the learner could not start: no model"
        ]
        logs = log_file.read_text()
        for log in ("connection refused", "an old setting", "actor_warning",
                    "runtime_started", "runtime_stopped"):  # fmt: skip
            assert log in logs
            assert log not in proc.stdout
    finally:
        log_file.unlink()
