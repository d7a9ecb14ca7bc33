"""Which classes a name may refer to, kept as the store changes (no scan of every class).

:func:`~streamlabel.core.aliases.resolve` and
:func:`~streamlabel.core.aliases.retired_named` look for a label among every
class's id, name and aliases. A :class:`NameIndex` maps each of those to its
classes, and :meth:`NameIndex.named` hands them a view of the states that
iterates only those classes (lookups still see every class, to follow merges),
so resolving a label costs the same at 10 classes and at 100k.

Example:
    >>> from streamlabel.schemas import ClassState
    >>> s = ClassState(class_id="a", name="py", aliases=("python",), status="known",
    ...                origin="feedback", count=1, created_version=1, updated_version=1,
    ...                created_at=0.0, updated_at=0.0)
    >>> index = NameIndex()
    >>> index.add(s)
    >>> list(index.named({"a": s}, "python")), list(index.named({"a": s}, "ruby"))
    (['a'], [])
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from streamlabel.schemas import ClassState

__all__ = ["NameIndex"]


class _Named(Mapping[str, ClassState]):
    """The states, iterating only ``candidates`` (lookups see all)."""

    def __init__(self, states: Mapping[str, ClassState], candidates: set[str]) -> None:
        self._states, self._candidates = states, candidates

    def __getitem__(self, key: str) -> ClassState:
        return self._states[key]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._candidates))

    def __len__(self) -> int:
        return len(self._candidates)


class NameIndex:
    """Id, name or alias -> the classes that carry it."""

    def __init__(self) -> None:
        self._classes: dict[str, set[str]] = {}

    def add(self, state: ClassState | None) -> None:
        """Indexes a class's id, name and aliases."""
        if state is not None:
            for name in {state.class_id, state.name, *state.aliases}:
                self._classes.setdefault(name, set()).add(state.class_id)

    def remove(self, state: ClassState | None) -> None:
        """Forgets what :meth:`add` indexed for this state."""
        if state is not None:
            for name in {state.class_id, state.name, *state.aliases}:
                self._classes.get(name, set()).discard(state.class_id)

    def named(self, states: Mapping[str, ClassState], name: str) -> Mapping[str, ClassState]:
        """``states`` as the resolvers should scan them for ``name``."""
        return _Named(states, self._classes.get(name, set()))
