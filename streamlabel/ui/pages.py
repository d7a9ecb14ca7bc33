"""The console's pages and the sections they are made of.

Each section's context comes from one function of the views, so the live pages
and ``streamlabel report`` render the same templates from the same data:
:func:`classes_context`, :func:`unknowns_context`, :func:`map_context`,
:func:`drift_context`. The handlers render a whole page, or one section as a
fragment (``/fragments/<section>``) that a page fetches again when its live
update says the section changed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from streamlabel.ui.assets import templates
from streamlabel.ui.console import Console
from streamlabel.ui.views import ConsoleViews

__all__ = [
    "PAGES",
    "classes_context",
    "drift_context",
    "fragment",
    "map_context",
    "map_json",
    "page",
    "unknowns_context",
]

PAGES = {
    "overview": "Overview",
    "classes": "Classes",
    "unknowns": "Unknowns",
    "map": "Map",
    "drift": "Drift",
}
"""Page name -> title, in the navigation's order."""


def when(t: float | None) -> str:
    """An epoch time as UTC ``YYYY-MM-DD HH:MM:SS`` (empty for none)."""
    if not t:
        return ""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def classes_context(views: ConsoleViews) -> dict[str, Any]:
    classes = views.classes()
    return {
        "classes": classes,
        "awaiting": sum(c.awaiting_review for c in classes),
        "names": views.class_names(),
        "store_version": views.store_version,
        "when": when,
    }


def unknowns_context(views: ConsoleViews, n: int = 100) -> dict[str, Any]:
    return {
        "unknowns": views.unknowns(n),
        "recent_labels": views.recent_labels(),
        "names": views.class_names(),
        "when": when,
    }


def drift_context(views: ConsoleViews) -> dict[str, Any]:
    return {"incidents": views.incident_list(), "names": views.class_names(), "when": when}


def map_context(views: ConsoleViews) -> dict[str, Any]:
    projected = views.projection()
    return {"map": projected.as_json(), "points": len(projected.points),
            "store_version": views.store_version}  # fmt: skip


SECTIONS = {
    "classes": classes_context,
    "unknowns": unknowns_context,
    "drift": drift_context,
}


def _results(console: Console) -> dict[str, Any]:
    return {"results": list(console.views.results)[:10], "when": when}


def page(name: str) -> Any:
    """The handler of page ``name``."""

    async def handler(request: Request) -> Response:
        console: Console = request.app.state.console
        ctx: dict[str, Any] = {"page": name, "pages": PAGES, "live": True,
                               "actions": console.commander is not None}  # fmt: skip
        if name in SECTIONS:
            ctx.update(SECTIONS[name](console.views))
        if name == "map":
            ctx.update(map_context(console.views))
        if name == "overview":
            ctx["readings"] = console.readings()
            ctx.update(_results(console))
        ctx["overview"] = console.views.overview()
        return HTMLResponse(templates().get_template(f"{name}.html").render(ctx))

    return handler


async def fragment(request: Request) -> Response:
    """``GET /fragments/{section}``: one section, for a page to swap in."""
    console: Console = request.app.state.console
    section = request.path_params["section"]
    if section == "results":
        ctx = _results(console)
    elif section in SECTIONS:
        ctx = SECTIONS[section](console.views)
    else:
        return HTMLResponse("no such section", status_code=404)
    ctx.update(live=True, actions=console.commander is not None)
    return HTMLResponse(templates().get_template(f"_{section}.html").render(ctx))


async def map_json(request: Request) -> Response:
    """``GET /map.json``: the projected points (columns) and their counts."""
    console: Console = request.app.state.console
    ctx = map_context(console.views)
    return JSONResponse({**ctx["map"], "store_version": ctx["store_version"]})


async def overview_json(request: Request) -> Response:
    """``GET /api/overview``: the overview's numbers and series, with the readings."""
    console: Console = request.app.state.console
    return JSONResponse({**console.views.overview(), "stats": console.readings()})
