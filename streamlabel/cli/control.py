"""The operator's commands to a running deployment: ``classes``, ``feedback``, ``unknowns``.

Each builds a :class:`~streamlabel.kafka.control.Client` from the common
flags (``--config``, ``--bootstrap-servers``, ``--topic-prefix``), prints a
small aligned table (or, with ``--json``, one JSON object per line) and returns
an exit code: 0 applied, 1 rejected by the learner (its reason on stderr),
3 no answer within ``--timeout``; other errors reach :func:`~streamlabel.cli.main.main`
(exit 2). Kafka is all they need: no model, Ray or FAISS is imported.

Example:
    >>> print("\\n".join(table(["ID", "NAME"], [["d-3", "billing"], ["novel-1a", "linq"]])))
    ID        NAME
    d-3       billing
    novel-1a  linq
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streamlabel.errors import StreamlabelError
from streamlabel.kafka.control import Client
from streamlabel.kafka.control_views import (
    CommandTimeoutError,
    InvalidCommandError,
    UnknownSample,
    find_class,
)
from streamlabel.schemas import ClassState, Feedback
from streamlabel.schemas.commands import Command, CommandResult

__all__ = [
    "EXIT_REJECTED",
    "EXIT_TIMEOUT",
    "FeedbackRow",
    "cmd_classes",
    "cmd_feedback",
    "cmd_unknowns",
    "read_feedback_file",
    "table",
]

EXIT_REJECTED = 1
"""A command the learner rejected."""
EXIT_TIMEOUT = 3
"""No answer from the learner in time."""

Out = Callable[[str], None]
_VECTORS = {"mean", "sub_prototypes", "exemplars"}


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of an aligned table (two spaces between columns; the last one not padded)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]


def _client(args: Any) -> Client:
    from streamlabel.cli.runtime import settings_from_args

    return Client(settings=settings_from_args(args), issued_by=getattr(args, "issued_by", None))


def _run(args: Any, client: Client | None, body: Callable[[Client], int]) -> int:
    """Runs ``body`` with the given client, or one built from ``args`` (closed after)."""
    if client is not None:
        return body(client)
    with _client(args) as built:
        return body(built)


# ------------------------------------------------------------------ classes
def cmd_classes(args: Any, out: Out = print, *, client: Client | None = None) -> int:
    """``streamlabel classes list|show|rename|merge|retire|add|split|threshold``."""
    verb = args.verb
    if verb == "list":
        return _run(args, client, lambda c: _list(c, args, out))
    if verb == "show":
        return _run(args, client, lambda c: _show(c, args, out))
    commands: dict[str, Callable[[Client], Command]] = {
        "rename": lambda c: c.command("rename", class_id=args.id, name=args.name),
        "merge": lambda c: c.command("merge", class_id=args.source, target=args.target),
        "retire": lambda c: c.command("retire", class_id=args.id),
        "add": lambda c: c.command("add_class", name=args.name, description=args.description),
        "split": lambda c: c.command(
            "split_off", class_id=args.id, item_ids=tuple(args.items), name=args.name
        ),
        "threshold": lambda c: c.command("set_threshold", class_id=args.id, threshold=args.value),
    }
    return _run(args, client, lambda c: _answer(c, [commands[verb](c)], args, out))


def _state_row(s: ClassState) -> dict[str, Any]:
    return s.model_dump(mode="json", exclude=_VECTORS)


def _list(client: Client, args: Any, out: Out) -> int:
    states = [s for s in client.classes().values() if args.all or s.status != "retired"]
    rows = [
        [s.class_id, s.name, s.status, s.origin, str(s.count), _num(s.threshold_override),
         ", ".join(s.keywords[:4])]
        for s in states
    ]  # fmt: skip
    return _listing(
        args, out, [_state_row(s) for s in states], f"no classes on {client.topics.classes!r}",
        ["ID", "NAME", "STATUS", "ORIGIN", "COUNT", "THRESHOLD", "KEYWORDS"], rows,
    )  # fmt: skip


def _show(client: Client, args: Any, out: Out) -> int:
    state = find_class(client.classes(), args.id)
    if state is None:
        raise StreamlabelError(f"no class {args.id!r} on {client.topics.classes!r}")
    history = client.class_history(state.class_id)
    if args.json:
        out(json.dumps({**_state_row(state), "history": [asdict(h) for h in history]}))
        return 0
    fields = [
        ("class", state.class_id), ("name", state.name), ("status", state.status),
        ("origin", state.origin), ("count", str(state.count)),
        ("keywords", ", ".join(state.keywords) or "-"),
        ("aliases", ", ".join(state.aliases) or "-"),
        ("threshold override", _num(state.threshold_override)),
        ("merged into", state.merged_into or "-"), ("description", state.description or "-"),
    ]  # fmt: skip
    for line in table(["", ""], fields)[1:]:
        out(line)
    out(f"exemplar texts ({len(state.exemplar_texts)}):")
    for text in state.exemplar_texts:
        out(f"  - {_short(text, 100)}")
    out("history:")
    rows = [
        [str(h.store_version), h.kind, h.class_id, h.name, h.status, str(h.count),
         h.cause or "-", ", ".join(h.related) or "-", _when(h.at)]
        for h in history
    ]  # fmt: skip
    headers = ["VERSION", "KIND", "CLASS", "NAME", "STATUS", "COUNT", "CAUSE", "RELATED", "AT"]
    for line in table(headers, rows):
        out(f"  {line}")
    return 0


# ------------------------------------------------------------------ answers
def _answer(client: Client, commands: list[Command], args: Any, out: Out) -> int:
    """Sends commands, prints each answer; the exit code of the worst."""
    try:
        results = client.send_many(commands, timeout=args.timeout)
    except CommandTimeoutError as exc:
        _print_results(exc.answered, args, out)
        print(f"streamlabel: error: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    _print_results(results, args, out)
    return EXIT_REJECTED if any(r.status == "rejected" for r in results) else 0


def _print_results(results: Sequence[CommandResult], args: Any, out: Out) -> None:
    for r in results:
        if args.json:
            out(r.model_dump_json())
        elif r.status == "applied":
            note = f"; {r.reason}" if r.reason else ""
            out(f"applied: {r.kind} ({len(r.events)} class events, {r.revisions} labels "
                f"revised, store version {r.store_version}{note})")  # fmt: skip
        if r.status == "rejected":
            print(f"streamlabel: rejected: {r.kind}: {r.reason}", file=sys.stderr)


# ----------------------------------------------------------------- feedback
@dataclass(frozen=True)
class FeedbackRow:
    """One example of a feedback file: an item id and/or a text, and its label."""

    where: str
    label: str
    item_id: str | None = None
    text: str | None = None


def read_feedback_file(path: str | Path) -> list[FeedbackRow]:
    """The examples of a ``.jsonl`` file (objects with ``label`` and ``item_id`` and/or
    ``text``) or a ``.tsv`` file (header ``text<TAB>label``, standard quoting).

    Raises:
        StreamlabelError: missing file, another format, or a malformed line (named).
    """
    from streamlabel.datasets import infer_format, read_tsv

    fmt = infer_format(path)
    if fmt == "tsv":
        rows = read_tsv(path)
        pairs = zip(rows.texts, rows.labels, strict=True)
        return [FeedbackRow(f"{path}: row {i}", y, text=x) for i, (x, y) in enumerate(pairs, 1)]
    if fmt != "jsonl":
        raise StreamlabelError(f"{path}: feedback needs labels: a .jsonl or a .tsv file")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise StreamlabelError(f"{path}: cannot read it: {exc}") from None
    out = [_json_row(f"{path}:{n}", raw) for n, raw in enumerate(lines, start=1) if raw.strip()]
    if not out:
        raise StreamlabelError(f"{path}: no examples")
    return out


def _json_row(where: str, raw: str) -> FeedbackRow:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StreamlabelError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise StreamlabelError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    values: dict[str, str | None] = {}
    for key in ("label", "item_id", "text"):
        value = obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and key == "item_id":
            value = str(value)
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise StreamlabelError(f"{where}: {key!r} must be a non-empty string")
        values[key] = value
    label = values["label"]
    if label is None:
        raise StreamlabelError(f"{where}: no 'label'")
    if values["item_id"] is None and values["text"] is None:
        raise StreamlabelError(f"{where}: no 'item_id' or 'text'")
    return FeedbackRow(where, label, item_id=values["item_id"], text=values["text"])


def cmd_feedback(args: Any, out: Out = print, *, client: Client | None = None) -> int:
    """``streamlabel feedback``: teach commands (answered), or feedback records (--no-wait)."""
    if args.file is not None:
        if args.label is not None:
            raise StreamlabelError("--label is for --item or --text; a file names its labels")
        rows = read_feedback_file(args.file)  # the whole file before connecting
    elif args.label is None:
        raise StreamlabelError("--item and --text need --label")
    else:
        rows = [FeedbackRow("--item" if args.item else "--text", args.label, args.item, args.text)]
    return _run(args, client, lambda c: _feedback(c, rows, args, out))


def _feedback(client: Client, rows: list[FeedbackRow], args: Any, out: Out) -> int:
    if args.no_wait:
        sent = client.produce_feedback([_feedback_record(client, r) for r in rows])
        print(f"sent {sent} feedback records to {client.topics.feedback!r}", file=sys.stderr)
        return 0
    return _answer(client, [_teach_command(client, r) for r in rows], args, out)


def _teach_command(client: Client, row: FeedbackRow) -> Command:
    try:
        ids = (row.item_id,) if row.item_id else ()
        return client.command("teach", label=row.label, text=row.text, item_ids=ids)
    except InvalidCommandError as exc:
        raise StreamlabelError(f"{row.where}: {exc}") from None


def _feedback_record(client: Client, row: FeedbackRow) -> Feedback:
    try:
        return Feedback(item_id=row.item_id, text=row.text, label=row.label,
                        source=client.issued_by)  # fmt: skip
    except ValidationError as exc:
        msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise StreamlabelError(f"{row.where}: invalid feedback: {msg}") from None


# ----------------------------------------------------------------- unknowns
def cmd_unknowns(args: Any, out: Out = print, *, client: Client | None = None) -> int:
    """``streamlabel unknowns sample``: recent unknown items with their nearest classes."""
    return _run(args, client, lambda c: _sample(c, args, out))


def _sample(client: Client, args: Any, out: Out) -> int:
    samples = client.unknowns_sample(args.n)
    # labelled before any class existed: no nearest class, so no score to show
    rows = [
        [s.item_id, f"{s.score:.3f}" if s.nearest else "-", _short(s.text or "-", 60), _nearest(s)]
        for s in samples
    ]
    return _listing(
        args, out, [asdict(s) for s in samples],
        f"no item's current label is unknown on {client.topics.labels!r}",
        ["ITEM", "SCORE", "TEXT", "NEAREST"], rows,
    )  # fmt: skip


def _listing(
    args: Any,
    out: Out,
    records: list[dict[str, Any]],
    empty: str,
    headers: list[str],
    rows: list[list[str]],
) -> int:
    """JSON lines with ``--json``, else an aligned table (``empty`` on stderr when none)."""
    if args.json:
        for r in records:
            out(json.dumps(r))
    elif not rows:
        print(empty, file=sys.stderr)
    else:
        for line in table(headers, rows):
            out(line)
    return 0


def _nearest(sample: UnknownSample, k: int = 3) -> str:
    return ", ".join(f"{n.name or n.class_id} {n.score:.2f}" for n in sample.nearest[:k]) or "-"


def _short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")
