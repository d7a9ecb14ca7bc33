"""The chaos delivery checker: what was produced joined to what came out (pure, no broker).

A small world: a scenario ``kill-`` produced six valid items, three on partition 0
(offsets 100-102) and three on partition 1 (offsets 40-42), plus one poison record
on partition 1 at offset 43. Outcomes are what the harness reads back: revision-0
labels ``(item_id, partition, offset)`` and dead letters ``(partition, offset, reason)``.
"""

from __future__ import annotations

import json

import pytest

from streamlabel.chaos.ledger import Ledger, Outcomes, check, longest_redelivery

PLACED = {
    "kill-0": (0, 100),
    "kill-1": (0, 101),
    "kill-2": (0, 102),
    "kill-3": (1, 40),
    "kill-4": (1, 41),
    "kill-5": (1, 42),
}
POISON = ("kill-6", 1, 43)


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger("kill-")
    for item_id, (partition, offset) in PLACED.items():
        ledger.add(item_id, partition, offset)
    item_id, partition, offset = POISON
    ledger.add(item_id, partition, offset, poison=True)
    return ledger


def all_delivered(*, skip: tuple[str, ...] = ()) -> Outcomes:
    """Every valid input labelled once at its own position, the poison one dead-lettered."""
    out = Outcomes()
    for item_id, (partition, offset) in PLACED.items():
        if item_id not in skip:
            out.add_label(item_id, partition, offset)
    if POISON[0] not in skip:
        out.add_dead(POISON[1], POISON[2], "not_msgpack")
    return out


# ------------------------------------------------------------------ ledger
def test_the_ledger_counts_inputs_and_indexes_them_by_position(ledger: Ledger) -> None:
    assert len(ledger) == 7
    by_offset = ledger.by_offset()
    assert by_offset[(0, 101)].item_id == "kill-1"
    assert by_offset[(1, 43)].poison
    assert not by_offset[(1, 40)].poison


# --------------------------------------------------------------- the verdict
def test_every_input_with_one_outcome_passes_with_nothing_lost(ledger: Ledger) -> None:
    v = check(ledger, all_delivered(), max_duplicates=0)
    assert (v.inputs, v.lost, v.duplicates, v.unexpected) == (7, 0, 0, 0)
    assert v.passed
    assert v.details["longest_redelivery"] == 0
    assert v.details["items_duplicated"] == 0
    assert "lost_examples" not in v.details
    assert "unexpected_examples" not in v.details


def test_inputs_without_an_outcome_are_lost(ledger: Ledger) -> None:
    v = check(ledger, all_delivered(skip=("kill-2", "kill-4")))
    assert v.lost == 2
    assert v.unexpected == 0
    assert not v.passed
    assert v.details["lost_examples"] == ["kill-2", "kill-4"]


def test_a_poison_input_without_a_dead_letter_is_lost(ledger: Ledger) -> None:
    v = check(ledger, all_delivered(skip=("kill-6",)))
    assert v.lost == 1
    assert v.details["lost_examples"] == ["kill-6"]
    assert not v.passed


def test_nothing_out_at_all_loses_every_input(ledger: Ledger) -> None:
    v = check(ledger, Outcomes())
    assert (v.lost, v.duplicates, v.unexpected, v.passed) == (7, 0, 0, False)


def test_a_poison_input_is_delivered_by_a_dead_letter_matched_on_partition_and_offset(
    ledger: Ledger,
) -> None:
    out = all_delivered(skip=("kill-6",))
    out.add_dead(0, 43, "not_msgpack")  # same offset, other partition: not this input
    assert check(ledger, out).lost == 1
    out.add_dead(1, 43, "not_msgpack")
    v = check(ledger, out)
    assert (v.lost, v.unexpected, v.passed) == (0, 0, True)


def test_a_valid_input_that_was_dead_lettered_is_unexpected(ledger: Ledger) -> None:
    out = all_delivered(skip=("kill-3",))
    out.add_dead(1, 40, "embedding")
    v = check(ledger, out)
    assert v.unexpected == 1
    assert not v.passed
    assert v.details["unexpected_examples"] == ["valid input kill-3 dead-lettered (embedding)"]


def test_a_poison_input_that_was_labelled_is_unexpected(ledger: Ledger) -> None:
    out = all_delivered()
    out.add_label("kill-6", 1, 43)
    v = check(ledger, out)
    assert v.unexpected == 1
    assert v.duplicates == 0  # the label is not counted as a second delivery
    assert not v.passed
    assert v.details["unexpected_examples"] == ["poison input kill-6 was labelled"]


@pytest.mark.parametrize(("partition", "offset"), [(0, 102), (1, 44), (2, 41)])
def test_a_label_naming_another_position_than_its_items_is_unexpected(
    ledger: Ledger, partition: int, offset: int
) -> None:
    out = all_delivered(skip=("kill-4",))
    out.add_label("kill-4", partition, offset)  # produced at 1:41
    v = check(ledger, out)
    assert v.unexpected == 1
    assert v.lost == 1  # the wrong label does not deliver the item
    assert not v.passed
    assert "it was produced at 1:41" in v.details["unexpected_examples"][0]


def test_outcomes_of_another_scenarios_ids_are_ignored(ledger: Ledger) -> None:
    out = all_delivered()
    out.add_label("churn-0", 0, 103)  # another scenario's label
    out.add_label("churn-1", 0, 101)  # ... even at one of this ledger's positions
    out.add_dead(3, 7, "invalid")  # another scenario's dead letter (an offset not produced here)
    v = check(ledger, out, max_duplicates=0)
    assert (v.lost, v.duplicates, v.unexpected, v.passed) == (0, 0, 0, True)


def test_a_label_for_an_id_under_the_prefix_that_was_never_produced_is_unexpected(
    ledger: Ledger,
) -> None:
    out = all_delivered()
    out.add_label("kill-99", 0, 103)
    v = check(ledger, out)
    assert (v.lost, v.unexpected, v.passed) == (0, 1, False)
    assert v.details["unexpected_examples"] == ["label for unknown id kill-99"]


def test_duplicates_count_the_outcomes_beyond_the_first(ledger: Ledger) -> None:
    out = all_delivered()
    out.add_label("kill-0", 0, 100)
    out.add_label("kill-0", 0, 100)  # three first labels: two duplicates
    out.add_label("kill-5", 1, 42)
    out.add_dead(1, 43, "not_msgpack")  # the poison record dead-lettered twice
    v = check(ledger, out)
    assert v.duplicates == 4
    assert v.details["items_duplicated"] == 3
    assert (v.lost, v.unexpected) == (0, 0)
    assert v.passed  # no bound given: duplicates are allowed (at-least-once)


@pytest.mark.parametrize(("bound", "passed"), [(None, True), (3, True), (2, True), (1, False)])
def test_max_duplicates_bounds_the_duplicates(
    ledger: Ledger, bound: int | None, passed: bool
) -> None:
    out = all_delivered()
    out.add_label("kill-1", 0, 101)
    out.add_label("kill-3", 1, 40)
    v = check(ledger, out, max_duplicates=bound)
    assert v.duplicates == 2
    assert v.passed is passed
    assert v.details["max_duplicates"] == bound


def test_the_verdict_is_plain_json_data(ledger: Ledger) -> None:
    out = all_delivered(skip=("kill-0",))
    out.add_label("kill-99", 0, 103)
    v = check(ledger, out, max_duplicates=0)
    v.name = "worker_kill"
    d = json.loads(json.dumps(v.as_dict()))
    assert d["name"] == "worker_kill"
    assert (d["inputs"], d["lost"], d["unexpected"], d["passed"]) == (7, 1, 1, False)
    assert d["details"]["lost_examples"] == ["kill-0"]


# -------------------------------------------------------- redelivered runs
def stream(prefix: str, partitions: dict[int, range]) -> Ledger:
    """A ledger of valid inputs: ``prefix<partition>-<offset>`` at each offset."""
    ledger = Ledger(prefix)
    for partition, offsets in partitions.items():
        for offset in offsets:
            ledger.add(f"{prefix}{partition}-{offset}", partition, offset)
    return ledger


def labelled(ledger: Ledger, twice: set[str]) -> Outcomes:
    """Every input labelled once, those in ``twice`` twice."""
    out = Outcomes()
    for inp in ledger.inputs.values():
        for _ in range(2 if inp.item_id in twice else 1):
            out.add_label(inp.item_id, inp.partition, inp.offset)
    return out


def test_duplicates_are_charged_to_the_fault_before_them() -> None:
    ledger = stream("s-", {0: range(20)})
    out = labelled(ledger, set())  # 20 first labels
    marks = [len(out.labels)]  # a fault after them...
    for o in range(8, 12):  # ...re-delivers one batch of 4
        out.add_label(f"s-0-{o}", 0, o)
    marks.append(len(out.labels))  # a second fault...
    for o in range(12, 15):  # ...re-delivers 3 adjacent records
        out.add_label(f"s-0-{o}", 0, o)
    v = check(ledger, out, event_marks=marks, max_per_event=4)
    assert v.duplicates == 7
    assert v.details["max_duplicates_per_fault"] == 4
    assert v.details["faults"] == 2
    assert v.details["longest_redelivery"] == 7  # adjacent batches: information only
    assert v.passed


def test_a_fault_that_costs_more_than_its_bound_fails() -> None:
    ledger = stream("s-", {0: range(20)})
    out = labelled(ledger, set())
    marks = [len(out.labels)]
    for o in range(5):
        out.add_label(f"s-0-{o}", 0, o)
    v = check(ledger, out, max_duplicates=100, event_marks=marks, max_per_event=4)
    assert (v.lost, v.unexpected, v.duplicates) == (0, 0, 5)
    assert not v.passed
    assert check(ledger, out, max_duplicates=100).passed  # no per-fault bound


def test_duplicates_before_any_fault_fail_a_per_fault_bound() -> None:
    ledger = stream("s-", {0: range(4)})
    out = labelled(ledger, {"s-0-1"})  # a duplicate with no fault to explain it
    v = check(ledger, out, event_marks=[len(out.labels)], max_per_event=10)
    assert v.details["duplicates_before_first_fault"] == 1
    assert not v.passed


def test_redelivered_runs_are_counted_per_partition() -> None:
    ledger = stream("s-", {0: range(10), 1: range(10)})
    twice = {"s-0-7", "s-0-8", "s-0-9", "s-1-0", "s-1-1", "s-1-2"}
    v = check(ledger, labelled(ledger, twice))
    assert v.details["longest_redelivery"] == 3


def test_longest_redelivery_follows_offsets_not_production_order() -> None:
    ledger = Ledger("s-")
    for offset in [5, 1, 4, 2, 3, 0]:  # deliveries completed out of order
        ledger.add(f"s-{offset}", 0, offset)
    assert longest_redelivery(ledger, {"s-1", "s-2", "s-3"}) == 3
    assert longest_redelivery(ledger, {"s-1", "s-3", "s-5"}) == 1
    assert longest_redelivery(ledger, set()) == 0
    assert longest_redelivery(Ledger("s-"), {"s-1"}) == 0


def test_rate_is_items_per_second_over_the_span_of_first_labels() -> None:
    out = Outcomes()
    for k in range(5):
        out.add_label(f"r-{k}", 0, k, at=10.0 + k * 0.5)  # 5 items over 2 s
    out.add_label("r-0", 0, 0, at=99.0)  # a duplicate does not move the first sighting
    assert out.rate([f"r-{k}" for k in range(5)]) == 2.0
    assert out.rate(["r-0"]) == 0.0  # one item has no span
    assert out.rate(["missing"]) == 0.0
