"""The console's token gate: with a token set, every request must carry it.

A request is let through with ``Authorization: Bearer TOKEN``, or the cookie the
gate sets; ``?token=TOKEN`` on any page sets that cookie (HttpOnly, SameSite
Strict) and redirects to the same page without the token in its address.
Anything else is answered 401. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["COOKIE", "TokenGate"]

COOKIE = "streamlabel_console"


class TokenGate:
    """ASGI middleware that admits only requests carrying ``token``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("an empty token admits nobody: pass none instead")
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        given = [v for k, v in query if k == "token"]
        if given and self._ok(given[-1]):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = scope.get("path", "/") + (f"?{rest}" if rest else "")
            await _respond(send, 303, b"", [
                (b"location", location.encode()),
                (b"set-cookie", f"{COOKIE}={given[-1]}; Path=/; HttpOnly; SameSite=Strict"
                 .encode()),
            ])  # fmt: skip
            return
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header: as if none
            cookie = SimpleCookie()
        kept = cookie[COOKIE].value if COOKIE in cookie else None
        if any(c is not None and self._ok(c) for c in (bearer, kept)):
            await self.app(scope, receive, send)
            return
        body = (
            b"401: the streamlabel console needs its token (ui.token): send "
            b"'Authorization: Bearer TOKEN' or open any page once with ?token=TOKEN\n"
        )
        await _respond(send, 401, body, [(b"content-type", b"text/plain; charset=utf-8"),
                                         (b"www-authenticate", b"Bearer")])  # fmt: skip

    def _ok(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
