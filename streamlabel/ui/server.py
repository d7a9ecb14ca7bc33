"""Serving the console from a running process: the feed in one thread, uvicorn in another.

:func:`serve_console` checks the exposure first (a host beyond loopback needs
``ui.token``), starts a :class:`~streamlabel.ui.feed.ConsoleFeed` on the
deployment's topics and uvicorn on ``ui.host``/``ui.port``, and returns once the
console answers. It reads topics and sends commands; it never calls the actors.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import structlog

from streamlabel.errors import SettingsError, StreamlabelError
from streamlabel.settings.kafka import KafkaSettings
from streamlabel.settings.ui import UISettings
from streamlabel.ui.app import create_app
from streamlabel.ui.console import Commander, Console, StatsProvider
from streamlabel.ui.feed import ConsoleFeed

__all__ = ["RunningConsole", "check_exposure", "serve_console"]

log = structlog.get_logger(__name__)


def check_exposure(ui: UISettings) -> None:
    """Refuses a console bound beyond loopback without a token.

    Raises:
        SettingsError: ``ui.host`` is not a loopback address and ``ui.token`` is unset.
    """
    if not ui.loopback and (ui.token is None or not ui.token.get_secret_value()):
        raise SettingsError(
            f"ui.host={ui.host!r} reaches beyond this machine: set ui.token "
            "(or STREAMLABEL_UI__TOKEN), or bind ui.host to 127.0.0.1"
        )


class RunningConsole:
    """A console being served: its feed, its server thread, its address."""

    def __init__(self, console: Console, feed: ConsoleFeed | None, server: object,
                 thread: threading.Thread, host: str, port: int) -> None:  # fmt: skip
        self.console = console
        self.feed = feed
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """Where a browser opens it (a wildcard bind reads as 127.0.0.1)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}/"

    def close(self, timeout_s: float = 5.0) -> None:
        """Stops the live streams, the server and the feed."""
        self.console.closing.set()
        self._server.should_exit = True  # type: ignore[attr-defined]
        self._thread.join(timeout_s)
        if self.feed is not None:
            self.feed.stop()
        closer = getattr(self.console.commander, "close", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                closer()


def serve_console(
    kafka: KafkaSettings,
    ui: UISettings,
    *,
    stats: StatsProvider | None = None,
    commander: Commander | None = None,
    feed: ConsoleFeed | None = None,
    any_port_if_taken: bool = False,
    timeout_s: float = 15.0,
) -> RunningConsole:
    """Starts the feed and the web server; returns once it accepts connections.

    Args:
        kafka: the deployment's Kafka settings (with its bootstrap servers).
        ui: where to serve, and the token.
        stats: the runtime's readings (lag per partition, restarts).
        commander: sends the actions' commands (default: a control-plane client).
        feed: the topics' reader (default: one on ``kafka``).
        any_port_if_taken: serve on a free port when ``ui.port`` is taken (the demo).

    Raises:
        SettingsError: beyond loopback without a token.
        StreamlabelError: the server did not start (the port is taken...).
    """
    import uvicorn

    from streamlabel.kafka.control import Client

    check_exposure(ui)
    port = ui.port
    if any_port_if_taken and port and not _free(ui.host, port):
        port = 0
    sock = _bind(ui.host, port)
    feed = feed or ConsoleFeed(kafka)
    console = Console(feed.views, commander or Client(settings=kafka, issued_by="console"),
                      stats)  # fmt: skip
    token = ui.token.get_secret_value() if ui.token is not None else None
    config = uvicorn.Config(
        create_app(console, token=token or None), log_level="warning", access_log=False,
        lifespan="off", timeout_graceful_shutdown=2, server_header=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="console-server", daemon=True)  # fmt: skip
    feed.start()
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            feed.stop()
            raise StreamlabelError(f"the console did not start on {ui.host}:{port}")
        time.sleep(0.05)
    actual = sock.getsockname()[1]
    log.info("console_serving", host=ui.host, port=actual, token=token is not None)
    return RunningConsole(console, feed, server, thread, ui.host, actual)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StreamlabelError(f"the console cannot listen on {host}:{port}: {exc} "
                               "(set ui.port to a free port)") from None  # fmt: skip
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _free(host: str, port: int) -> bool:
    try:
        _bind(host, port).close()
    except StreamlabelError:
        return False
    return True
