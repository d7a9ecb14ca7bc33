"""``streamlabel run`` on embedded defaults in a subprocess, and the CLI pointed at it.

Shared by the tests that drive a whole deployment through its command line and
its console (test_control_loop, test_console). The broker listens on a fixed
free port of 127.0.0.1; ``run``'s stdout lines are read in the background (its
``bootstrap:`` and ``console:`` lines), its stderr goes to a log file whose tail
is shown if it exits early.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from streamlabel.kafka.broker import free_port


class RunProcess:
    """``streamlabel run --workers 2 --embedded-port PORT [args]`` with ``env`` added."""

    def __init__(
        self, logs: Path, args: Sequence[str] = (), env: Mapping[str, str] | None = None
    ) -> None:
        self.logs = logs
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLABEL_")}
        self.env.pop("RAY_ADDRESS", None)
        self.env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlabel.cli", "run", "--workers", "2",
             "--embedded-port", str(self.port), *args],
            env=self.env, stdout=subprocess.PIPE, stderr=logs.open("w"), text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_for(self, prefix: str, timeout_s: float) -> str:
        """What follows ``prefix:`` on the first stdout line that starts with it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    tail = self.logs.read_text()[-3000:]
                    raise AssertionError(f"run exited {self.proc.returncode}:\n{tail}") from None
                continue
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
        raise AssertionError(f"run printed no {prefix!r} line")

    def cli(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``streamlabel ARGV --bootstrap-servers`` this deployment's broker."""
        proc = subprocess.run(
            [sys.executable, "-m", "streamlabel.cli", *argv, "--bootstrap-servers",
             self.bootstrap],
            env=self.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if check:
            assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stderr}"
        return proc

    def json_lines(self, *argv: str) -> list[dict[str, Any]]:
        out = self.cli(*argv, "--json").stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def topic(self, name: str) -> list[dict[str, Any]]:
        """Every record of a topic so far, as ``tail --json`` prints it."""
        return self.json_lines("tail", name, "--from-beginning", "--idle-exit", "3")

    def latest_labels(self) -> dict[str, dict[str, Any]]:
        """Each item's label of highest revision."""
        latest: dict[str, dict[str, Any]] = {}
        for r in self.topic("labels"):
            seen = latest.get(r["item_id"])
            if seen is None or r["revision"] >= seen["revision"]:
                latest[r["item_id"]] = r
        return latest

    def stop(self) -> None:
        """SIGTERM, as a person or Kubernetes stops it; killed after two minutes."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def until(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 3.0) -> Any:
    """``check()``'s first truthy value, polled every ``every_s``; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every_s)
