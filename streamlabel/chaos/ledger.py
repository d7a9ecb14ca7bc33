"""The delivery checker: joins what was produced to what came out.

Every input the harness produces is written down with the partition and offset
the broker gave it. What comes out is the first label of each item (revision
0, on ``labels``) or its dead letter (on ``dlq``, keyed by source offset).
The verdict counts:

* ``lost``: inputs with neither a first label nor a dead letter;
* ``duplicates``: outcomes beyond the first for an input (at-least-once
  redelivery: a batch labelled again after a crash or a rebalance);
* ``unexpected``: outcomes that match no input (an id that was never
  produced, a label that names another offset than its item's, a poison
  input that was labelled or a valid one that was dead-lettered).

Pure Python, no I/O.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Ledger", "Outcomes", "Verdict", "check", "longest_redelivery"]


@dataclass(frozen=True)
class Input:
    """One produced record: its id, where it landed, and whether it is poison."""

    item_id: str
    partition: int
    offset: int
    poison: bool = False


@dataclass
class Ledger:
    """What a scenario produced (filled as the producer's deliveries complete)."""

    prefix: str
    inputs: dict[str, Input] = field(default_factory=dict)

    def add(self, item_id: str, partition: int, offset: int, *, poison: bool = False) -> None:
        self.inputs[item_id] = Input(item_id, partition, offset, poison)

    def by_offset(self) -> dict[tuple[int, int], Input]:
        return {(i.partition, i.offset): i for i in self.inputs.values()}

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class Outcomes:
    """What came out: first labels and dead letters, as they were read."""

    labels: list[tuple[str, int, int]] = field(default_factory=list)
    """(item_id, source partition, source offset) of every revision-0 label."""
    dead: list[tuple[int, int, str]] = field(default_factory=list)
    """(source partition, source offset, reason) of every dead letter from ``items``."""
    first_seen: dict[str, float] = field(default_factory=dict)
    """When the first label of each item was read (the caller's clock; optional)."""

    def add_label(self, item_id: str, partition: int, offset: int, at: float | None = None) -> None:
        self.labels.append((item_id, partition, offset))
        if at is not None:
            self.first_seen.setdefault(item_id, at)

    def rate(self, ids: Sequence[str]) -> float:
        """Items per second over the span in which ``ids`` got their first labels."""
        times = sorted(self.first_seen[i] for i in ids if i in self.first_seen)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def add_dead(self, partition: int, offset: int, reason: str) -> None:
        self.dead.append((partition, offset, reason))


@dataclass
class Verdict:
    """The result of one scenario (the ``--json`` line holds a list of these)."""

    name: str
    inputs: int
    lost: int
    duplicates: int
    unexpected: int
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(
    ledger: Ledger,
    outcomes: Outcomes,
    *,
    max_duplicates: int | None = None,
    event_marks: Sequence[int] = (),
    max_per_event: int | None = None,
) -> Verdict:
    """Joins ``ledger`` to ``outcomes``; only outcomes of ids under ``ledger.prefix`` count.

    Args:
        max_duplicates: the bound on all duplicates the scenario promises (None: any).
        event_marks: ``len(outcomes.labels)`` at each fault the scenario injected;
            duplicate labels read between two marks are charged to the earlier fault.
        max_per_event: the bound on the duplicates charged to one fault (one batch
            per worker whose partitions moved).

    Returns:
        A verdict that passes when nothing was lost or unexpected and duplicates
        stay within the bounds.
    """
    by_offset = ledger.by_offset()
    delivered: Counter[str] = Counter()
    seen: set[str] = set()
    unexpected: list[str] = []
    per_event = [0] * (len(event_marks) + 1)
    for index, (item_id, partition, offset) in enumerate(outcomes.labels):
        if not item_id.startswith(ledger.prefix):
            continue  # another scenario's item
        expected = ledger.inputs.get(item_id)
        if expected is None:
            unexpected.append(f"label for unknown id {item_id}")
        elif (expected.partition, expected.offset) != (partition, offset):
            unexpected.append(
                f"label for {item_id} names {partition}:{offset}, "
                f"it was produced at {expected.partition}:{expected.offset}"
            )
        elif expected.poison:
            unexpected.append(f"poison input {item_id} was labelled")
            seen.add(item_id)  # not lost: it came out, as the wrong kind
        else:
            delivered[item_id] += 1
            if delivered[item_id] > 1:
                per_event[bisect.bisect_right(event_marks, index)] += 1
    for partition, offset, reason in outcomes.dead:
        found = by_offset.get((partition, offset))
        if found is None:
            continue  # another scenario's offset (dead letters are keyed by offset only)
        if not found.poison:
            unexpected.append(f"valid input {found.item_id} dead-lettered ({reason})")
            seen.add(found.item_id)
        else:
            delivered[found.item_id] += 1
    lost = [i for i in ledger.inputs if delivered[i] == 0 and i not in seen]
    duplicates = sum(n - 1 for n in delivered.values() if n > 1)
    run = longest_redelivery(ledger, {i for i, n in delivered.items() if n > 1})
    within = max_duplicates is None or duplicates <= max_duplicates
    worst = max(per_event[1:], default=0)  # before the first fault nothing is charged
    if max_per_event is not None:
        within = within and worst <= max_per_event and per_event[0] == 0
    details: dict[str, Any] = {
        "max_duplicates": max_duplicates,
        "items_duplicated": sum(1 for n in delivered.values() if n > 1),
        "longest_redelivery": run,
    }
    if event_marks:
        details["faults"] = len(event_marks)
        details["max_duplicates_per_fault"] = worst
        details["duplicates_before_first_fault"] = per_event[0]
        details["max_per_fault_bound"] = max_per_event
    if lost:
        details["lost_examples"] = sorted(lost)[:10]
    if unexpected:
        details["unexpected_examples"] = unexpected[:10]
    return Verdict(
        name="",
        inputs=len(ledger),
        lost=len(lost),
        duplicates=duplicates,
        unexpected=len(unexpected),
        passed=not lost and not unexpected and within,
        details=details,
    )


def longest_redelivery(ledger: Ledger, duplicated: set[str]) -> int:
    """The longest run of consecutive inputs of one partition that came out twice
    (information: two faults in a row can re-deliver adjacent batches)."""
    longest = 0
    by_partition: dict[int, list[Input]] = {}
    for inp in ledger.inputs.values():
        by_partition.setdefault(inp.partition, []).append(inp)
    for inputs in by_partition.values():
        run = 0
        for inp in sorted(inputs, key=lambda i: i.offset):
            run = run + 1 if inp.item_id in duplicated else 0
            longest = max(longest, run)
    return longest
