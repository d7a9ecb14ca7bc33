"""Live updates: one server-sent event stream per open page.

Each stream sends at most one event per :attr:`Console.interval_s` (one a second
by default), and only when what the page shows changed (or every 15 s, to keep
the connection alive). An event is one JSON object: ``versions`` (counters the
page compares to decide whether to refetch a section), the header's numbers,
and on the overview its series, timeline marks and the runtime's readings.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from streamlabel.ui.console import Console

__all__ = ["event_payload", "events_endpoint"]

KEEPALIVE_S = 15.0


def event_payload(console: Console, page: str) -> dict[str, Any]:
    """What one event of ``page``'s stream carries."""
    views = console.views
    overview = views.overview()
    payload: dict[str, Any] = {"versions": views.versions(), "stats": console.readings()}
    if page == "overview":
        payload["overview"] = overview
        payload["marks"] = [{"at": m.at, "kind": m.kind, "label": m.label, "ref": m.ref}
                            for m in views.marks()]  # fmt: skip
    else:
        payload["overview"] = {k: v for k, v in overview.items() if k != "series"}
    return payload


async def _stream(console: Console, page: str, limit: int | None) -> AsyncIterator[str]:
    last: str | None = None
    last_sent = 0.0
    sent = 0
    while not console.closing.is_set():
        data = json.dumps(event_payload(console, page), separators=(",", ":"))
        now = time.monotonic()
        if data != last or now - last_sent >= KEEPALIVE_S:
            yield f"event: update\ndata: {data}\n\n"
            last, last_sent, sent = data, now, sent + 1
            if limit is not None and sent >= limit:
                return
        await asyncio.sleep(console.interval_s)


async def events_endpoint(request: Request) -> StreamingResponse:
    """``GET /events?page=overview`` (``&limit=N``: close after N events)."""
    console: Console = request.app.state.console
    page = request.query_params.get("page", "overview")
    raw = request.query_params.get("limit")
    limit = int(raw) if raw and raw.isdigit() else None
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(_stream(console, page, limit), media_type="text/event-stream",
                             headers=headers)  # fmt: skip
