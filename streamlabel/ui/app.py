"""The console's web app: Starlette routes over a :class:`~streamlabel.ui.console.Console`.

Pages (``/``, ``/classes``, ``/unknowns``, ``/map``, ``/drift``) are rendered on
the server; ``/fragments/<section>`` re-renders one section; ``/events`` streams
live updates; ``/actions/<verb>`` sends a command; ``/map.json`` and
``/api/overview`` serve the data as JSON; ``/static`` the CSS, the scripts and
the vendored libraries. With a token every request goes through
:class:`~streamlabel.ui.auth.TokenGate`.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from streamlabel.ui.actions import action_endpoint
from streamlabel.ui.assets import static_dir
from streamlabel.ui.auth import TokenGate
from streamlabel.ui.console import Console
from streamlabel.ui.events import events_endpoint
from streamlabel.ui.pages import fragment, map_json, overview_json, page

__all__ = ["create_app"]


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


def create_app(console: Console, *, token: str | None = None) -> Starlette:
    """The console's ASGI app over ``console`` (every request needs ``token`` when given)."""
    routes = [
        Route("/", page("overview")),
        Route("/classes", page("classes")),
        Route("/unknowns", page("unknowns")),
        Route("/map", page("map")),
        Route("/drift", page("drift")),
        Route("/fragments/{section}", fragment),
        Route("/map.json", map_json),
        Route("/api/overview", overview_json),
        Route("/events", events_endpoint),
        Route("/actions/{verb}", action_endpoint, methods=["POST"]),
        Route("/healthz", _healthz),
        Mount("/static", StaticFiles(directory=str(static_dir())), name="static"),
    ]
    middleware = [Middleware(TokenGate, token=token)] if token else []
    app = Starlette(routes=routes, middleware=middleware)
    app.state.console = console
    return app
