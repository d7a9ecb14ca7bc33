"""Control-plane records: a person's commands to the learner, and its answers.

A :class:`Command` travels on ``commands`` (keyed by the class it concerns;
only the learner reads it). The learner applies each once, by ``command_id``,
and answers with a :class:`CommandResult` on ``command_results``.

Example:
    >>> Command(command_id="c1", kind="rename", class_id="d-3", name="billing",
    ...         issued_by="ana", issued_at=0.0).key
    'd-3'
    >>> try:
    ...     Command(command_id="c2", kind="merge", class_id="d-3", issued_by="ana", issued_at=0)
    ... except ValueError as exc:
    ...     print(exc.errors()[0]["msg"])
    Value error, a merge command needs target
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, model_validator

from streamlabel.schemas.records import UNKNOWN, ClassEventKind, Record

__all__ = ["COMMAND_KINDS", "Command", "CommandKind", "CommandResult", "CommandStatus", "EventRef"]

CommandKind = Literal[
    "rename", "merge", "retire", "add_class", "set_threshold", "teach", "split_off"
]
CommandStatus = Literal["applied", "rejected"]

COMMAND_KINDS: Final[dict[str, tuple[str, ...]]] = {
    "rename": ("class_id", "name"),
    "merge": ("class_id", "target"),
    "retire": ("class_id",),
    "add_class": ("name", "description"),
    "set_threshold": ("class_id", "threshold"),
    "teach": ("label",),
    "split_off": ("class_id", "name", "item_ids"),
}
"""The fields each kind of command needs."""

_NULLABLE: Final = frozenset({"threshold"})
"""Fields given even as null: ``"threshold": null`` clears a class's threshold override."""


class Command(Record):
    """One change to the store asked for by a person (or a tool acting for one).

    The fields a kind needs are in :data:`COMMAND_KINDS`; ``teach`` also needs a
    ``text`` or ``item_ids`` (the examples of ``label``). ``set_threshold`` must
    name ``threshold``, a number in [-1, 1] or null: null clears the class's
    override (its calibrated threshold applies again); leaving it out is refused,
    so that a forgotten field never clears an override.
    """

    command_id: str = Field(
        min_length=1, max_length=256, description="Unique id; a repeated id is applied once."
    )
    kind: CommandKind = Field(description="What to do.")
    class_id: str | None = Field(
        default=None, description="The class concerned (a merge's source); an alias works too."
    )
    target: str | None = Field(default=None, description="The class a merge folds into.")
    name: str | None = Field(
        default=None, max_length=256, description="New name (rename), or the new class's name."
    )
    description: str | None = Field(
        default=None, description="What a zero-shot class is about (embedded by the model)."
    )
    threshold: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description=(
            "Fixed open-set threshold of the class (set_threshold); null clears it, "
            "back to the calibrated one. A set_threshold command must give it."
        ),
    )
    item_ids: tuple[str, ...] = Field(
        default=(), description="Items: examples to teach, or to move to a new class."
    )
    text: str | None = Field(default=None, description="An example text to teach.")
    label: str | None = Field(
        default=None, max_length=256, description="The class taught (its name or id)."
    )
    issued_by: str = Field(min_length=1, description="Who asked (a person or a tool).")
    issued_at: float = Field(description="When it was asked, epoch seconds.")

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Command:
        missing = [f for f in COMMAND_KINDS[self.kind] if not self._gives(f)]
        if missing:
            raise ValueError(f"a {self.kind} command needs {', '.join(missing)}")
        if self.kind == "teach" and self.text is None and not self.item_ids:
            raise ValueError("a teach command needs a text or item_ids")
        for value in (self.name, self.label):
            if value is not None and value.strip().lower() == UNKNOWN:
                raise ValueError("'unknown' is reserved and cannot name a class")
        return self

    def _gives(self, field: str) -> bool:
        """True when the command gives ``field``; for ``threshold``, null (clear) counts."""
        if field in _NULLABLE:
            return field in self.model_fields_set
        return getattr(self, field) not in (None, (), "")

    @property
    def key(self) -> str:
        """The Kafka key: the class it concerns (by id, else by the name it gives)."""
        return self.class_id or self.name or self.label or self.command_id


class EventRef(Record):
    """One class event a command produced."""

    class_id: str = Field(description="The class changed.")
    kind: ClassEventKind = Field(description="What happened to it.")
    store_version: int = Field(ge=1, description="Store version after the event.")


class CommandResult(Record):
    """The learner's answer to a command: applied (with its events) or rejected (why)."""

    command_id: str = Field(description="The command answered.")
    kind: CommandKind = Field(description="The command's kind.")
    status: CommandStatus = Field(description="applied or rejected.")
    reason: str | None = Field(
        default=None, description="Why it was rejected (or what is still to come)."
    )
    events: tuple[EventRef, ...] = Field(default=(), description="The class events it produced.")
    revisions: int = Field(default=0, ge=0, description="Labels it revised.")
    store_version: int = Field(ge=0, description="Store version after the command.")
    issued_by: str = Field(description="Who asked.")
    at: float = Field(description="When the learner answered, epoch seconds.")
