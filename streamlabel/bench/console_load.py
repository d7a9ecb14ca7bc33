"""The web console running beside a benchmark, with one browser attached, so the bench
measures what the console costs the stream (issue 17: at most 3% of ``bench
throughput``).

The console is what ``streamlabel run --ui`` serves: the topic feed, the web
server, and the runtime's readings taken every :data:`READING_S` seconds; the browser is Debian's
headless chromium (``make browser``) on the Overview page, which keeps one
server-sent event stream open and redraws its charts.
"""

from __future__ import annotations

import threading
from typing import Any

from streamlabel.testing.browser import headless_chromium

__all__ = ["ConsoleLoad"]

READING_S = 2.0
"""How often the runtime's readings are refreshed (as ``streamlabel run --ui`` does)."""


class ConsoleLoad:
    """Serves the console for ``runtime`` and points a headless browser at it.

    Use as a context manager around the measurement.
    """

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime
        self._readings: dict[str, Any] = {}
        self._stop = threading.Event()
        self._console: Any = None
        self._browser: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> ConsoleLoad:
        from streamlabel.ui.server import serve_console

        settings = self._runtime.settings
        self._console = serve_console(
            settings.kafka, settings.ui, stats=lambda: self._readings or None,
            any_port_if_taken=True,
        )  # fmt: skip
        self.url = self._console.url
        self._thread = threading.Thread(target=self._read, name="console-readings", daemon=True)
        self._thread.start()
        self._browser = headless_chromium(window=(1440, 1000))
        self._browser.get(self.url)
        return self

    def _read(self) -> None:
        while not self._stop.wait(READING_S):
            self._readings.update(self._runtime.progress().console_readings())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._browser is not None:
            self._browser.quit()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._console is not None:
            self._console.close()
