"""The HTTP endpoint of each actor and of the driver: metrics, health, drain.

One small threaded HTTP server per process, on ``metrics.host``:

* ``GET /metrics``: the process's Prometheus registry (text exposition);
* ``GET /healthz``: 200 while the loop steps, 503 once it made no step for
  ``metrics.stall_s`` (a liveness probe; a Docker ``HEALTHCHECK``);
* ``GET /readyz``: 200 while the actor consumes, 503 while it starts or drains
  (a readiness probe);
* ``POST /drain``: asks the loop to finish its batch, commit and stop (a pod's
  ``preStop`` hook, through ``streamlabel drain``); ``GET /drain`` reports
  ``{"draining": ..., "drained": ...}``. Only a client on the same host
  (loopback) holding the endpoint's drain token may drain: the endpoint may
  listen on every interface of a pod, and any local user or process may reach
  loopback (see :mod:`~streamlabel.ops.drain_token`; ``streamlabel drain``,
  :mod:`~streamlabel.ops.client`, sends it).

Every connection has ``REQUEST_TIMEOUT_S`` to send its request and read the
answer: a slow or silent client loses its connection, it cannot hold a thread.

Ports: the driver takes ``metrics.port``, the learner ``port + 1``, stream
workers ``port + 2``, each the first free port from there within
``metrics.port_span`` (several workers on one host take consecutive ports; on
Kubernetes one worker per pod always gets ``port + 2``).

Example:
    >>> h = Health(stall_s=60.0)
    >>> h.live()[0], h.ready
    (True, False)
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import ipaddress
import json
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streamlabel.ops.drain_token import write_drain_token
from streamlabel.ops.metrics import ActorMetrics, Families
from streamlabel.settings.deployment import MetricsSettings

__all__ = [
    "REQUEST_TIMEOUT_S",
    "ROLE_OFFSETS",
    "Endpoint",
    "Health",
    "Served",
    "is_local",
    "serve",
]

log = structlog.get_logger(__name__)

ROLE_OFFSETS: Final = {"driver": 0, "learner": 1, "worker": 2}
"""Offset of each role's first port from ``metrics.port``."""

REQUEST_TIMEOUT_S: Final = 10.0
"""How long a connection may take to send its request (and to read the answer)."""


class Health:
    """Liveness, readiness and drain state of one loop (thread-safe enough: flags
    and one timestamp, written by the loop, read by the server's threads).

    Args:
        stall_s: ``/healthz`` fails once the loop made no step for this long.
        clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(self, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stall_s = stall_s
        self._clock = clock
        self._beat = clock()
        self.ready = False
        self.draining = False
        self.drained = False
        self.degraded: list[str] = []
        """What runs short of its full strength (e.g. a supervisor's exhausted slots):
        reported by ``/healthz`` and ``/readyz`` without failing them, since the
        rest keeps working and a failed probe would restart everything."""
        self.on_drain: Callable[[], None] | None = None

    def beat(self) -> None:
        """The loop made a step."""
        self._beat = self._clock()

    def started(self) -> None:
        """The loop runs: ready, unless a drain came first."""
        self.beat()
        self.ready = not self.draining

    def stopped(self) -> bool:
        """The loop ended: not ready; drained when a drain ended it. Returns ``drained``."""
        self.ready = False
        self.drained = self.draining
        return self.drained

    def live(self) -> tuple[bool, str]:
        """``(alive, reason)``; a drained loop is alive (it stopped on purpose)."""
        if self.drained:
            return True, "drained"
        age = self._clock() - self._beat
        if age > self._stall_s:
            return False, f"no step for {age:.0f}s (metrics.stall_s={self._stall_s:g})"
        return True, "ok"

    def drain(self) -> None:
        """Starts draining (idempotent): not ready any more, the loop is told to stop."""
        if self.draining:
            return
        self.draining = True
        self.ready = False
        if self.on_drain is not None:
            self.on_drain()

    def note(self) -> str:
        """`` (degraded: ...)`` while something runs short, else empty."""
        return f" (degraded: {', '.join(self.degraded)})" if self.degraded else ""

    def status(self) -> dict[str, Any]:
        alive, reason = self.live()
        return {
            "alive": alive,
            "reason": reason,
            "ready": self.ready,
            "draining": self.draining,
            "drained": self.drained,
            "degraded": list(self.degraded),
        }


class Endpoint:
    """A running server; :meth:`close` stops it and removes its drain token."""

    def __init__(
        self, server: ThreadingHTTPServer, thread: threading.Thread, token_path: Path | None
    ) -> None:
        self._server = server
        self._thread = thread
        self.token_path = token_path
        """Where its drain token is (None: it could not be written; nobody can drain)."""

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        if self.token_path is not None:  # first: once the port is free, another may write it
            with contextlib.suppress(OSError):
                self.token_path.unlink()
            self.token_path = None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class Served:
    """Mixin of a loop with an endpoint: ``health``, ``metrics``, :meth:`serve`.

    The actor calls :meth:`init_endpoint` in its constructor and :meth:`serve`
    in the actor's process (the server does not survive pickling); ``POST
    /drain`` calls the actor's ``stop``.
    """

    health: Health
    metrics: ActorMetrics
    metrics_url: str = ""
    _endpoint: Endpoint | None = None
    _role: str = "worker"
    _metrics_settings: MetricsSettings

    def init_endpoint(
        self,
        settings: MetricsSettings,
        role: str,
        actor: str,
        read: Callable[[], Any],
        families: Families,
        stop: Callable[[], None],
    ) -> None:
        self._metrics_settings = settings
        self._role = role
        self.health = Health(settings.stall_s)
        self.health.on_drain = stop
        self.metrics = ActorMetrics(actor, read, families)
        self._endpoint = None
        self.metrics_url = ""

    def serve(self) -> str:
        """Starts the endpoint (once); returns its URL ("" when off or no port was free)."""
        if self._endpoint is None:
            self._endpoint = serve(self._metrics_settings, self._role, self.metrics.registry,
                                   self.health)  # fmt: skip
            self.metrics_url = self._endpoint.url if self._endpoint else ""
        return self.metrics_url

    def drain(self) -> None:
        """Stops the loop on behalf of the pod (``POST /drain``): not a failure."""
        self.health.drain()

    def close_endpoint(self) -> None:
        """Stops the endpoint (an in-process loop; an actor's ends with its process)."""
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None
            self.metrics_url = ""


def _handler(
    registry: CollectorRegistry, health: Health, token: str, timeout_s: float
) -> type[BaseHTTPRequestHandler]:
    bearer = f"Bearer {token}".encode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "streamlabel"
        timeout = timeout_s  # the connection's socket timeout (StreamRequestHandler.setup)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                alive, reason = health.live()
                self._send(200 if alive else 503, f"{reason}{health.note()}\n".encode())
            elif path == "/readyz":
                ready = health.ready and not health.draining
                what = "ready" if ready else "not ready"
                self._send(200 if ready else 503, f"{what}{health.note()}\n".encode())
            elif path == "/drain":
                self._json(200, health.status())
            else:
                self._send(404, b"not found\n")

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/drain":
                self._send(404, b"not found\n")
                return
            if not is_local(self.client_address[0]):
                self._send(403, b"drain is allowed from this host only\n")
                return
            given = self.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, bearer):
                self._send(401, b"drain needs this endpoint's token (streamlabel drain sends it)\n")
                return
            health.drain()
            self._json(202, health.status())

        def _json(self, code: int, data: dict[str, Any]) -> None:
            self._send(code, json.dumps(data).encode(), "application/json")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes and probes every few seconds: not worth a log line

    return Handler


def serve(
    settings: MetricsSettings,
    role: str,
    registry: CollectorRegistry,
    health: Health,
    *,
    token_dir: Path | None = None,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
) -> Endpoint | None:
    """Starts the endpoint of one process on the first free port of its role.

    Args:
        token_dir: where to write its drain token (``drain_token_dir()`` when None).
        request_timeout_s: how long a connection may take to send its request.

    Returns:
        The endpoint, or None when ``metrics.enabled`` is off or every port of the
        span is taken (logged: an actor runs without an endpoint rather than not
        at all).
    """
    if not settings.enabled:
        return None
    token = secrets.token_urlsafe(32)
    handler = _handler(registry, health, token, request_timeout_s)
    if settings.port == 0:
        candidates = [0]
    else:
        first = settings.port + ROLE_OFFSETS[role]
        candidates = [p for p in range(first, first + settings.port_span) if p <= 65535]
    if not candidates:
        log.warning("endpoint_unavailable", role=role, port=settings.port,
                    hint="metrics.port + the role's offset lies past 65535")  # fmt: skip
        return None
    for port in candidates:
        try:
            server = ThreadingHTTPServer((settings.host, port), handler)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"streamlabel-{role}-endpoint",
            daemon=True,
        )
        thread.start()
        endpoint = Endpoint(server, thread, write_drain_token(token, int(server.server_address[1]),
                                                              token_dir))  # fmt: skip
        log.info("endpoint_started", role=role, url=endpoint.url)
        return endpoint
    log.warning(
        "endpoint_unavailable",
        role=role,
        host=settings.host,
        ports=f"{candidates[0]}-{candidates[-1]}",
        hint="every port is taken; raise metrics.port_span or change metrics.port",
    )
    return None


def is_local(host: str) -> bool:
    """True for a loopback address (the only clients allowed to drain).

    Example:
        >>> is_local("127.0.0.1"), is_local("::1"), is_local("10.1.2.3")
        (True, True, False)
    """
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False
