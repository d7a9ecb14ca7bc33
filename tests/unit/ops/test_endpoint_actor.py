"""The endpoint wired into the actors (``Served``) and the supervisor's handling of a
drained actor, without Kafka and without Ray.

* ``StreamWorker(settings, "worker-7")`` serves on ``metrics.host`` (127.0.0.1,
  port 0 here) once, exposes its own stats, stops its loop on ``drain()`` and
  ``POST /drain``, and frees the port on ``close_endpoint()``;
* ``run()`` (connection and steps replaced by fakes) is ready while it loops and
  reports ``drained`` only when the stop came from a drain;
* a real ``step()`` over fakes records every stage in the histograms;
* ``Runtime.check()`` with ``ray.wait/get/kill`` replaced by fakes: a loop that
  returned ``drained`` is started again after ``RELAUNCH_BACKOFF_S`` without
  counting a restart, unlike a loop that died.
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

from streamlabel.errors import StreamlabelError
from streamlabel.ops.endpoint import check_health
from streamlabel.ops.metrics import STAGES
from streamlabel.pipeline import Engine, load_settings
from streamlabel.runtime import supervisor
from streamlabel.runtime.supervisor import RELAUNCH_BACKOFF_S, Runtime, _Slot
from streamlabel.schemas import Item, encode
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import HashEmbedder, ManualClock
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
        runtime={"log_level": "warning", "batch_size": 16},
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
    req = urllib.request.Request(url, method="POST", data=b"")
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
    assert worker._stop.is_set()
    assert worker.health.draining
    assert not worker.health.ready


def test_post_drain_stops_the_worker(worker: StreamWorker) -> None:
    url = worker.serve()
    assert not worker._stop.is_set()
    assert post(url + "/drain") == 202
    assert worker._stop.is_set()
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
class FakeConsumer:
    def __init__(self, polls: list[dict[Any, list[Any]]]) -> None:
        self.polls = polls
        self.assigned = {P0, P1}
        self.commits: list[Any] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def highwater(self, tp: TopicPartition) -> int:
        return {P0: 30, P1: 6}[tp]

    def position(self, tp: TopicPartition) -> int:
        return {P0: 23, P1: 6}[tp]

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        return self.polls.pop(0) if self.polls else {}

    def commit(self, offsets: Any) -> None:
        self.commits.append(offsets)


class FakeTail:
    def poll(self, timeout_ms: int = 0) -> list[Any]:
        return []


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[Any] = []
        self.flushed = 0

    def records(self, out: Any) -> list[Any]:
        return [out]

    def send_all(self, records: list[Any]) -> int:
        self.published.extend(records)
        return len(records)

    def flush(self) -> int:
        self.flushed += 1
        return 1

    def deliver(self, records: list[Any], **kwargs: Any) -> None:
        self.published.extend(records)


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


def test_a_step_records_every_stage_and_the_batch_in_the_histograms(
    worker: StreamWorker,
) -> None:
    polled = {P0: [msg(0, 20), msg(0, 21), msg(0, 22, b"\xff not msgpack")], P1: [msg(1, 5)]}
    consumer = FakeConsumer([polled])
    worker._engine = Engine(
        load_settings(drift={"enabled": False}), HashEmbedder(dim=32), clock=ManualClock(1000.0)
    )
    worker._consumer = consumer  # type: ignore[assignment]
    worker._tail = FakeTail()  # type: ignore[assignment]
    worker._publisher = FakePublisher()  # type: ignore[assignment]
    assert not worker.overlap  # a local model: the stages run in turn
    assert worker.step() == 4
    assert worker._publisher.published  # type: ignore[attr-defined]
    assert [{tp: o.offset for tp, o in c.items()} for c in consumer.commits] == [{P0: 23, P1: 6}]
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


# ---------------------------------------------------- the supervisor (no Ray)
class FakeRef:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"FakeRef({self.name})"


class FakeHandle:
    """An actor handle: ``handle.method.remote(*args)`` records the call, returns a ref."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        def remote(*args: Any) -> FakeRef:
            self.calls.append((method, args))
            return FakeRef(f"{self.name}.{method}")

        return SimpleNamespace(remote=remote)


class FakeRay:
    """``ray.wait/get/kill`` over refs whose outcome the test sets."""

    def __init__(self) -> None:
        # id(ref) -> (ref, a value or an exception to raise); the ref is kept alive so
        # that its id is never reused by a newer ref
        self.results: dict[int, tuple[Any, Any]] = {}
        self.killed: list[Any] = []
        self.alive: dict[str, bool] = {}

    def finish(self, ref: Any, result: Any) -> None:
        self.results[id(ref)] = (ref, result)

    def wait(self, refs: list[Any], num_returns: int = 1, timeout: float | None = None) -> Any:
        done = [r for r in refs if id(r) in self.results]
        return done, [r for r in refs if id(r) not in self.results]

    def get(self, ref: Any, timeout: float | None = None) -> Any:
        _, result = self.results[id(ref)]
        if isinstance(result, BaseException):
            raise result
        return result

    def kill(self, handle: Any) -> None:
        self.killed.append(handle)

    def nodes(self) -> list[dict[str, Any]]:
        return [{"NodeID": n, "Alive": alive} for n, alive in self.alive.items()]


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> FakeRay:
    import ray

    fake = FakeRay()
    for name in ("wait", "get", "kill", "nodes"):
        monkeypatch.setattr(ray, name, getattr(fake, name))
    return fake


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    c = ManualClock(5000.0)
    monkeypatch.setattr(supervisor, "time", SimpleNamespace(monotonic=c, sleep=lambda s: None))
    return c


def launched(slot: _Slot, timeout_s: float) -> None:
    """What ``_launch_*`` leaves behind: a new actor whose loop runs."""
    slot.handle = FakeHandle(slot.name)
    slot.run_ref = slot.handle.run.remote()


def make_runtime(max_restarts: int = 5, workers: int = 1) -> Runtime:
    rt = Runtime(load_runtime_settings(runtime={"max_restarts": max_restarts}))
    rt._launch_worker = launched  # type: ignore[method-assign]
    rt._begin_worker = lambda slot: launched(slot, 0)  # type: ignore[method-assign]
    rt._launch_learner = launched  # type: ignore[method-assign]
    rt.learner = _Slot("learner")
    launched(rt.learner, 0)
    for _ in range(workers):
        slot = rt._new_worker_slot()
        launched(slot, 0)
        rt.workers.append(slot)
    return rt


def test_a_drained_worker_is_restarted_after_the_backoff_without_counting_a_restart(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime()
    slot = rt.workers[0]
    old = slot.handle
    fake_ray.finish(slot.run_ref, {"items": 5, "drained": True})
    assert rt.check() == []
    assert (slot.handle, slot.run_ref, slot.restarts) == (None, None, 0)
    assert fake_ray.killed == [old]
    assert rt.worker_count() == 1  # still one of the group: it comes back
    clock.advance(RELAUNCH_BACKOFF_S - 0.5)
    assert rt.check() == []
    assert slot.handle is None
    clock.advance(0.5)
    assert rt.check() == ["worker-0"]
    assert slot.handle is not None
    assert slot.handle is not old
    assert slot.restarts == 0
    assert rt.driver_stats(rt_progress())["restarts"] == {"learner": 0, "worker-0": 0}


def rt_progress() -> supervisor.Progress:
    return supervisor.Progress(
        elapsed_s=1.0, items=0, items_per_s=0.0, lag=77, unknowns=0, dead_letters=0, classes=0,
        store_version=0, alerts=0, discovered=0, restarts=0,
    )  # fmt: skip


def test_a_loop_that_returned_undrained_is_a_failure_restarted_at_once(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime()
    slot = rt.workers[0]
    fake_ray.finish(slot.run_ref, {"items": 5, "drained": False})
    assert rt.check() == ["worker-0"]
    assert slot.restarts == 1
    assert slot.handle is not None


def test_drains_do_not_use_up_max_restarts(fake_ray: FakeRay, clock: ManualClock) -> None:
    rt = make_runtime(max_restarts=0)
    slot = rt.workers[0]
    for _ in range(3):
        fake_ray.finish(slot.run_ref, {"drained": True})
        assert rt.check() == []
        clock.advance(RELAUNCH_BACKOFF_S)
        assert rt.check() == ["worker-0"]
    assert slot.restarts == 0
    fake_ray.finish(slot.run_ref, RuntimeError("actor died"))
    with pytest.raises(StreamlabelError, match="worker-0 failed 1 times"):
        rt.check()


def test_a_drained_learner_is_restarted_and_handed_to_the_workers(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime(workers=2)
    learner = rt.learner
    assert learner is not None
    fake_ray.finish(learner.run_ref, {"drained": True})
    assert rt.check() == []
    assert learner.handle is None
    assert learner.restarts == 0
    clock.advance(RELAUNCH_BACKOFF_S)
    assert rt.check() == ["learner"]
    for w in rt.workers:
        assert ("set_learner", (learner.handle,)) in w.handle.calls


def test_a_learner_and_a_worker_drained_together_both_come_back(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    """A node drain can stop the learner and a worker at once: the learner's relaunch
    must not trip over the worker that is still waiting for its own (handle None)."""
    rt = make_runtime(workers=2)
    learner, drained, other = rt.learner, rt.workers[0], rt.workers[1]
    assert learner is not None
    fake_ray.finish(learner.run_ref, {"drained": True})
    fake_ray.finish(drained.run_ref, {"drained": True})
    assert rt.check() == []
    clock.advance(RELAUNCH_BACKOFF_S)
    assert sorted(rt.check()) == ["learner", "worker-0"]
    assert drained.handle is not None
    assert learner.handle is not None
    assert ("set_learner", (learner.handle,)) in other.handle.calls
    assert (learner.restarts, drained.restarts, other.restarts) == (0, 0, 0)


def test_driver_stats_report_the_deployment() -> None:
    rt = make_runtime(workers=2)
    rt.workers[1].restarts = 2
    rt.broker_resets = 1
    assert rt.driver_stats(rt_progress()) == {
        "workers": 2,
        "lag": 77,
        "restarts": {"learner": 0, "worker-0": 0, "worker-1": 2},
        "broker_resets": 1,
    }


def test_a_drained_worker_waits_until_the_node_it_left_is_gone(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    """The terminating pod is often the only one with room: a worker started again before
    its node is gone would land there and die with it."""
    rt = make_runtime()
    slot = rt.workers[0]
    fake_ray.alive = {"node-a": True, "node-b": True}
    fake_ray.finish(slot.run_ref, {"drained": True, "node_id": "node-a"})
    assert rt.check() == []
    clock.advance(RELAUNCH_BACKOFF_S + 10)
    assert rt.check() == []  # node-a still alive
    assert slot.handle is None
    fake_ray.alive["node-a"] = False
    assert rt.check() == ["worker-0"]
    assert slot.restarts == 0


def test_a_drained_worker_starts_anyway_after_drained_node_wait_s(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime()
    slot = rt.workers[0]
    fake_ray.alive = {"node-a": True}  # a one-node cluster: the node never goes
    fake_ray.finish(slot.run_ref, {"drained": True, "node_id": "node-a"})
    assert rt.check() == []
    clock.advance(rt.settings.runtime.drained_node_wait_s - 1)
    assert rt.check() == []
    clock.advance(1)
    assert rt.check() == ["worker-0"]


def test_a_relaunch_does_not_wait_for_the_worker_to_be_ready(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    """The supervisor keeps supervising while a restarted worker waits for a node or
    loads its model: its loop starts at a later check, once ready() returned."""
    rt = make_runtime()
    slot = rt.workers[0]

    def begin(s: _Slot) -> None:
        s.handle = FakeHandle(s.name)
        s.ready_ref = object()
        s.started_at = clock()

    rt._begin_worker = begin  # type: ignore[method-assign]
    fake_ray.finish(slot.run_ref, RuntimeError("killed"))
    assert rt.check() == ["worker-0"]  # relaunched, not yet running
    assert slot.run_ref is None
    assert rt.progress().workers == []  # a starting worker is not asked for stats
    fake_ray.finish(slot.ready_ref, True)
    rt.check()
    assert slot.ready_ref is None
    assert slot.run_ref is not None
    assert slot.restarts == 1


def test_a_worker_that_never_gets_ready_is_given_up_and_tried_again(
    fake_ray: FakeRay, clock: ManualClock
) -> None:
    rt = make_runtime()
    slot = rt.workers[0]
    begun: list[object] = []

    def begin(s: _Slot) -> None:
        s.handle = FakeHandle(s.name)
        s.ready_ref = object()
        s.started_at = clock()
        begun.append(s.ready_ref)

    rt._begin_worker = begin  # type: ignore[method-assign]
    fake_ray.finish(slot.run_ref, RuntimeError("killed"))
    rt.check()
    stuck = slot.handle
    clock.advance(rt.settings.runtime.worker_start_timeout_s + 1)
    rt.check()
    assert stuck in fake_ray.killed
    assert slot.handle is None
    clock.advance(RELAUNCH_BACKOFF_S)
    rt.check()
    assert len(begun) == 2
