"""What the learner remembers of the commands it answered: their results (so a
repeated command id is answered again, not applied again) and an audit trail.

Both are bounded and travel in the Curator's state, so they survive a restart
with the snapshot that holds the store the commands changed.

Example:
    >>> from streamlabel.schemas.commands import CommandResult
    >>> log = CommandLog(capacity=2)
    >>> for i in range(3):
    ...     log.record(CommandResult(command_id=f"c{i}", kind="retire", status="applied",
    ...                              store_version=i, issued_by="ana", at=0.0), {})
    >>> [log.get(c) is not None for c in ("c0", "c1", "c2")]
    [False, True, True]
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from streamlabel.schemas.commands import CommandResult

__all__ = ["CommandLog"]


class CommandLog:
    """The results of the last ``capacity`` commands and the last ``history`` audit entries.

    An audit entry is plain data: ``command_id``, ``kind``, ``issued_by``,
    ``issued_at``, ``status``, ``reason``, ``what`` (the command's fields),
    ``store_version`` (after it) and ``at`` (when it was answered).
    """

    def __init__(self, capacity: int = 10_000, history: int = 1_000) -> None:
        self.capacity = capacity
        self._results: OrderedDict[str, CommandResult] = OrderedDict()
        self._history: deque[dict[str, Any]] = deque(maxlen=history)

    def __len__(self) -> int:
        return len(self._results)

    def get(self, command_id: str) -> CommandResult | None:
        """The result of a command already answered, or None."""
        return self._results.get(command_id)

    def record(self, result: CommandResult, what: dict[str, Any], issued_at: float = 0.0) -> None:
        """Remembers a command's result and adds its audit entry."""
        self._results[result.command_id] = result
        while len(self._results) > self.capacity:
            self._results.popitem(last=False)
        self._history.append(
            {
                "command_id": result.command_id,
                "kind": result.kind,
                "issued_by": result.issued_by,
                "issued_at": issued_at,
                "status": result.status,
                "reason": result.reason,
                "what": what,
                "store_version": result.store_version,
                "at": result.at,
            }
        )

    def history(self) -> list[dict[str, Any]]:
        """The audit entries, oldest first (a copy)."""
        return [dict(e) for e in self._history]

    def state(self) -> dict[str, Any]:
        """Plain data (msgpack-able) for a snapshot."""
        return {
            "results": [r.model_dump(mode="python") for r in self._results.values()],
            "history": list(self._history),
        }

    def load(self, state: dict[str, Any] | None) -> None:
        """Restores a :meth:`state` (None or empty: an older snapshot without commands).

        Raises:
            ValueError: the state does not fit (pydantic's ValidationError is one).
        """
        state = state or {}
        results = [CommandResult.model_validate(r) for r in state.get("results", [])]
        self._results = OrderedDict((r.command_id, r) for r in results[-self.capacity :])
        self._history = deque(state.get("history", []), maxlen=self._history.maxlen)
