"""What a command prints for a person as it goes (its progress), on stdout, apart
from the logs (stderr, or the demo's log file: :mod:`streamlabel.logging`).

Lines are plain text, or with ``logging.json_lines`` one JSON object each with
the fields of a log line (``event``, ``level``, ``logger``, ``timestamp``), so a
deployment's stdout stays machine-readable too.

Example:
    >>> import io
    >>> out, now = io.StringIO(), iter([0.0, 3.5])
    >>> progress = ProgressStream(out, clock=lambda: next(now))
    >>> progress.step("starting Ray")
    >>> out.getvalue()
    '[  3.5s] starting Ray\\n'
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["LOGS_HELP", "RUN_OUTPUT_HELP", "ProgressStream"]

LOGGER = "streamlabel.progress"
"""The ``logger`` field of a JSON progress line."""


class ProgressStream:
    """A command's progress lines.

    Args:
        stream: where the lines go; ``sys.stdout`` (as it is when a line comes) if None.
        json_lines: one JSON object per line instead of text.
        clock: seconds, for the elapsed time of the start-up steps (from construction).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        json_lines: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self.json_lines = json_lines
        self._clock = clock
        self._t0 = clock()

    def elapsed_s(self) -> float:
        """Seconds since this stream was made (the command started)."""
        return self._clock() - self._t0

    def say(self, text: str) -> None:
        """A line as it is (JSON: ``{"event": "note", "text": ...}``)."""
        if self.json_lines:
            self._json("note", text=text)
        else:
            self._write(text)

    def step(self, text: str) -> None:
        """A step (of the start-up, or the stop) as it begins, with the seconds since
        the command started: ``[ 12.3s] starting Ray`` (JSON: ``{"event": "step", ...}``)."""
        elapsed = self.elapsed_s()
        if self.json_lines:
            self._json("step", step=text, elapsed_s=round(elapsed, 1))
        else:
            self._write(f"[{elapsed:5.1f}s] {text}")

    def record(self, event: str, text: str, **fields: Any) -> None:
        """A reading: ``text`` for a person, or ``event`` with ``fields`` as JSON."""
        if self.json_lines:
            self._json(event, **fields)
        else:
            self._write(text)

    def _json(self, event: str, **fields: Any) -> None:
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        line = {"event": event, "level": "info", "logger": LOGGER, "timestamp": stamp, **fields}
        self._write(json.dumps(line))

    def _write(self, line: str) -> None:
        out = self._stream if self._stream is not None else sys.stdout
        out.write(line + "\n")
        out.flush()


LOGS_HELP = (
    "Progress goes to stdout; the logs of the driver, the actors and the libraries go to "
    "a file (streamlabel-demo-*.log in the temporary directory, its path printed first), "
    "at logging.level (STREAMLABEL_LOGGING__LEVEL), as JSON lines with logging.json_lines."
)
"""Where the demo's output goes (the ``demo`` command's help)."""

RUN_OUTPUT_HELP = (
    "Progress (each start-up step with the seconds elapsed, then a reading every "
    "--progress-every seconds) goes to stdout, as JSON lines with logging.json_lines; on "
    "embedded defaults the line 'bootstrap: HOST:PORT' (always plain) says the broker is "
    "ready. The logs of the driver, the actors and the libraries go to stderr."
)
"""Where ``run``'s output goes (the ``run`` command's help)."""
