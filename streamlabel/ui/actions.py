"""The console's actions: each a command sent through the control plane, its result
shown in place.

``POST /actions/{verb}`` with a form (URL-encoded, as htmx sends it): ``rename``
(class_id, name), ``merge`` (class_id, target), ``retire`` (class_id),
``add_class`` (name, description), ``threshold`` (class_id, value), ``teach``
(label and item_ids: teach items a class, or a new name to make a class of
them; also how a label is confirmed or corrected). The answer is a fragment
saying applied or rejected (with the reason) and, when applied, an
``HX-Trigger`` that makes the page refetch what changed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from streamlabel.errors import StreamlabelError
from streamlabel.schemas.commands import CommandKind, CommandResult
from streamlabel.ui.assets import templates
from streamlabel.ui.console import Console

__all__ = ["action_endpoint", "command_fields"]

_MAX_FORM = 256 * 1024


def command_fields(verb: str, form: dict[str, list[str]]) -> tuple[CommandKind, dict[str, Any]]:
    """The command kind and fields of an action's form.

    Raises:
        ValueError: an unknown action, or a field it needs is missing or invalid.

    Example:
        >>> command_fields("teach", {"label": ["billing"], "item_ids": ["i1", "i2"]})
        ('teach', {'label': 'billing', 'item_ids': ('i1', 'i2')})
    """

    def one(name: str) -> str:
        value = (form.get(name) or [""])[-1].strip()
        if not value:
            raise ValueError(f"{verb} needs {name}")
        return value

    if verb == "rename":
        return "rename", {"class_id": one("class_id"), "name": one("name")}
    if verb == "merge":
        return "merge", {"class_id": one("class_id"), "target": one("target")}
    if verb == "retire":
        return "retire", {"class_id": one("class_id")}
    if verb == "add_class":
        return "add_class", {"name": one("name"), "description": one("description")}
    if verb == "threshold":
        try:
            value = float(one("value"))
        except ValueError as exc:
            raise ValueError(f"threshold: {exc}") from None
        return "set_threshold", {"class_id": one("class_id"), "threshold": value}
    if verb == "teach":
        ids = tuple(i.strip() for i in form.get("item_ids", []) if i.strip())
        if not ids:
            raise ValueError("teach needs at least one item (select some)")
        return "teach", {"label": one("label"), "item_ids": ids}
    raise ValueError(f"no such action: {verb!r}")


def _triggers(result: CommandResult) -> str:
    return "classes-changed, unknowns-changed, results-changed"


async def action_endpoint(request: Request) -> Response:
    """``POST /actions/{verb}``: sends the command, answers with its result."""
    console: Console = request.app.state.console
    verb = request.path_params["verb"]
    body = await request.body()
    ctx: dict[str, Any] = {"verb": verb}
    headers: dict[str, str] = {}
    if len(body) > _MAX_FORM:
        ctx["error"] = "the form is too large"
    else:
        form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        try:
            kind, fields = command_fields(verb, form)
            result = await run_in_threadpool(console.send, kind, **fields)
        except (ValueError, StreamlabelError) as exc:
            ctx["error"] = str(exc)
        else:
            ctx["result"] = result
            if result.status == "applied":
                headers["HX-Trigger"] = _triggers(result)
    html = templates().get_template("_result.html").render(ctx)
    return HTMLResponse(html, status_code=200, headers=headers)
