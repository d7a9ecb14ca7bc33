"""What the control client builds and reads back, as plain values (no I/O).

:func:`build_command` makes a :class:`~streamlabel.schemas.commands.Command`
(a fresh id, who, when); :func:`find_class` finds a class by id, name or alias
in the states read from ``classes``; :class:`HistoryEntry` is one change of a
class on that changelog; :func:`current_unknowns` picks the items whose current
label is ``unknown`` and :class:`UnknownSample` shows one with its nearest
classes by name.

Example:
    >>> command = build_command("rename", issued_by="ana", class_id="d-3", name="billing")
    >>> command.kind, command.key, command.issued_by, len(command.command_id)
    ('rename', 'd-3', 'ana', 32)
    >>> try:
    ...     build_command("merge", issued_by="ana", class_id="d-3")
    ... except InvalidCommandError as exc:
    ...     print(exc)
    invalid merge command: a merge command needs target
"""

from __future__ import annotations

import getpass
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from streamlabel.errors import BrokerError, StreamlabelError
from streamlabel.schemas import ClassEvent, ClassState, LabelRecord
from streamlabel.schemas.commands import Command, CommandKind, CommandResult

__all__ = [
    "CommandTimeoutError",
    "HistoryEntry",
    "InvalidCommandError",
    "NearestClass",
    "UnknownSample",
    "build_command",
    "current_unknowns",
    "find_class",
    "os_user",
]


class InvalidCommandError(StreamlabelError, ValueError):
    """A command that cannot be built (a field its kind needs is missing or invalid)."""


class CommandTimeoutError(BrokerError):
    """No answer to a command on ``command_results`` in time.

    Attributes:
        missing: the ids of the commands not answered.
        answered: the results that did arrive (of several commands sent together).
    """

    def __init__(
        self, message: str, missing: Iterable[str], answered: Iterable[CommandResult] = ()
    ) -> None:
        super().__init__(message)
        self.missing = list(missing)
        self.answered = list(answered)


def os_user() -> str:
    """The operating system's user name (``streamlabel`` when it has none)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (a bare container)
        return "streamlabel"


def build_command(
    kind: CommandKind, *, issued_by: str, issued_at: float | None = None, **fields: Any
) -> Command:
    """A command with a fresh id (a uuid4's hex), issued now unless ``issued_at`` is given.

    Args:
        kind: what to do (``rename``, ``merge``...).
        issued_by: who asks.
        issued_at: epoch seconds (default: now).
        fields: the command's other fields (``class_id``, ``name``, ``item_ids``...).

    Raises:
        InvalidCommandError: a field the kind needs is missing, or one is invalid.
    """
    try:
        return Command(
            command_id=uuid.uuid4().hex,
            kind=kind,
            issued_by=issued_by,
            issued_at=time.time() if issued_at is None else issued_at,
            **fields,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        msg = str(error["msg"]).removeprefix("Value error, ")
        raise InvalidCommandError(
            f"invalid {kind} command: {f'{where}: ' if where else ''}{msg}"
        ) from None


def find_class(states: Mapping[str, ClassState], ref: str) -> ClassState | None:
    """The class ``ref`` names: by id, else by name, else by alias (an active class first).

    Merges are not followed: a merged class's id shows that class (its
    ``merged_into`` names where it went).

    Example:
        >>> from streamlabel.schemas import ClassState
        >>> def state(cid, name, status="known", aliases=()):
        ...     return ClassState(class_id=cid, name=name, status=status, origin="feedback",
        ...                       count=1, aliases=aliases, created_version=1,
        ...                       updated_version=1, created_at=0, updated_at=0)
        >>> states = {"a": state("a", "x", "retired"), "b": state("b", "x", aliases=("y",))}
        >>> find_class(states, "a").class_id, find_class(states, "x").class_id
        ('a', 'b')
        >>> find_class(states, "y").class_id, find_class(states, "z")
        ('b', None)
    """
    if ref in states:
        return states[ref]
    for matches in (
        [s for s in states.values() if s.name == ref],
        [s for s in states.values() if ref in s.aliases],
    ):
        if matches:
            active = [s for s in matches if s.status != "retired"]
            return min(active or matches, key=lambda s: s.class_id)
    return None


@dataclass(frozen=True)
class HistoryEntry:
    """One change of a class, as the ``classes`` changelog records it.

    Attributes:
        kind: created, updated, renamed, merged or retired.
        class_id: the class the event is about (another one when this class was
            involved in its change: a merge's target names its source in ``related``).
        name: the class's name after the change.
        status: its status after the change.
        count: its examples after the change.
        store_version: the store version of the change.
        cause: what made it (feedback, discovery, operator, merge...).
        related: the other classes involved.
        at: when, epoch seconds (the learner's clock).
    """

    kind: str
    class_id: str
    name: str
    status: str
    count: int
    store_version: int
    cause: str | None
    related: tuple[str, ...]
    at: float

    @classmethod
    def of(cls, event: ClassEvent) -> HistoryEntry:
        st = event.state
        return cls(
            kind=event.kind, class_id=event.class_id, name=st.name, status=st.status,
            count=st.count, store_version=event.store_version, cause=event.cause,
            related=event.related, at=st.updated_at,
        )  # fmt: skip


@dataclass(frozen=True)
class NearestClass:
    """One of the classes nearest an item, with its similarity."""

    class_id: str
    name: str | None
    """Its name on ``classes`` (None: not found there)."""
    score: float


@dataclass(frozen=True)
class UnknownSample:
    """An item whose current label is ``unknown``, with its text and nearest classes.

    Attributes:
        item_id: the item.
        text: its text, from ``unknowns`` (None: not found there, or it had none).
        score: similarity to the nearest class.
        revision: the revision of its current label.
        labelled_at: when that label was emitted, epoch seconds.
        nearest: the nearest classes, best first (the label's ``top_k``).
    """

    item_id: str
    text: str | None
    score: float
    revision: int
    labelled_at: float
    nearest: tuple[NearestClass, ...]

    @classmethod
    def of(cls, label: LabelRecord, text: str | None, names: Mapping[str, str]) -> UnknownSample:
        nearest = tuple(
            NearestClass(s.class_id, names.get(s.class_id), s.score) for s in label.top_k
        )
        return cls(label.item_id, text, label.score, label.revision, label.emitted_at, nearest)


def current_unknowns(current: Iterable[LabelRecord], n: int) -> list[LabelRecord]:
    """The ``n`` most recently emitted of the current labels that are ``unknown``.

    Args:
        current: each item's current label (its highest revision).
        n: how many (the newest first).
    """
    unknown = [r for r in current if r.is_unknown]
    unknown.sort(key=lambda r: (r.emitted_at, r.item_id), reverse=True)
    return unknown[: max(n, 0)]
