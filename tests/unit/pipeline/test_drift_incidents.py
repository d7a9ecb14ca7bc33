"""Drift incidents through the drift watch: one shift, one incident.

* every signal of one shift opens or updates one incident (one id, updates
  0, 1, 2..., evidence growing, severity the highest so far), also when the
  learner reads partitions at different offsets and the unknown rate rises,
  falls and rises again;
* two shifts far apart are two incidents; ``drift.incident_window`` decides;
* the updates say what moved: the classes whose share changed most, texts
  from before and after the shift;
* ids are deterministic (seed, incarnation) and the Curator passes its setting.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from functools import cache

import pytest
from drift_world import (
    AFTER,
    BEFORE,
    as_the_learner_reads_partitions,
    batches,
    labelled,
)

from streamlabel.core.drift.base import severity_for
from streamlabel.pipeline import load_settings
from streamlabel.pipeline.curator import Curator
from streamlabel.pipeline.drift import DriftWatch
from streamlabel.pipeline.output import Observed
from streamlabel.schemas import UNKNOWN, DriftAlert
from streamlabel.testing import HashEmbedder, ManualClock

SHIFT_AT = 2000
SECOND_SHIFT_AT = 8000
RANK = {"info": 0, "warning": 1, "critical": 2}


def watch(
    stream: Iterable[Observed], *, seed: int = 1, incarnation: str = "", **kwargs: int
) -> list[DriftAlert]:
    w = DriftWatch(enabled=True, seed=seed, clock=ManualClock(0.0), incarnation=incarnation,
                   **kwargs)  # fmt: skip
    return [a for observed in stream for a in w.watch(observed, store_version=1)]


@cache
def one_shift() -> tuple[Observed, ...]:
    return tuple(batches(labelled([(SHIFT_AT, BEFORE), (4000, AFTER)])))


@cache
def one_shift_alerts(seed: int = 1, incarnation: str = "") -> tuple[DriftAlert, ...]:
    return tuple(watch(one_shift(), seed=seed, incarnation=incarnation))


def two_shifts() -> list[Observed]:
    back = {"a": 0.3, "b": 0.3, "d": 0.4}  # c and unknown gone, d arrives
    return batches(labelled([(SHIFT_AT, BEFORE), (6000, AFTER), (4000, back)]))


def test_one_shift_is_one_incident_each_signal_an_update() -> None:
    alerts = one_shift_alerts()
    assert len({a.kind for a in alerts}) >= 3, [a.kind for a in alerts]  # several detectors
    assert {a.incident_id for a in alerts} == {alerts[0].incident_id}
    assert alerts[0].incident_id is not None
    assert [a.incident_update for a in alerts] == list(range(len(alerts)))
    assert all(a.at_item >= SHIFT_AT for a in alerts)


def test_each_update_carries_every_signal_so_far() -> None:
    alerts = one_shift_alerts()
    assert len(alerts[0].evidence) == 1
    for before, a in itertools.pairwise(alerts):
        assert a.evidence[:-1] == before.evidence
    for a in alerts:
        latest = a.evidence[-1]
        assert (latest.kind, latest.at_item, latest.statistic) == (a.kind, a.at_item, a.statistic)
    assert [e.at_item for e in alerts[-1].evidence] == sorted(a.at_item for a in alerts)


def test_the_severity_is_the_highest_so_far_and_the_detail_sums_the_incident_up() -> None:
    alerts = one_shift_alerts()
    for a in alerts:
        signals = [severity_for(e.statistic, e.threshold) for e in a.evidence]
        assert a.severity == max(signals, key=RANK.__getitem__)
        assert a.detail.startswith(f"Drift incident since item {alerts[0].at_item}: ")
        assert a.detail.endswith(a.evidence[-1].detail)
    severities = [RANK[a.severity] for a in alerts]
    assert severities == sorted(severities)


def test_a_shift_read_partition_by_partition_flaps_the_unknown_rate_yet_is_one_incident() -> None:
    """The ``make demo`` case: the unknown-rate detector fires rose, fell, rose (right
    about what it reads: a partition still before the shift is read after another's
    post-shift part), and every signal lands in one incident."""
    alerts = watch(as_the_learner_reads_partitions())
    moves = [e.detail.split()[3] for e in alerts[-1].evidence if e.kind == "unknown_rate"]
    assert moves == ["rose", "fell", "rose"]
    assert len({a.incident_id for a in alerts}) == 1
    assert alerts[-1].incident_update == len(alerts) - 1


def test_two_shifts_far_apart_are_two_incidents() -> None:
    alerts = watch(two_shifts())
    ids = list(dict.fromkeys(a.incident_id for a in alerts))
    assert len(ids) == 2
    first = [a for a in alerts if a.incident_id == ids[0]]
    second = [a for a in alerts if a.incident_id == ids[1]]
    assert all(SHIFT_AT <= a.at_item < SECOND_SHIFT_AT for a in first)
    assert all(a.at_item >= SECOND_SHIFT_AT for a in second)
    assert [a.incident_update for a in second] == list(range(len(second)))
    assert len(second[-1].evidence) == len(second)  # the first incident's evidence left out
    assert second[0].at_item - first[-1].at_item > 1500  # the default window passed


def test_the_incident_window_decides_which_signals_belong_together() -> None:
    """A window shorter than the gaps between one shift's signals splits it; one longer
    than the gap between the two shifts joins them."""
    gaps = [b.at_item - a.at_item for a, b in itertools.pairwise(one_shift_alerts())]
    short = max(gaps) - 1
    split = watch(one_shift(), incident_window=short)
    assert len({a.incident_id for a in split}) == 1 + sum(g > short for g in gaps)
    assert len({a.incident_id for a in watch(two_shifts(), incident_window=10_000)}) == 1


def test_share_changes_name_the_classes_that_grew_and_shrank_most() -> None:
    last = one_shift_alerts()[-1]
    moved = {c.class_id: c for c in last.share_changes}
    assert 1 <= len(last.share_changes) <= 5
    assert last.share_changes[0].class_id == "c"  # +45 points, the largest move
    assert moved["c"].after > moved["c"].before
    assert moved[UNKNOWN].after > moved[UNKNOWN].before
    assert moved["a"].after < moved["a"].before
    assert abs(moved["a"].before - BEFORE["a"]) < 0.08
    changes = [abs(c.after - c.before) for c in last.share_changes]
    assert changes == sorted(changes, reverse=True)


def test_examples_come_from_either_side_of_the_shift() -> None:
    for a in one_shift_alerts():
        assert 1 <= len(a.examples_before) <= 3
        assert 1 <= len(a.examples_after) <= 3
        assert all(t.startswith("phase 0 ") for t in a.examples_before), a.examples_before
        assert all(t.startswith("phase 1 ") for t in a.examples_after), a.examples_after
    last = one_shift_alerts()[-1]
    assert all(t.endswith("about c") for t in last.examples_after)  # the class that grew
    assert len(set(last.examples_after)) == len(last.examples_after)


def test_the_same_stream_and_seed_give_the_same_ids() -> None:
    again = watch(one_shift())
    assert [(a.alert_id, a.incident_id) for a in again] == [
        (a.alert_id, a.incident_id) for a in one_shift_alerts()
    ]
    assert again == list(one_shift_alerts())  # the whole records (the clock is fixed)


def test_another_seed_or_incarnation_gives_other_incident_ids() -> None:
    ids = {a.incident_id for a in one_shift_alerts()}
    assert not ids & {a.incident_id for a in one_shift_alerts(seed=2)}
    assert not ids & {a.incident_id for a in one_shift_alerts(incarnation="run-2")}


def test_the_batch_size_does_not_change_the_incidents() -> None:
    stream = labelled([(SHIFT_AT, BEFORE), (4000, AFTER)])
    assert watch(batches(stream, 37)) == list(one_shift_alerts())


@pytest.mark.parametrize("window", [1, 400])
def test_the_curator_passes_the_incident_window_setting(window: int) -> None:
    settings = load_settings(drift={"incident_window": window})
    curator = Curator(settings, HashEmbedder(), clock=ManualClock(0.0))
    assert curator.drift.incidents.window == window
