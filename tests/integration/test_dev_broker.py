"""The embedded broker a developer can talk to: ``streamlabel broker`` and ``run``'s
``bootstrap:`` line with ``--embedded-port``."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

from streamlabel.kafka.broker import free_port


def _spawn(*argv: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLABEL_")}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "streamlabel.cli", *argv], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def _line_starting(proc: subprocess.Popen[str], prefix: str, timeout_s: float) -> str:
    """The first line of the process's output that starts with ``prefix``."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"no line starting {prefix!r} (exit {proc.poll()})")


def test_the_broker_command_serves_kafka_on_its_port_until_told_to_stop() -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    port = free_port()
    proc = _spawn("broker", "--port", str(port))
    try:
        assert _line_starting(proc, "bootstrap:", 60) == f"bootstrap: 127.0.0.1:{port}"
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
        try:
            admin.create_topics([NewTopic("dev.items", 1, 1)])
            assert "dev.items" in admin.list_topics()
        finally:
            admin.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_run_on_embedded_defaults_prints_its_bootstrap_line_on_the_port_asked_for() -> None:
    port = free_port()
    proc = _spawn("run", "--workers", "1", "--embedded-port", str(port))
    try:
        assert _line_starting(proc, "bootstrap:", 240) == f"bootstrap: 127.0.0.1:{port}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_tail_prints_what_a_topic_holds_from_its_beginning() -> None:
    from streamlabel.kafka.broker import EmbeddedBroker
    from streamlabel.kafka.client import produce_items
    from streamlabel.kafka.topics import ensure_topics
    from streamlabel.schemas import Item
    from streamlabel.settings.kafka import KafkaSettings

    with EmbeddedBroker() as broker:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix="tail.")
        ensure_topics(kafka)
        produce_items(kafka, [Item(id="t-1", text="sort a python list")])
        proc = subprocess.run(
            [sys.executable, "-m", "streamlabel.cli", "tail", "items", "--from-beginning",
             "--limit", "1", "--json", "--bootstrap-servers", broker.bootstrap_servers,
             "--topic-prefix", "tail."],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert '"id": "t-1"' in last
    assert '"text": "sort a python list"' in last
