"""A console report: one self-contained HTML file of the Classes, Map, Unknowns and
Drift sections (``streamlabel report --out report.html``).

It renders the live console's section templates from the same views, with the
stylesheets, uPlot and the map's script inlined and the map's points embedded
as JSON: the file makes no request, so it opens offline and travels as an
attachment.
"""

from __future__ import annotations

import datetime as dt
import json

from streamlabel.ui.assets import static_text, templates
from streamlabel.ui.pages import classes_context, drift_context, map_context, unknowns_context
from streamlabel.ui.views import ConsoleViews

__all__ = ["render_report"]


def _script_json(value: object) -> str:
    """JSON safe inside a ``<script>`` element (no ``</`` can close it early)."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def render_report(views: ConsoleViews, *, source: str = "", unknowns: int = 100) -> str:
    """The report's HTML.

    Args:
        views: what was read from the deployment's topics.
        source: where it was read (shown in the header: bootstrap servers, prefix).
        unknowns: how many unknown items the Unknowns section lists.
    """
    ctx: dict[str, object] = {"live": False, "actions": False, "source": source,
                              "overview": views.overview()}  # fmt: skip
    ctx.update(classes_context(views))
    ctx.update(unknowns_context(views, unknowns))
    ctx.update(drift_context(views))
    mapped = map_context(views)
    ctx.update(mapped)
    ctx["map_json"] = _script_json(mapped["map"])
    ctx["generated"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    ctx["inline_css"] = static_text("vendor/uPlot.min.css") + "\n" + static_text("app.css")
    ctx["inline_js"] = static_text("vendor/uPlot.iife.min.js") + "\n" + static_text("map.js")
    return templates().get_template("report.html").render(ctx)
