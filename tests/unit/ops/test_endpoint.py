"""The HTTP endpoint of an actor (``ops.endpoint``): real requests on 127.0.0.1.

* ``serve`` binds the first free port of a role (driver base+0, learner +1,
  worker +2) within ``metrics.port_span``, an ephemeral one for port 0, nothing
  when ``metrics.enabled`` is off or every port is taken;
* ``/metrics`` is the registry's exposition; ``/healthz`` fails once the loop
  made no step for ``metrics.stall_s`` (a fake clock here) and passes while
  drained; ``/readyz`` passes only while ready and not draining; ``POST /drain``
  calls the loop's stop once, ``GET /drain`` reports the state as JSON;
* ``POST /drain`` needs the endpoint's token (written 0600 in a 0700 directory at
  start-up, removed on close): none or another is 401; an unsafe directory
  leaves the endpoint serving but undrainable;
* a client that does not send its request within the request timeout loses its
  connection, and does not keep others from being served;
* the clients: ``request_drain`` (POST with the token, then poll until drained)
  and ``check_health``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streamlabel.ops.client import check_health, request_drain
from streamlabel.ops.drain_token import read_drain_token
from streamlabel.ops.endpoint import ROLE_OFFSETS, Endpoint, Health, serve
from streamlabel.ops.metrics import ActorMetrics, worker_families
from streamlabel.settings.deployment import MetricsSettings
from streamlabel.testing import ManualClock

HOST = "127.0.0.1"
STALL_S = 30.0


# ------------------------------------------------------------------ helpers
def listening_socket(port: int) -> socket.socket:
    """A socket listening on ``HOST:port`` (a port someone else holds)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, port))
    s.listen(1)
    return s


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def free_base(width: int = 8) -> int:
    """A base port such that ``base .. base + width - 1`` are all free right now."""
    for _ in range(100):
        base = free_port()
        if base + width > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for p in range(base, base + width):
                held.append(listening_socket(p))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    raise RuntimeError("no free range of ports on 127.0.0.1")


def http(method: str, url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of one request; HTTP errors are answers too."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(
        url, method=method, data=b"" if method == "POST" else None, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status), dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(exc.headers.items()), exc.read()


def settings(**kw: object) -> MetricsSettings:
    return MetricsSettings(**{"host": HOST, "stall_s": STALL_S, **kw})


def close_all(endpoints: list[Endpoint]) -> None:
    """Closes endpoints in parallel (each ``close`` waits up to the server's 0.5 s poll)."""

    def close(e: Endpoint) -> None:
        with contextlib.suppress(Exception):
            e.close()

    threads = [threading.Thread(target=close, args=(e,)) for e in endpoints]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    endpoints.clear()


@pytest.fixture(scope="module")
def _module_endpoints() -> Iterator[list[Endpoint]]:
    endpoints: list[Endpoint] = []
    yield endpoints
    close_all(endpoints)


@pytest.fixture
def closing(_module_endpoints: list[Endpoint]) -> list[Endpoint]:
    """Endpoints appended here are closed (all at once) when this module's tests end."""
    return _module_endpoints


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


@pytest.fixture
def health(clock: ManualClock) -> Health:
    return Health(STALL_S, clock=clock)


@pytest.fixture
def metrics() -> ActorMetrics:
    return ActorMetrics("worker-9", lambda: {"items": 42, "running": True}, worker_families)


@pytest.fixture
def endpoint(closing: list[Endpoint], health: Health, metrics: ActorMetrics) -> Endpoint:
    e = serve(settings(port=0), "worker", metrics.registry, health)
    assert e is not None
    closing.append(e)
    return e


# -------------------------------------------------------------------- ports
def test_port_zero_binds_an_ephemeral_port_on_the_configured_host(endpoint: Endpoint) -> None:
    assert endpoint.host == HOST
    assert endpoint.port > 0
    assert endpoint.url == f"http://{HOST}:{endpoint.port}"
    assert http("GET", endpoint.url + "/healthz")[0] == 200


def test_each_role_takes_its_offset_from_the_base_port(
    closing: list[Endpoint], health: Health, metrics: ActorMetrics
) -> None:
    base = free_base()
    ports = {}
    for role in ("driver", "learner", "worker"):
        e = serve(settings(port=base), role, metrics.registry, health)
        assert e is not None, role
        closing.append(e)
        ports[role] = e.port
    assert ports == {"driver": base, "learner": base + 1, "worker": base + 2}
    assert ROLE_OFFSETS == {"driver": 0, "learner": 1, "worker": 2}


def test_a_second_server_of_a_role_takes_the_next_port(
    closing: list[Endpoint], health: Health, metrics: ActorMetrics
) -> None:
    base = free_base()
    first = serve(settings(port=base), "worker", metrics.registry, health)
    assert first is not None
    closing.append(first)
    second = serve(settings(port=base), "worker", metrics.registry, health)
    assert second is not None
    closing.append(second)
    assert (first.port, second.port) == (base + 2, base + 3)
    assert http("GET", second.url + "/healthz")[0] == 200


def test_a_port_held_by_another_process_is_skipped(
    closing: list[Endpoint], health: Health, metrics: ActorMetrics
) -> None:
    base = free_base()
    with listening_socket(base + 1):
        e = serve(settings(port=base), "learner", metrics.registry, health)
        assert e is not None
        closing.append(e)
        assert e.port == base + 2


def test_every_port_of_the_span_taken_serves_nothing(
    closing: list[Endpoint], health: Health, metrics: ActorMetrics
) -> None:
    base = free_base()
    with listening_socket(base + 2), listening_socket(base + 3):
        e = serve(settings(port=base, port_span=2), "worker", metrics.registry, health)
        if e is not None:
            closing.append(e)
        assert e is None


def test_a_base_port_whose_role_range_lies_past_65535_serves_nothing(
    closing: list[Endpoint], health: Health, metrics: ActorMetrics
) -> None:
    """``metrics.port`` accepts up to 65535, so a worker's first port may be 65536:
    no candidate port at all must mean "no endpoint" like a full span, not a crash."""
    e = serve(settings(port=65534), "worker", metrics.registry, health)
    if e is not None:
        closing.append(e)
    assert e is None


def test_metrics_disabled_serves_nothing(health: Health, metrics: ActorMetrics) -> None:
    assert serve(settings(port=0, enabled=False), "worker", metrics.registry, health) is None


def test_close_frees_the_port(health: Health, metrics: ActorMetrics) -> None:
    e = serve(settings(port=0), "worker", metrics.registry, health)
    assert e is not None
    url = e.url + "/healthz"
    e.close()
    ok, what = check_health(url, timeout_s=1)
    assert not ok, what


# ------------------------------------------------------------------ metrics
def test_metrics_is_the_registry_exposition_with_its_content_type(endpoint: Endpoint) -> None:
    code, headers, body = http("GET", endpoint.url + "/metrics")
    assert code == 200
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert int(headers["Content-Length"]) == len(body)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
    }
    assert samples[("streamlabel_items_consumed_total", (("actor", "worker-9"),))] == 42.0
    assert samples[("streamlabel_up", (("actor", "worker-9"),))] == 1.0


def test_metrics_reads_the_stats_at_each_scrape(closing: list[Endpoint], health: Health) -> None:
    stats = {"items": 1}
    m = ActorMetrics("worker-1", lambda: stats, worker_families)
    e = serve(settings(port=0), "worker", m.registry, health)
    assert e is not None
    closing.append(e)
    assert (
        b'streamlabel_items_consumed_total{actor="worker-1"} 1.0'
        in http("GET", e.url + "/metrics")[2]
    )
    stats["items"] = 5
    assert (
        b'streamlabel_items_consumed_total{actor="worker-1"} 5.0'
        in http("GET", e.url + "/metrics")[2]
    )


# ------------------------------------------------------------------- health
def test_healthz_fails_after_stall_s_without_a_step_and_passes_again_after_a_beat(
    endpoint: Endpoint, health: Health, clock: ManualClock
) -> None:
    url = endpoint.url + "/healthz"
    assert http("GET", url)[:1] == (200,)
    clock.advance(STALL_S)  # exactly stall_s: still alive
    assert http("GET", url)[0] == 200
    clock.advance(1.0)
    code, _, body = http("GET", url)
    assert code == 503
    assert b"no step for 31s" in body
    assert b"metrics.stall_s" in body
    health.beat()
    assert http("GET", url)[0] == 200


def test_healthz_passes_when_drained_even_without_steps(
    endpoint: Endpoint, health: Health, clock: ManualClock
) -> None:
    clock.advance(STALL_S * 10)
    assert http("GET", endpoint.url + "/healthz")[0] == 503
    health.drained = True
    code, _, body = http("GET", endpoint.url + "/healthz")
    assert (code, body.strip()) == (200, b"drained")


def test_healthz_ignores_a_query_string(endpoint: Endpoint) -> None:
    assert http("GET", endpoint.url + "/healthz?probe=kubelet")[0] == 200


def test_readyz_follows_ready_and_draining(endpoint: Endpoint, health: Health) -> None:
    url = endpoint.url + "/readyz"
    assert http("GET", url)[0] == 503  # starting
    health.ready = True
    assert http("GET", url)[0] == 200
    health.draining = True  # even if something set ready again
    assert http("GET", url)[0] == 503
    health.draining = False
    health.drain()
    assert health.ready is False
    assert http("GET", url)[0] == 503


# -------------------------------------------------------------------- drain
def test_post_drain_calls_on_drain_once_and_reports_the_state(
    endpoint: Endpoint, health: Health
) -> None:
    calls: list[int] = []
    health.on_drain = lambda: calls.append(1)
    health.ready = True
    token = read_drain_token(endpoint.port)
    code, headers, body = http("POST", endpoint.url + "/drain", token)
    assert code == 202
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "alive": True,
        "reason": "ok",
        "ready": False,
        "draining": True,
        "drained": False,
        "degraded": [],
    }
    assert http("POST", endpoint.url + "/drain", token)[0] == 202
    assert calls == [1]
    assert health.draining
    assert not health.ready


def test_get_drain_reports_without_draining(endpoint: Endpoint, health: Health) -> None:
    calls: list[int] = []
    health.on_drain = lambda: calls.append(1)
    code, headers, body = http("GET", endpoint.url + "/drain")
    assert code == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["draining"] is False
    assert calls == []
    health.drain()
    health.drained = True
    state = json.loads(http("GET", endpoint.url + "/drain")[2])
    assert (state["draining"], state["drained"], state["reason"]) == (True, True, "drained")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("GET", "/metricsz"), ("POST", "/metrics"), ("POST", "/healthz")],
)
def test_unknown_paths_are_404(endpoint: Endpoint, health: Health, method: str, path: str) -> None:
    assert http(method, endpoint.url + path)[0] == 404
    assert not health.draining


# ------------------------------------------------------------------ clients
def test_request_drain_with_nothing_listening_succeeds() -> None:
    ok, what = request_drain(HOST, free_port(), timeout_s=1)
    assert ok
    assert "nothing to drain" in what


def test_request_drain_waits_until_the_process_reports_drained(
    endpoint: Endpoint, health: Health
) -> None:
    def finish_later() -> None:
        threading.Timer(0.3, lambda: setattr(health, "drained", True)).start()

    health.on_drain = finish_later
    t0 = time.monotonic()
    ok, what = request_drain(HOST, endpoint.port, timeout_s=5, poll_s=0.05)
    assert (ok, what) == (True, "drained")
    assert health.draining
    assert 0.25 <= time.monotonic() - t0 < 3


def test_request_drain_fails_when_the_process_never_drains(
    endpoint: Endpoint, health: Health
) -> None:
    t0 = time.monotonic()
    ok, what = request_drain(HOST, endpoint.port, timeout_s=0.3, poll_s=0.05)
    assert not ok
    assert "not drained after 0.3s" in what
    assert health.draining
    assert time.monotonic() - t0 < 2


def test_request_drain_succeeds_when_the_process_goes_away(
    closing: list[Endpoint], health: Health, metrics: ActorMetrics
) -> None:
    e = serve(settings(port=0), "worker", metrics.registry, health)
    assert e is not None
    closing.append(e)
    health.on_drain = lambda: threading.Timer(0.2, e.close).start()
    ok, what = request_drain(HOST, e.port, timeout_s=5, poll_s=0.05)
    assert ok, what
    assert "gone" in what


class _NoPost(BaseHTTPRequestHandler):
    """An HTTP server that is not a streamlabel endpoint (POST: 501)."""

    def log_message(self, format: str, *args: object) -> None:
        return


def test_request_drain_fails_on_an_http_error() -> None:
    server = HTTPServer((HOST, 0), _NoPost)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ok, what = request_drain(HOST, int(server.server_address[1]), timeout_s=1, poll_s=0.05)
    finally:
        server.shutdown()
        server.server_close()
    assert not ok
    assert what.endswith("501")


def test_check_health_on_200_503_and_refused(
    endpoint: Endpoint, health: Health, clock: ManualClock
) -> None:
    ok, what = check_health(endpoint.url + "/healthz")
    assert ok
    assert what == f"{endpoint.url}/healthz: 200 ok"
    ok, what = check_health(endpoint.url + "/readyz")
    assert not ok
    assert "503 not ready" in what
    clock.advance(STALL_S + 5)
    ok, what = check_health(endpoint.url + "/healthz")
    assert not ok
    assert ": 503 no step for" in what
    refused = f"http://{HOST}:{free_port()}/healthz"
    ok, what = check_health(refused, timeout_s=1)
    assert not ok
    assert what.startswith(refused)


# ---------------------------------------------------------------- Health
def test_health_drain_is_idempotent_and_calls_on_drain_once(health: Health) -> None:
    calls: list[int] = []
    health.on_drain = lambda: calls.append(1)
    health.ready = True
    health.drain()
    health.drain()
    assert calls == [1]
    assert (health.ready, health.draining, health.drained) == (False, True, False)


def test_a_drain_from_another_host_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint listens on every interface in a pod; only the pod itself may drain."""
    from streamlabel.ops import endpoint as ep

    calls: list[int] = []
    health = Health(stall_s=60.0)
    health.on_drain = lambda: calls.append(1)
    server = ep.serve(MetricsSettings(port=0), "worker", CollectorRegistry(), health)
    assert server is not None
    try:
        monkeypatch.setattr(ep, "is_local", lambda host: False)
        req = urllib.request.Request(f"{server.url}/drain", method="POST", data=b"")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=5)
        assert info.value.code == 403
        assert calls == []
        assert not health.draining
    finally:
        server.close()


@pytest.mark.parametrize(
    ("host", "local"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("10.0.0.7", False),
     ("192.168.1.2", False), ("fe80::1%eth0", False), ("not-an-ip", False)],
)  # fmt: skip
def test_is_local(host: str, local: bool) -> None:
    from streamlabel.ops.endpoint import is_local

    assert is_local(host) is local


def test_a_process_that_does_not_answer_is_not_taken_as_drained() -> None:
    """A timeout means something is there but busy: keep asking until the deadline, and
    report failure; only a refused connection means nothing to drain."""
    import socket

    from streamlabel.ops.client import request_drain

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)  # accepts connections but never answers
        port = s.getsockname()[1]
        t0 = time.monotonic()
        drained, what = request_drain("127.0.0.1", port, timeout_s=1.5, poll_s=0.1)
        assert not drained, what
        assert time.monotonic() - t0 < 10


def test_a_degraded_deployment_says_so_and_stays_alive_and_ready(
    endpoint: Endpoint, health: Health
) -> None:
    """An exhausted slot is reported by the probes without failing them: a failed probe
    would restart everything while the rest keeps working."""
    health.started()
    health.degraded = ["worker-1"]
    assert http("GET", endpoint.url + "/healthz")[:3:2] == (200, b"ok (degraded: worker-1)\n")
    assert http("GET", endpoint.url + "/readyz")[:3:2] == (200, b"ready (degraded: worker-1)\n")
    assert json.loads(http("GET", endpoint.url + "/drain")[2])["degraded"] == ["worker-1"]
