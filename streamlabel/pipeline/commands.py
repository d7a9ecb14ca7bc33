"""Applies a person's commands to the store, through the Curator (the single writer).

Each :class:`~streamlabel.schemas.commands.Command` is checked against the
store (an unknown or retired class is rejected with the reason), applied once
(a command id already answered is answered again with the first result, never
applied twice), audited in the Curator's :class:`~.command_log.CommandLog`, and
answered with a :class:`~streamlabel.schemas.commands.CommandResult` in the
output, next to the class events every replica applies.

A rename keeps the class id (the old name stays an alias); a merge makes the
source's id and names aliases of the target (the store's ``resolve`` follows
them). Items already labelled with a renamed or merged class get a revised
label (reason ``renamed`` or ``merged``) from the Curator's item cache.

``set_threshold`` fixes a class's open-set threshold (a number in [-1, 1], in
the store's metric space; the raw-space gate still applies) for every item
labelled from then on; ``threshold: null`` clears it, back to the calibrated
threshold. Labels already published are not revised.

``split_off`` moves items, named by id, out of a class into a new known class
(its id is its name, as for a class created by feedback): their vectors come
from where teach by item id finds them (the item cache, else the unknown
buffer), every one must be remembered and labelled with that class, the
source loses those that were its examples (see
:func:`~streamlabel.core.class_arrays.without`), and each moved item gets a
revised label (reason ``split``).

Example:
    >>> from streamlabel.pipeline.curator import load_settings
    >>> from streamlabel.schemas.commands import Command
    >>> from streamlabel.testing import HashEmbedder, ManualClock
    >>> curator = Curator(load_settings(), HashEmbedder(), clock=ManualClock(0))
    >>> teach = Command(command_id="c1", kind="teach", label="python", text="list sort",
    ...                 issued_by="ana", issued_at=0.0)
    >>> out, result = apply_command(curator, teach, now=1.0)
    >>> result.status, [e.kind for e in out.class_events]
    ('applied', ['created'])
    >>> apply_command(curator, teach, now=2.0)[1] == result  # answered again, not applied
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from pydantic import ValidationError

from streamlabel.errors import EmbeddingError, StoreError, StreamlabelError
from streamlabel.pipeline.batch import decode_raw
from streamlabel.pipeline.cache import CachedItem
from streamlabel.pipeline.curator import Curator
from streamlabel.pipeline.inputs import RawRecord
from streamlabel.pipeline.output import EngineOutput
from streamlabel.pipeline.relabel import Reviser
from streamlabel.schemas import UNKNOWN, Feedback, LabelRecord
from streamlabel.schemas.commands import Command, CommandResult, CommandStatus, EventRef
from streamlabel.settings.engine import LimitSettings

__all__ = ["apply_command", "apply_commands", "decode_commands"]


class _RejectedError(StreamlabelError):
    """A command that cannot apply; its message is the reason."""


def decode_commands(
    entries: Sequence[RawRecord], limits: LimitSettings, out: EngineOutput
) -> list[Command]:
    """The commands of raw messages; undecodable (or invalid) ones become dead letters."""
    return [c for e in entries if (c := decode_raw(e, Command, limits, out)) is not None]


def apply_commands(curator: Curator, commands: Sequence[Command], *, now: float) -> EngineOutput:
    """Applies each command in order (see :func:`apply_command`); one output for all."""
    out = EngineOutput()
    for command in commands:
        out.extend(apply_command(curator, command, now=now)[0])
    return out


def apply_command(
    curator: Curator, command: Command, *, now: float
) -> tuple[EngineOutput, CommandResult]:
    """Applies one command once; its result is also in the output's ``command_results``.

    Args:
        curator: the store's single writer.
        command: the command (decoded, so valid for its kind).
        now: epoch seconds (when it is answered, and the revised labels' stamp).

    Returns:
        The records to publish (class events, revised labels, the result) and the result.
    """
    done = curator.commands.get(command.command_id)
    if done is not None:  # applied (or rejected) before: the same answer, nothing applied
        return EngineOutput(command_results=[done]), done
    status: CommandStatus = "applied"
    try:
        out, reason = _APPLY[command.kind](curator, command, now)
    except _RejectedError as exc:
        out, reason, status = EngineOutput(), str(exc), "rejected"
    result = CommandResult(
        command_id=command.command_id,
        kind=command.kind,
        status=status,
        reason=reason,
        events=tuple(
            EventRef(class_id=e.class_id, kind=e.kind, store_version=e.store_version)
            for e in out.class_events
        ),
        revisions=len(out.labels),
        store_version=curator.version,
        issued_by=command.issued_by,
        at=now,
    )
    what = command.model_dump(mode="python", exclude={"command_id", "issued_by", "issued_at"})
    curator.commands.record(result, what, issued_at=command.issued_at)
    out.command_results.append(result)
    return out, result


# ----------------------------------------------------------------- per kind
_Applied = tuple[EngineOutput, str | None]
_T = TypeVar("_T")


def _active(curator: Curator, ref: str | None) -> str:
    """The active class ``ref`` names (an id, a name or an alias; merges followed)."""
    class_id = curator.store.resolve(ref or "")
    if class_id is None:
        raise _RejectedError(f"no active class {ref!r}")
    return class_id


def _rename(curator: Curator, command: Command, now: float) -> _Applied:
    class_id, name = _active(curator, command.class_id), command.name or ""
    other = curator.store.resolve(name)
    if other is not None and other != class_id:
        raise _RejectedError(f"the name {name!r} is taken by class {other!r}")
    if curator.store.get(class_id).name == name:
        raise _RejectedError(f"class {class_id!r} is already named {name!r}")
    out = _store_call(lambda: curator.rename(class_id, name))
    out.labels.extend(_revise(curator, {class_id: class_id}, "renamed", now))
    return out, None


def _merge(curator: Curator, command: Command, now: float) -> _Applied:
    source, target = _active(curator, command.class_id), _active(curator, command.target)
    if source == target:
        raise _RejectedError(f"{command.class_id!r} and {command.target!r} are the same class")
    out = _store_call(lambda: curator.merge(source, target))
    out.labels.extend(_revise(curator, {source: target}, "merged", now))
    return out, None


def _retire(curator: Curator, command: Command, now: float) -> _Applied:
    class_id = _active(curator, command.class_id)
    return _store_call(lambda: curator.retire(class_id)), None


def _add_class(curator: Curator, command: Command, now: float) -> _Applied:
    name = command.name or ""
    existing = curator.store.resolve(name)
    if existing is not None:
        raise _RejectedError(f"class {existing!r} already answers to {name!r}")
    try:
        out = _store_call(lambda: curator.register_zero_shot(name, command.description or ""))
        return out, None
    except EmbeddingError as exc:
        raise _RejectedError(str(exc)) from None


def _teach(curator: Curator, command: Command, now: float) -> _Applied:
    label, who = command.label or "", command.issued_by
    try:
        feedback = [Feedback(item_id=i, label=label, source=who) for i in command.item_ids]
        if command.text is not None:
            feedback.append(Feedback(text=command.text, label=label, source=who))
    except ValidationError as exc:
        raise _RejectedError(f"invalid example: {exc.errors()[0]['msg']}") from None
    out = curator.learn(feedback)
    problems = [d.error for d in out.dead_letters]
    out.dead_letters.clear()  # the result carries them: the command is the input
    waiting = [i for i in command.item_ids if i in curator.pending]
    if not out.class_events and not waiting:
        raise _RejectedError("; ".join(problems) or "nothing to learn")
    notes = problems + ([f"waiting for items {waiting}"] if waiting else [])
    return out, "; ".join(notes) or None


def _set_threshold(curator: Curator, command: Command, now: float) -> _Applied:
    class_id, threshold = _active(curator, command.class_id), command.threshold
    if curator.store.get(class_id).threshold_override == threshold:
        has = "no threshold override" if threshold is None else f"the threshold {threshold}"
        raise _RejectedError(f"class {class_id!r} already has {has}")
    event = _store_call(lambda: curator.store.set_threshold(class_id, threshold))
    return EngineOutput(class_events=[event]), None


def _split_off(curator: Curator, command: Command, now: float) -> _Applied:
    source, name, store = _active(curator, command.class_id), command.name or "", curator.store
    taken = store.resolve(name) or (name if name in store.states() else None)
    if taken is not None:
        raise _RejectedError(f"the name {name!r} is taken by class {taken!r}")
    found = {i: _remembered(curator, i) for i in dict.fromkeys(command.item_ids)}
    if not found:
        raise _RejectedError("no items to move")
    missing = [i for i, item in found.items() if item is None]
    if missing:
        raise _RejectedError(f"items not seen or no longer remembered: {missing}")
    items = {i: item for i, item in found.items() if item is not None}
    elsewhere = [i for i, item in items.items() if store.resolve(item.label) != source]
    if elsewhere:
        raise _RejectedError(f"items not labelled with class {source!r}: {elsewhere}")
    vectors = np.stack([item.vector for item in items.values()])
    texts = [item.text or "" for item in items.values()]
    out = EngineOutput(
        class_events=_store_call(lambda: store.split_off(source, name, vectors, texts))
    )
    for item_id, item in items.items():  # an item only buffered is cached from now on
        if item_id not in curator.cache:
            curator.cache.remember(item_id, item.vector, item.text, item.label, item.revision)
    curator.buffer.remove(set(items))
    moves = [(i, curator.cache.get(i) or item, name) for i, item in items.items()]
    out.labels.extend(_reviser(curator, now).moved(moves, "split"))
    return out, None


def _remembered(curator: Curator, item_id: str) -> CachedItem | None:
    """An item as teach by item id finds it: in the item cache, else in the unknown
    buffer (a copy, with the class it settled into); None when neither holds it."""
    cached = curator.cache.get(item_id)
    if cached is not None:
        return cached
    buffered = curator.buffer.get(item_id)
    if buffered is None:
        return None
    vector, text, revision = buffered
    label = curator.buffer.labels[curator.buffer.ids.index(item_id)] or UNKNOWN
    return CachedItem(vector, text, label, revision)


_APPLY: dict[str, Callable[[Curator, Command, float], _Applied]] = {
    "rename": _rename,
    "merge": _merge,
    "retire": _retire,
    "add_class": _add_class,
    "teach": _teach,
    "set_threshold": _set_threshold,
    "split_off": _split_off,
}


def _store_call(call: Callable[[], _T]) -> _T:
    """Runs a change; a change the store refuses is a rejection."""
    try:
        return call()
    except StoreError as exc:
        raise _RejectedError(str(exc)) from None


def _reviser(curator: Curator, now: float) -> Reviser:
    """Revises labels against the curator's store, stamped ``now``."""
    return Reviser(curator.store, curator.cache, lambda: now, curator.embedder.model_id)


def _revise(curator: Curator, moved: dict[str, str], reason: str, now: float) -> list[LabelRecord]:
    """Revises the cached items labelled with a class of ``moved`` (to the class it maps to)."""
    moves = [(i, c, moved[c.label]) for i, c in curator.cache.items() if c.label in moved]
    return _reviser(curator, now).moved(moves, reason)
