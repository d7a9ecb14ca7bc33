"""Which class a label names: by id, by name or by alias, following merges.

A class keeps every name it had (a rename makes the old name an alias) and a
merged class points to the class it was folded into, so a label written before
either change still reaches the class it meant. These are pure functions of the
store's ``class_id -> ClassState`` map.

Example:
    >>> from streamlabel.schemas import ClassState
    >>> def state(cid, name, **kw):
    ...     return ClassState(class_id=cid, name=name, status=kw.pop("status", "known"),
    ...                       origin="feedback", count=1, created_version=1,
    ...                       updated_version=1, created_at=0.0, updated_at=0.0, **kw)
    >>> states = {"a": state("a", "py", aliases=("python",)),
    ...           "b": state("b", "snake", status="retired", merged_into="a")}
    >>> resolve(states, "python"), resolve(states, "snake"), resolve(states, "ruby")
    ('a', 'a', None)
"""

from __future__ import annotations

from collections.abc import Mapping

from streamlabel.schemas import ClassState

__all__ = ["resolve", "retired_named"]


def resolve(states: Mapping[str, ClassState], name: str) -> str | None:
    """The active class ``name`` refers to: by id, name or alias; follows merges."""
    target = states.get(name)
    if target is None:
        matches = sorted(k for k, s in states.items() if name == s.name or name in s.aliases)
        active = [k for k in matches if states[k].status != "retired"]
        target = states[(active or matches)[0]] if matches else None
    seen: set[str] = set()
    while target is not None and target.merged_into and target.class_id not in seen:
        seen.add(target.class_id)
        target = states.get(target.merged_into)
    if target is None or target.status == "retired":
        return None
    return target.class_id


def retired_named(states: Mapping[str, ClassState], name: str) -> str | None:
    """A retired (not merged) class whose id, name or alias is ``name``: a label revives it."""
    for k in sorted(states):
        s = states[k]
        if s.status == "retired" and s.merged_into is None and name in (k, s.name, *s.aliases):
            return k
    return None
