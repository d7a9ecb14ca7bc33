"""Who may drain an endpoint, and how long a client may take (``ops.endpoint``,
``ops.drain_token``, ``ops.client``), with real requests on 127.0.0.1.

* ``serve`` writes a random drain token to ``drain-<port>.token`` (0600, in a
  0700 directory of this user) and removes it on close;
* ``POST /drain`` without the token, or with another one, is 401 and drains
  nothing, even from loopback; ``request_drain`` reads the token and drains,
  and says where it looked when there was none;
* a token directory that is a link or too open is refused or tightened; an
  endpoint that cannot write its token still serves, and refuses every drain;
* a client that sends nothing within the request timeout loses its connection,
  and other clients are served meanwhile.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry

from streamlabel.ops.client import request_drain
from streamlabel.ops.drain_token import drain_token_dir, drain_token_path, read_drain_token
from streamlabel.ops.endpoint import REQUEST_TIMEOUT_S, Endpoint, Health, serve
from streamlabel.settings.deployment import MetricsSettings

HOST = "127.0.0.1"


@pytest.fixture
def health() -> Health:
    return Health(stall_s=60.0)


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    return tmp_path / "tokens"


@pytest.fixture
def endpoint(health: Health, tokens: Path) -> Iterator[Endpoint]:
    e = serve(MetricsSettings(host=HOST, port=0), "worker", CollectorRegistry(), health,
              token_dir=tokens, request_timeout_s=0.5)  # fmt: skip
    assert e is not None
    yield e
    e.close()


def post_drain(url: str, authorization: str | None) -> int:
    headers = {"Authorization": authorization} if authorization is not None else {}
    req = urllib.request.Request(f"{url}/drain", method="POST", data=b"", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


# ------------------------------------------------------------------ the token
def test_serve_writes_a_private_token_per_port_and_close_removes_it(
    health: Health, tokens: Path
) -> None:
    e = serve(MetricsSettings(host=HOST, port=0), "worker", CollectorRegistry(), health,
              token_dir=tokens)  # fmt: skip
    assert e is not None
    path = drain_token_path(e.port, tokens)
    try:
        assert e.token_path == path
        token = read_drain_token(e.port, tokens)
        assert token is not None
        assert len(token) >= 32
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(tokens.stat().st_mode) == 0o700
    finally:
        e.close()
    assert not path.exists()


def test_each_endpoint_draws_its_own_token(health: Health, tokens: Path) -> None:
    a = serve(MetricsSettings(host=HOST, port=0), "worker", CollectorRegistry(), health,
              token_dir=tokens)  # fmt: skip
    b = serve(MetricsSettings(host=HOST, port=0), "worker", CollectorRegistry(), health,
              token_dir=tokens)  # fmt: skip
    assert a is not None
    assert b is not None
    try:
        assert read_drain_token(a.port, tokens) != read_drain_token(b.port, tokens)
    finally:
        a.close()
        b.close()


def test_the_default_token_directory_is_per_user() -> None:
    assert drain_token_dir().name == f"streamlabel-{os.getuid()}"


# ------------------------------------------------------------------- POST /drain
@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer not-the-token", "Basic abc"],
    ids=["none", "empty", "bearer-alone", "another-token", "basic"],
)  # fmt: skip
def test_a_drain_from_loopback_without_the_token_is_refused(
    endpoint: Endpoint, health: Health, authorization: str | None
) -> None:
    calls: list[int] = []
    health.on_drain = lambda: calls.append(1)
    assert post_drain(endpoint.url, authorization) == 401
    assert calls == []
    assert not health.draining


def test_a_drain_with_the_token_drains(endpoint: Endpoint, health: Health, tokens: Path) -> None:
    token = read_drain_token(endpoint.port, tokens)
    assert post_drain(endpoint.url, f"Bearer {token}") == 202
    assert health.draining


def test_request_drain_sends_the_token_it_finds(
    endpoint: Endpoint, health: Health, tokens: Path
) -> None:
    health.on_drain = lambda: setattr(health, "drained", True)
    assert request_drain(HOST, endpoint.port, timeout_s=5, poll_s=0.05, token_dir=tokens) == (
        True,
        "drained",
    )


def test_request_drain_without_a_token_says_where_it_looked(
    endpoint: Endpoint, health: Health, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    ok, what = request_drain(HOST, endpoint.port, timeout_s=2, poll_s=0.05, token_dir=elsewhere)
    assert not ok
    assert "401" in what
    assert str(drain_token_path(endpoint.port, elsewhere)) in what
    assert not health.draining


def test_request_drain_with_a_stale_token_is_refused(
    endpoint: Endpoint, health: Health, tokens: Path
) -> None:
    drain_token_path(endpoint.port, tokens).write_text("stale")
    ok, what = request_drain(HOST, endpoint.port, timeout_s=2, poll_s=0.05, token_dir=tokens)
    assert not ok
    assert "was refused" in what
    assert not health.draining


# ------------------------------------------------------------ unsafe directories
def test_a_token_directory_open_to_others_is_tightened(health: Health, tokens: Path) -> None:
    tokens.mkdir(mode=0o777)
    os.chmod(tokens, 0o777)
    e = serve(MetricsSettings(host=HOST, port=0), "worker", CollectorRegistry(), health,
              token_dir=tokens)  # fmt: skip
    assert e is not None
    try:
        assert stat.S_IMODE(tokens.stat().st_mode) == 0o700
        assert e.token_path is not None
    finally:
        e.close()


def test_an_endpoint_whose_token_directory_is_a_link_serves_but_cannot_be_drained(
    health: Health, tmp_path: Path
) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with structlog.testing.capture_logs() as logs:
        e = serve(MetricsSettings(host=HOST, port=0), "worker", CollectorRegistry(), health,
                  token_dir=link)  # fmt: skip
    assert e is not None
    try:
        assert e.token_path is None
        assert list(real.iterdir()) == []
        assert "drain_token_unwritable" in [x["event"] for x in logs]
        with urllib.request.urlopen(f"{e.url}/healthz", timeout=5) as resp:
            assert resp.status == 200
        assert post_drain(e.url, "Bearer ") == 401
        assert not health.draining
    finally:
        e.close()


# --------------------------------------------------------------------- timeouts
def test_the_default_request_timeout_is_bounded() -> None:
    assert 0 < REQUEST_TIMEOUT_S <= 30


def test_a_silent_client_loses_its_connection_after_the_request_timeout(
    endpoint: Endpoint,
) -> None:
    with socket.create_connection((HOST, endpoint.port), timeout=5) as s:
        s.sendall(b"GET /metr")  # and never the rest
        t0 = time.monotonic()
        try:
            data = s.recv(1024)
        except TimeoutError:
            pytest.fail("the server kept a silent connection open past its request timeout")
        assert data == b""  # closed by the server
        assert time.monotonic() - t0 < 4


def test_a_silent_client_does_not_keep_others_from_being_served(endpoint: Endpoint) -> None:
    held = [socket.create_connection((HOST, endpoint.port), timeout=5) for _ in range(3)]
    try:
        answered = threading.Event()

        def ask() -> None:
            with urllib.request.urlopen(f"{endpoint.url}/healthz", timeout=5) as resp:
                if resp.status == 200:
                    answered.set()

        t = threading.Thread(target=ask)
        t.start()
        t.join(timeout=5)
        assert answered.is_set()
    finally:
        for s in held:
            s.close()
