"""``streamlabel healthcheck`` and ``streamlabel drain`` against a real endpoint on
127.0.0.1 (no Ray, no Kafka): exit 0 when healthy / drained, 1 otherwise. ``drain``
finds the endpoint's token in the default token directory, as in a pod."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from streamlabel.cli import build_parser, main
from streamlabel.ops.drain_token import drain_token_path
from streamlabel.ops.endpoint import Endpoint, Health, serve
from streamlabel.ops.metrics import ActorMetrics, driver_families
from streamlabel.settings.deployment import MetricsSettings
from streamlabel.testing import ManualClock

STALL_S = 30.0


@pytest.fixture(autouse=True)
def _keep_hf_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # main() sets it; restore it afterwards


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(0.0)


@pytest.fixture
def health(clock: ManualClock) -> Health:
    return Health(STALL_S, clock=clock)


@pytest.fixture(scope="module")
def endpoints() -> Iterator[list[Endpoint]]:
    """Closed all at once when the module ends (each close waits up to 0.5 s)."""
    endpoints: list[Endpoint] = []
    yield endpoints
    threads = [threading.Thread(target=e.close) for e in endpoints]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)


@pytest.fixture
def port(health: Health, endpoints: list[Endpoint]) -> str:
    m = ActorMetrics("driver", dict, driver_families)
    e = serve(MetricsSettings(host="127.0.0.1", port=0, stall_s=STALL_S), "driver", m.registry,
              health)  # fmt: skip
    assert e is not None
    endpoints.append(e)
    return str(e.port)


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_the_endpoint_commands_parse_with_their_defaults() -> None:
    args = build_parser().parse_args(["healthcheck"])
    assert (args.port, args.host, args.path) == (9464, "127.0.0.1", "/healthz")
    args = build_parser().parse_args(["drain", "--port", "9466"])
    assert (args.port, args.host, args.timeout, args.span) == (9466, "127.0.0.1", 60.0, 1)


def test_drain_requires_a_port() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["drain"])


def test_healthcheck_rejects_other_paths() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["healthcheck", "--path", "/metrics"])


# --------------------------------------------------------------- healthcheck
def test_healthcheck_exits_0_while_live_and_1_once_stalled(
    port: str, health: Health, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["healthcheck", "--port", port]) == 0
    assert ": 200 ok" in capsys.readouterr().err
    clock.advance(STALL_S + 1)
    assert main(["healthcheck", "--port", port, "--host", "127.0.0.1"]) == 1
    assert ": 503 no step for" in capsys.readouterr().err
    health.beat()
    assert main(["healthcheck", "--port", port]) == 0


def test_healthcheck_readyz_follows_readiness(port: str, health: Health) -> None:
    assert main(["healthcheck", "--port", port, "--path", "/readyz"]) == 1
    health.ready = True
    assert main(["healthcheck", "--port", port, "--path", "/readyz"]) == 0
    health.drain()
    assert main(["healthcheck", "--port", port, "--path", "/readyz"]) == 1
    assert main(["healthcheck", "--port", port]) == 0  # draining is still alive


def test_healthcheck_exits_1_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["healthcheck", "--port", port]) == 1
    assert f"127.0.0.1:{port}/healthz" in capsys.readouterr().err


# --------------------------------------------------------------------- drain
def test_drain_exits_0_once_the_process_reports_drained(
    port: str, health: Health, capsys: pytest.CaptureFixture[str]
) -> None:
    def stop() -> None:  # the loop finishes its batch a moment later
        threading.Timer(0.1, lambda: setattr(health, "drained", True)).start()

    health.on_drain = stop
    assert main(["drain", "--port", port, "--timeout", "5"]) == 0
    assert capsys.readouterr().err.strip() == f"{port}: drained"
    assert health.draining


def test_drain_exits_1_when_the_process_does_not_drain_in_time(
    port: str, health: Health, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["drain", "--port", port, "--timeout", "0.2"]) == 1
    assert "not drained after 0.2s" in capsys.readouterr().err
    assert health.draining


def test_drain_exits_0_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drain", "--port", free_port(), "--timeout", "1"]) == 0
    assert "nothing to drain" in capsys.readouterr().err


def test_drain_of_an_already_drained_process_exits_0(port: str, health: Health) -> None:
    health.drain()
    health.drained = True
    assert main(["drain", "--port", port, "--timeout", "1"]) == 0


def test_drain_without_the_endpoints_token_exits_1_and_drains_nothing(
    port: str, health: Health, capsys: pytest.CaptureFixture[str]
) -> None:
    """The token lives in this user's token directory; a caller that cannot read it
    (another user on the host) cannot drain, loopback or not."""
    drain_token_path(int(port)).unlink()
    assert main(["drain", "--port", port, "--timeout", "1"]) == 1
    assert "no drain token" in capsys.readouterr().err
    assert not health.draining


# --------------------------------------------------------------- drain --span
def free_base(width: int) -> int:
    """A base port such that ``base .. base + width - 1`` are all free right now."""
    for _ in range(100):
        base = int(free_port())
        if base + width > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for p in range(base, base + width):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    raise RuntimeError("no free range of ports")


def workers_at(base: int, n: int, endpoints: list[Endpoint]) -> list[Health]:
    """``n`` stream-worker endpoints on ``base + 2 ...`` (the worker role's ports)."""
    healths = []
    for _ in range(n):
        h = Health(STALL_S)
        m = ActorMetrics("worker", dict, driver_families)
        e = serve(MetricsSettings(host="127.0.0.1", port=base, stall_s=STALL_S), "worker",
                  m.registry, h)  # fmt: skip
        assert e is not None
        endpoints.append(e)
        healths.append(h)
    return healths


def drains_at_once(h: Health) -> None:
    h.on_drain = lambda: setattr(h, "drained", True)


def test_drain_span_drains_every_worker_of_a_pod(
    endpoints: list[Endpoint], capsys: pytest.CaptureFixture[str]
) -> None:
    base = free_base(6)
    healths = workers_at(base, 2, endpoints)
    for h in healths:
        drains_at_once(h)
    # three ports: the two workers and one nothing listens on
    assert main(["drain", "--port", str(base + 2), "--span", "3", "--timeout", "5"]) == 0
    assert all(h.draining and h.drained for h in healths)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[:2] == [f"{base + 2}: drained", f"{base + 3}: drained"]
    assert lines[2].startswith(f"{base + 4}: nothing to drain")


def test_drain_span_fails_when_one_worker_does_not_drain(
    endpoints: list[Endpoint], capsys: pytest.CaptureFixture[str]
) -> None:
    base = free_base(6)
    quick, stuck = workers_at(base, 2, endpoints)
    drains_at_once(quick)
    assert main(["drain", "--port", str(base + 2), "--span", "2", "--timeout", "0.2"]) == 1
    assert quick.drained
    assert stuck.draining
    assert not stuck.drained
    err = capsys.readouterr().err
    assert f"{base + 3}: not drained after 0.2s" in err


def test_drain_span_below_one_is_rejected() -> None:
    """``--span 0`` drains no port at all and would report success to a preStop hook."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["drain", "--port", "9466", "--span", "0"])
