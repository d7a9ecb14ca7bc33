"""The endpoint wired into the actors (``Served``), without Kafka and without Ray.

* ``StreamWorker(settings, "worker-7")`` serves on ``metrics.host`` (127.0.0.1,
  port 0 here) once, exposes its own stats, stops its loop on ``drain()`` and
  ``POST /drain``, and frees the port on ``close_endpoint()``;
* ``run()`` (connection and steps replaced by fakes) is ready while it loops and
  reports ``drained`` only when the stop came from a drain;
* a real ``step()`` over fakes records every stage in the histograms.

The supervisor's handling of a drained actor is in ``tests/unit/runtime/test_supervisor.py``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from streamlabel.kafka.topics import Topics
from streamlabel.ops.client import check_health
from streamlabel.ops.drain_token import read_drain_token
from streamlabel.ops.metrics import STAGES
from streamlabel.schemas import Item, encode
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import HashEmbedder
from streamlabel.testing.kafka import FakeChangelog, FakeConsumer, FakePublisher
from streamlabel.workers.stream_worker import StreamWorker

with warnings.catch_warnings():  # kafka-python loads its protocol files with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.structs import TopicPartition

ITEMS = "t.items"
P0, P1 = TopicPartition(ITEMS, 0), TopicPartition(ITEMS, 1)


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    """No STREAMLABEL_* variable leaks in; the worker's logging setup does not leak out."""
    saved_env = {k: v for k, v in os.environ.items() if k.startswith("STREAMLABEL_")}
    for name in saved_env:
        del os.environ[name]
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
    os.environ.update(saved_env)


def make_worker(**metrics: Any) -> StreamWorker:
    settings = load_runtime_settings(
        kafka={"topic_prefix": "t."},
        logging={"level": "warning"},
        worker={"batch_size": 16},
        metrics={"port": 0, "host": "127.0.0.1", **metrics},
    )
    return StreamWorker(settings, "worker-7")


@pytest.fixture(scope="module")
def _module_workers() -> Iterator[list[StreamWorker]]:
    """Workers whose endpoints are closed when this module's tests end, all at once
    (each close waits up to the server's 0.5 s poll)."""
    workers: list[StreamWorker] = []
    yield workers
    threads = [threading.Thread(target=w.close_endpoint) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)


@pytest.fixture
def worker(_module_workers: list[StreamWorker]) -> StreamWorker:
    w = make_worker()
    _module_workers.append(w)
    return w


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def post(url: str) -> int:
    """POSTs with the drain token the endpoint on ``url``'s port wrote (as ``streamlabel
    drain`` does)."""
    token = read_drain_token(int(url.rsplit(":", 1)[1].split("/", 1)[0]))
    req = urllib.request.Request(
        url, method="POST", data=b"", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return int(resp.status)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


# ------------------------------------------------------------------ serve
def test_serve_starts_one_endpoint_on_loopback_and_reports_its_url(worker: StreamWorker) -> None:
    url = worker.serve()
    assert url.startswith("http://127.0.0.1:")
    assert int(url.rsplit(":", 1)[1]) > 0
    assert worker.serve() == url  # once
    assert worker.metrics_url == url
    assert worker.stats()["metrics_url"] == url
    assert get(url + "/healthz")[0] == 200
    assert get(url + "/readyz")[0] == 503  # not consuming yet


def test_a_scrape_shows_the_workers_own_stats(worker: StreamWorker) -> None:
    url = worker.serve()
    worker._stats.items = 12
    worker._stats.dead_letter_reasons["decode"] = 2
    code, body = get(url + "/metrics")
    assert code == 200
    got = samples(body.decode())
    assert got[("streamlabel_items_consumed_total", (("actor", "worker-7"),))] == 12
    reason = (("actor", "worker-7"), ("reason", "decode"))
    assert got[("streamlabel_dead_letters_total", reason)] == 2


def test_metrics_disabled_serves_nothing() -> None:
    w = make_worker(enabled=False)
    try:
        assert w.serve() == ""
        assert w.stats()["metrics_url"] == ""
    finally:
        w.close_endpoint()


def test_close_endpoint_frees_the_port(worker: StreamWorker) -> None:
    url = worker.serve()
    port = int(url.rsplit(":", 1)[1])
    worker.close_endpoint()
    assert not check_health(url + "/healthz", timeout_s=1)[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free again
    worker.close_endpoint()  # twice: nothing to do


def test_drain_stops_the_loop_and_marks_it_draining(worker: StreamWorker) -> None:
    worker.health.ready = True
    worker.drain()
    assert worker.stop_requested
    assert worker.health.draining
    assert not worker.health.ready


def test_post_drain_stops_the_worker(worker: StreamWorker) -> None:
    url = worker.serve()
    assert not worker.stop_requested
    assert post(url + "/drain") == 202
    assert worker.stop_requested
    assert worker.health.draining


# -------------------------------------------------------------------- run
def fake_loop(worker: StreamWorker, on_step: Any) -> list[str]:
    """Replaces the connection and the step; returns the calls made."""
    calls: list[str] = []
    worker._open = lambda: calls.append("open")  # type: ignore[method-assign]
    worker._close = lambda: calls.append("close")  # type: ignore[method-assign]

    def step() -> int:
        calls.append("step")
        on_step()
        return 0

    worker.step = step  # type: ignore[method-assign]
    return calls


def test_run_is_ready_while_looping_and_drained_after_post_drain(worker: StreamWorker) -> None:
    seen: dict[str, Any] = {}

    def on_step() -> None:
        url = worker.metrics_url
        seen["readyz"] = get(url + "/readyz")[0]
        seen["metrics_url"] = worker.stats()["metrics_url"]
        post(url + "/drain")

    calls = fake_loop(worker, on_step)
    stats = worker.run()
    assert calls == ["open", "step", "close"]
    assert seen == {"readyz": 200, "metrics_url": worker.metrics_url}
    assert stats["drained"] is True
    assert stats["running"] is False
    assert worker.health.drained
    assert not worker.health.ready
    url = worker.metrics_url
    assert get(url + "/readyz")[0] == 503
    assert get(url + "/healthz") == (200, b"drained\n")
    assert json.loads(get(url + "/drain")[1])["drained"] is True


def test_run_stopped_without_a_drain_is_not_drained(worker: StreamWorker) -> None:
    fake_loop(worker, worker.stop)
    stats = worker.run()
    assert stats["drained"] is False
    assert not worker.health.drained
    assert not worker.health.ready


def test_a_drain_before_the_loop_starts_ends_it_at_once_as_drained(worker: StreamWorker) -> None:
    worker.drain()
    calls = fake_loop(worker, worker.stop)
    stats = worker.run()
    assert calls == ["open", "close"]
    assert stats["drained"] is True
    assert not worker.health.ready


# ------------------------------------------------------------- a real step
def msg(partition: int, offset: int, value: bytes | None = None) -> SimpleNamespace:
    item_id = f"i-{partition}-{offset}"
    return SimpleNamespace(
        topic=ITEMS,
        partition=partition,
        offset=offset,
        key=item_id.encode(),
        value=value if value is not None else encode(Item(id=item_id, text="python list")),
        headers=[],
    )


def test_a_step_records_every_stage_and_the_batch_in_the_histograms() -> None:
    polled = {P0: [msg(0, 20), msg(0, 21), msg(0, 22, b"\xff not msgpack")], P1: [msg(1, 5)]}
    consumer = FakeConsumer(
        {P0, P1}, highwater={P0: 30, P1: 6}, positions={P0: 23, P1: 6}, polls=[polled]
    )
    publisher = FakePublisher(Topics("t."))
    settings = load_runtime_settings(
        kafka={"topic_prefix": "t."},
        logging={"level": "warning"},
        worker={"batch_size": 16},
        metrics={"port": 0, "host": "127.0.0.1"},
    )
    worker = StreamWorker(
        settings, "worker-7", embedder=HashEmbedder(dim=32), consumer=consumer,
        publisher=publisher, changelog=FakeChangelog(),
    )  # fmt: skip
    try:
        check_a_step_records_every_stage(worker, consumer, publisher)
    finally:
        worker.close()
        worker.close_endpoint()


def check_a_step_records_every_stage(
    worker: StreamWorker, consumer: FakeConsumer, publisher: FakePublisher
) -> None:
    worker.ready()
    assert not worker.overlap  # a local model: the stages run in turn
    assert worker.step() == 4
    assert publisher.sent
    assert consumer.commit_history() == [{P0: 23, P1: 6}]
    got = samples(worker.metrics.exposition().decode())
    a = (("actor", "worker-7"),)
    counts = {
        dict(labels)["stage"]: v
        for (name, labels), v in got.items()
        if name == "streamlabel_stage_seconds_count"
    }
    assert counts == dict.fromkeys(STAGES, 1.0)
    assert got[("streamlabel_batch_seconds_count", a)] == 1
    assert got[("streamlabel_items_consumed_total", a)] == 4
    assert got[("streamlabel_batches_total", a)] == 1
    stats = worker.stats()
    assert sum(stats["dead_letter_reasons"].values()) == stats["dead_letters"] == 1
    reason = next(iter(stats["dead_letter_reasons"]))
    assert got[("streamlabel_dead_letters_total", (*a, ("reason", reason)))] == 1
    lag = (*a, ("partition", "0"), ("topic", ITEMS))
    assert got[("streamlabel_consumer_lag", lag)] == 7
    assert worker.step() == 0  # an empty poll observes no batch
    again = samples(worker.metrics.exposition().decode())
    assert again[("streamlabel_batch_seconds_count", a)] == 1
