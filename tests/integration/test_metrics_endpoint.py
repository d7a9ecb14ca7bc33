"""The metrics, health and drain endpoint of real actors: scraped over HTTP.

A real deployment (tansu, local Ray, MiniLM): the stream worker's and the
learner's ``/metrics`` are parsed and checked against what was produced; a
``POST /drain`` stops a worker like a pod's preStop hook and the supervisor
starts it again without counting a failure; ``streamlabel run``'s own endpoint
reports the deployment and ``streamlabel drain`` stops it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamlabel.kafka.client import LabelCollector, produce_feedback, produce_items
from streamlabel.kafka.topics import Topics, ensure_topics
from streamlabel.ops.client import check_health, request_drain
from streamlabel.runtime.supervisor import Runtime
from streamlabel.schemas import Feedback, Item
from streamlabel.testing import wait_until

pytestmark = pytest.mark.integration


def _free_base(span: int = 8) -> int:
    """A base port with ``span`` free ports after it (loopback)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + span > 65535:
            continue
        free = True
        for port in range(base, base + span):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return base
    raise RuntimeError("no free port range")


def _scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def _value(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= ls]
    assert found, f"no sample {name}{labels}"
    return sum(found)


@pytest.fixture(scope="module")
def served_runtime(make_runtime_settings, local_ray, tmp_path_factory) -> Iterator[Runtime]:
    settings = make_runtime_settings(
        tmp_path_factory.mktemp("state"),
        # one local node never goes away: a drained worker waits 5 s, not 90
        supervisor={"workers": 1, "drained_node_wait_s": 5},
        worker={"batch_size": 32},
        discovery={"run_every": 100000},
        metrics={"port": _free_base()},
    )
    with Runtime(settings) as rt:
        yield rt


def test_worker_and_learner_metrics_match_what_was_produced(served_runtime, so_test):
    from kafka import KafkaProducer

    rt = served_runtime
    kafka = rt.settings.kafka
    labels = sorted(set(so_test.labels))[:3]
    teach = [
        Feedback(text=t, label=lab, source="test")
        for t, lab in zip(so_test.texts, so_test.labels, strict=True)
        if lab in labels
    ][:30]
    produce_feedback(kafka, teach)
    rt.wait_until_learned(len(teach), timeout_s=180)
    items = [Item(id=f"m-{i}", text=t) for i, t in enumerate(so_test.texts[:200])]
    produce_items(kafka, items)
    producer = KafkaProducer(**kafka.client_kwargs())
    for k in range(3):
        producer.send(Topics(kafka.topic_prefix).items, key=f"bad-{k}".encode(), value=b"\xc1junk")
    producer.flush()
    producer.close()
    collector = LabelCollector(kafka)
    wait_until(lambda: collector.poll() >= 0 and len(collector.first) >= len(items), 180, "labels")
    collector.close()

    worker = rt.progress().workers[0]
    url = worker["metrics_url"]
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith(f":{rt.settings.metrics.port + 2}")  # the worker role's first port

    def consumed() -> float:
        return _value(_scrape(url), "streamlabel_items_consumed_total", actor="worker-0")

    wait_until(lambda: consumed() == len(items) + 3, 60, "the poison records consumed")
    m = _scrape(url)
    assert _value(m, "streamlabel_items_labelled_total", actor="worker-0") == len(items)
    assert _value(m, "streamlabel_dead_letters_total", reason="not_msgpack") == 3
    unknown = _value(m, "streamlabel_items_unknown_total")
    assert unknown == sum(r.label == "unknown" for r in collector.first.values())
    batches = _value(m, "streamlabel_batches_total")
    assert batches >= len(items) / 32
    for stage in ("decode", "embed", "classify", "publish", "commit"):
        assert _value(m, "streamlabel_stage_seconds_count", stage=stage) == batches, stage
    assert _value(m, "streamlabel_stage_seconds_sum", stage="embed") > 0
    assert _value(m, "streamlabel_batch_seconds_count") == batches
    lag = [(dict(ls), v) for (n, ls), v in m.items() if n == "streamlabel_consumer_lag"]
    assert sorted(int(ls["partition"]) for ls, _ in lag) == list(range(kafka.partitions))
    assert all(ls["topic"] == Topics(kafka.topic_prefix).items for ls, _ in lag)
    assert _value(m, "streamlabel_store_version") == worker["store_version"] > 0
    assert _value(m, "streamlabel_classes", status="known") == len(labels)
    assert _value(m, "streamlabel_up") == 1
    assert _value(m, "process_resident_memory_bytes") > 100e6  # the model is loaded
    assert check_health(f"{url}/healthz")[0]
    assert check_health(f"{url}/readyz")[0]

    learner_url = rt.progress().learner["metrics_url"]
    assert learner_url.endswith(f":{rt.settings.metrics.port + 1}")
    # the learner reads the unknowns topic on its own schedule: it gets there
    wait_until(
        lambda: _value(_scrape(learner_url), "streamlabel_unknowns_absorbed_total") == unknown,
        60, "the learner absorbing every unknown",
    )  # fmt: skip
    lm = _scrape(learner_url)
    assert _value(lm, "streamlabel_feedback_total", actor="learner") == len(teach)
    assert _value(lm, "streamlabel_classes", status="known") == len(labels)
    assert _value(lm, "streamlabel_unknowns_absorbed_total") == unknown
    assert _value(lm, "streamlabel_discovery_runs_total") == 0


def test_drain_stops_a_worker_which_comes_back_without_a_failure(served_runtime, so_test):
    rt = served_runtime
    kafka = rt.settings.kafka
    url = rt.progress().workers[0]["metrics_url"]
    port = int(url.rsplit(":", 1)[1])
    drained, what = request_drain("127.0.0.1", port, timeout_s=60)
    assert drained, what
    deadline = time.monotonic() + 120
    while True:  # the supervisor notices the drained loop and starts the worker again
        rt.check()
        workers = rt.progress().workers
        if workers and workers[0]["running"] and workers[0]["metrics_url"]:
            break
        assert time.monotonic() < deadline, "the drained worker was not started again"
        time.sleep(0.5)
    assert rt.workers[0].restarts == 0  # a drain is not a failure
    items = [Item(id=f"d-{i}", text=t) for i, t in enumerate(so_test.texts[300:360])]
    produce_items(kafka, items)
    collector = LabelCollector(kafka)
    ids = {i.id for i in items}
    wait_until(
        lambda: rt.check() is not None and collector.poll() >= 0 and ids <= collector.first.keys(),
        120,
        "labels after the drain",
    )
    collector.close()


def test_run_serves_the_driver_endpoint_and_stops_on_drain(runtime_settings, tmp_path):
    settings = runtime_settings()
    kafka = settings.kafka
    ensure_topics(kafka)
    base = _free_base()
    env = {
        **os.environ,
        "STREAMLABEL_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers or "",
        "STREAMLABEL_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "STREAMLABEL_KAFKA__GROUP_ID": kafka.group_id,
        "STREAMLABEL_LEARNER__STATE_DIR": str(tmp_path / "state"),
        "STREAMLABEL_RAY__NUM_CPUS": "4",
        "STREAMLABEL_METRICS__PORT": str(base),
    }
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlabel.cli", "run", "--workers", "1", "--progress-every", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    driver = f"http://127.0.0.1:{base}"
    try:
        wait_until(lambda: check_health(f"{driver}/readyz")[0], 240, "the driver ready")
        assert check_health(f"{driver}/healthz")[0]

        def workers() -> float:
            return _value(_scrape(driver), "streamlabel_workers", actor="driver")

        wait_until(lambda: workers() == 1, 60, "the driver's worker gauge")
        m = _scrape(driver)
        assert _value(m, "streamlabel_workers_desired") == 1
        assert _value(m, "streamlabel_actor_restarts_total", slot="worker-0") == 0
        assert _value(m, "streamlabel_group_lag") == 0
        assert check_health(f"http://127.0.0.1:{base + 2}/readyz")[0]  # its worker
        done = subprocess.run(
            [sys.executable, "-m", "streamlabel.cli", "drain", "--port", str(base),
             "--timeout", "120"],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    assert "runtime_stopped" in output
