"""The light clients of an endpoint (no Ray, no Kafka): ``streamlabel healthcheck``
and ``streamlabel drain``.

:func:`request_drain` sends the endpoint's drain token, read from this
user's token directory (:mod:`~streamlabel.ops.drain_token`): the drain works
from the host and the user that run the process, as a pod's ``preStop`` hook
does.
"""

from __future__ import annotations

import contextlib
import errno
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from streamlabel.ops.drain_token import drain_token_path, read_drain_token

__all__ = ["check_health", "drain_ports", "request_drain"]


def _get(url: str, timeout_s: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def check_health(url: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    """GETs a health URL; ``(healthy, what it said)``."""
    try:
        code, body = _get(url, timeout_s)
    except OSError as exc:
        return False, f"{url}: {exc}"
    return code == 200, f"{url}: {code} {body.decode(errors='replace').strip()}"


def drain_ports(
    host: str, ports: Iterable[int], timeout_s: float, token_dir: Path | None = None
) -> tuple[bool, str]:
    """Drains every endpoint of ``ports`` at once (:func:`request_drain` each).

    Returns:
        ``(all drained, one line per port)``.
    """
    from concurrent.futures import ThreadPoolExecutor

    ports = list(ports)
    with ThreadPoolExecutor(max_workers=max(1, len(ports))) as pool:
        results = list(
            pool.map(lambda p: request_drain(host, p, timeout_s, token_dir=token_dir), ports)
        )
    lines = [f"{p}: {what}" for p, (_, what) in zip(ports, results, strict=True)]
    return all(ok for ok, _ in results), "\n".join(lines)


def request_drain(
    host: str, port: int, timeout_s: float, poll_s: float = 0.5, *, token_dir: Path | None = None
) -> tuple[bool, str]:
    """Asks the process behind ``host:port`` to drain and waits until it has.

    The request carries the endpoint's drain token (:func:`.read_drain_token`).
    Nothing listening is success (nothing to drain); so is the process going
    away while draining (the actor was stopped after its loop ended).

    Returns:
        ``(drained, what happened)``; False when ``timeout_s`` passed first.
    """
    url = f"http://{host}:{port}/drain"
    deadline = time.monotonic() + timeout_s
    while True:  # ask; a slow answer (a busy process) is asked again, never taken as done
        token = read_drain_token(port, token_dir)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(url, method="POST", data=b"", headers=headers)
        wait = max(0.5, min(5.0, deadline - time.monotonic()))
        try:
            with urllib.request.urlopen(request, timeout=wait) as resp:
                resp.read()
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                where = drain_token_path(port, token_dir)
                why = (
                    f"its token at {where} was refused"
                    if token
                    else f"no drain token at {where}: drain from the host and user that run it"
                )
                return False, f"{url}: 401 ({why})"
            return False, f"{url}: {exc.code}"
        except OSError as exc:
            if _refused(exc):
                return True, f"nothing to drain at {url} ({exc})"
            if time.monotonic() >= deadline:
                return False, f"{url} did not answer: {exc}"
        time.sleep(poll_s)
    while time.monotonic() < deadline:
        try:
            code, body = _get(url, max(0.5, min(5.0, deadline - time.monotonic())))
        except OSError as exc:
            if _refused(exc):
                return True, "drained (the process is gone)"
            code, body = 0, b""  # a slow answer: ask again
        if code == 200:
            with contextlib.suppress(ValueError):
                if json.loads(body).get("drained"):
                    return True, "drained"
        time.sleep(poll_s)
    return False, f"not drained after {timeout_s:g}s"


def _refused(exc: OSError) -> bool:
    """Nothing listens there (as opposed to a timeout: something is busy)."""
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, ConnectionRefusedError) or (
        isinstance(reason, OSError) and reason.errno == errno.ECONNREFUSED
    )
