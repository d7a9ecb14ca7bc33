"""The autoscaler's decisions (``core.autoscale``): pure, driven by explicit times.

* the policy validates its bounds; ``wanted`` is ``ceil(lag / target)`` clamped;
* scale up after ``up_after_s`` of uninterrupted demand (a dip restarts the
  window), straight to the wanted count;
* scale down after ``down_after_s``, one worker at a time;
* nothing changes for ``cooldown_s`` after a change; an out-of-bounds count is
  fixed at once;
* property: with a runtime that follows its decisions, every decision lies in
  ``[min, max]`` and two changes are never closer than ``cooldown_s``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlabel.core.autoscale import AutoscalePolicy, Autoscaler


def policy(**kw: float) -> AutoscalePolicy:
    base: dict[str, float] = {
        "min_workers": 1,
        "max_workers": 8,
        "target_lag_per_worker": 1000,
        "up_after_s": 10.0,
        "down_after_s": 60.0,
        "cooldown_s": 30.0,
    }
    base.update(kw)
    return AutoscalePolicy(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------ policy
@pytest.mark.parametrize(
    ("lo", "hi"), [(0, 4), (5, 4), (-1, 1), (2, 1)], ids=["zero-min", "min>max", "neg", "2>1"]
)
def test_the_policy_rejects_bounds_outside_1_le_min_le_max(lo: int, hi: int) -> None:
    with pytest.raises(ValueError, match="min_workers"):
        AutoscalePolicy(lo, hi, target_lag_per_worker=100)


@pytest.mark.parametrize("target", [0, -5])
def test_the_policy_rejects_a_target_below_one(target: int) -> None:
    with pytest.raises(ValueError, match="target_lag_per_worker"):
        AutoscalePolicy(1, 4, target_lag_per_worker=target)


def test_equal_bounds_are_allowed() -> None:
    p = AutoscalePolicy(3, 3, target_lag_per_worker=1)
    assert (p.wanted(0), p.wanted(10**9)) == (3, 3)


@pytest.mark.parametrize(
    ("lag", "wanted"),
    [(-50, 2), (0, 2), (1, 2), (2000, 2), (2001, 3), (3000, 3), (5999, 6), (6000, 6),
     (6001, 6), (10**9, 6)],
)  # fmt: skip
def test_wanted_is_the_ceiling_of_lag_over_target_within_bounds(lag: int, wanted: int) -> None:
    assert AutoscalePolicy(2, 6, target_lag_per_worker=1000).wanted(lag) == wanted


# --------------------------------------------------------------- scale up
def test_no_scale_up_before_up_after_s_of_demand() -> None:
    a = Autoscaler(policy())
    assert a.decide(0.0, lag=5000, workers=2) == 2
    assert a.decide(5.0, lag=5000, workers=2) == 2
    assert a.decide(9.9, lag=5000, workers=2) == 2
    assert a.decide(10.0, lag=5000, workers=2) == 5  # straight to ceil(5000/1000)


def test_scale_up_jumps_to_the_wanted_count_at_the_time_of_the_decision() -> None:
    a = Autoscaler(policy())
    a.decide(0.0, lag=2500, workers=1)
    assert a.decide(10.0, lag=7200, workers=1) == 8  # 7.2 -> 8, the lag now, not at the start
    assert a.desired == 8


def test_scale_up_is_capped_at_max_workers() -> None:
    a = Autoscaler(policy(max_workers=4))
    a.decide(0.0, lag=10**6, workers=1)
    assert a.decide(10.0, lag=10**6, workers=1) == 4


def test_a_dip_in_demand_restarts_the_up_window() -> None:
    a = Autoscaler(policy())
    assert a.decide(0.0, lag=5000, workers=2) == 2
    assert a.decide(8.0, lag=1500, workers=2) == 2  # 2 wanted: no more demand
    assert a.decide(9.0, lag=5000, workers=2) == 2  # the window starts again here
    assert a.decide(12.0, lag=5000, workers=2) == 2  # 12 s since the first, 3 since the dip
    assert a.decide(18.9, lag=5000, workers=2) == 2
    assert a.decide(19.0, lag=5000, workers=2) == 5


def test_a_call_for_fewer_workers_also_restarts_the_up_window() -> None:
    a = Autoscaler(policy())
    a.decide(0.0, lag=5000, workers=3)
    a.decide(5.0, lag=100, workers=3)  # wants 1 < 3: the down window starts instead
    assert a.decide(10.0, lag=5000, workers=3) == 3
    assert a.decide(20.0, lag=5000, workers=3) == 5


def test_up_after_zero_scales_at_the_first_reading() -> None:
    a = Autoscaler(policy(up_after_s=0.0))
    assert a.decide(0.0, lag=3000, workers=1) == 3


# ------------------------------------------------------------- scale down
def test_scale_down_after_down_after_s_one_worker_at_a_time() -> None:
    a = Autoscaler(policy(cooldown_s=0.0))
    workers = 6
    assert a.decide(0.0, lag=0, workers=workers) == 6
    assert a.decide(59.0, lag=0, workers=workers) == 6
    workers = a.decide(60.0, lag=0, workers=workers)
    assert workers == 5  # not straight to 1
    # the window starts again after the change
    assert a.decide(61.0, lag=0, workers=workers) == 5
    assert a.decide(120.0, lag=0, workers=workers) == 5
    assert a.decide(121.0, lag=0, workers=workers) == 4


def test_a_dip_restarts_the_down_window() -> None:
    a = Autoscaler(policy())
    a.decide(0.0, lag=0, workers=4)
    a.decide(50.0, lag=4000, workers=4)  # 4 wanted: no surplus for a moment
    assert a.decide(70.0, lag=0, workers=4) == 4
    assert a.decide(129.0, lag=0, workers=4) == 4
    assert a.decide(130.0, lag=0, workers=4) == 3


def test_never_below_min_workers() -> None:
    a = Autoscaler(policy(min_workers=2, cooldown_s=0.0))
    assert a.decide(0.0, lag=0, workers=2) == 2
    assert a.decide(1000.0, lag=0, workers=2) == 2


# ---------------------------------------------------------------- cooldown
def test_cooldown_blocks_changes_after_a_change() -> None:
    a = Autoscaler(policy(up_after_s=0.0, cooldown_s=30.0))
    assert a.decide(0.0, lag=2000, workers=1) == 2
    assert a.decide(1.0, lag=6000, workers=2) == 2  # demand, but cooling down
    assert a.decide(29.9, lag=6000, workers=2) == 2
    assert a.decide(30.0, lag=6000, workers=2) == 6


def test_cooldown_blocks_a_scale_down_right_after_a_scale_up() -> None:
    a = Autoscaler(policy(up_after_s=0.0, down_after_s=0.0, cooldown_s=30.0))
    assert a.decide(0.0, lag=4000, workers=1) == 4
    assert a.decide(5.0, lag=0, workers=4) == 4
    assert a.decide(29.0, lag=0, workers=4) == 4
    assert a.decide(30.0, lag=0, workers=4) == 3


def test_demand_that_lasted_through_the_cooldown_scales_when_it_ends() -> None:
    a = Autoscaler(policy(up_after_s=10.0, cooldown_s=30.0))
    a.decide(0.0, lag=2000, workers=1)
    assert a.decide(10.0, lag=2000, workers=1) == 2
    assert a.decide(12.0, lag=8000, workers=2) == 2  # window starts at 12 s
    assert a.decide(39.0, lag=8000, workers=2) == 2  # 27 s of demand, still cooling down
    assert a.decide(40.0, lag=8000, workers=2) == 8


# ---------------------------------------------------------- out of bounds
def test_an_out_of_bounds_count_is_fixed_at_once() -> None:
    a = Autoscaler(policy(min_workers=2, max_workers=4))
    assert a.decide(0.0, lag=0, workers=9) == 4
    b = Autoscaler(policy(min_workers=2, max_workers=4))
    assert b.decide(0.0, lag=10**6, workers=0) == 2
    assert b.desired == 2


def test_fixing_an_out_of_bounds_count_ignores_the_cooldown_and_starts_one() -> None:
    a = Autoscaler(policy(min_workers=2, max_workers=6, up_after_s=0.0, cooldown_s=30.0))
    assert a.decide(0.0, lag=6000, workers=1) == 2  # fixed to min, not to wanted
    assert a.decide(1.0, lag=6000, workers=2) == 2  # cooling down after the fix
    assert a.decide(30.0, lag=6000, workers=2) == 6


def test_desired_starts_at_min_workers_and_tracks_the_count() -> None:
    a = Autoscaler(policy(min_workers=2))
    assert a.desired == 2
    a.decide(0.0, lag=0, workers=3)
    assert a.desired == 3


# ---------------------------------------------------------------- property
readings = st.lists(
    st.tuples(st.floats(0.0, 40.0, allow_nan=False), st.integers(-100, 50_000)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(
    lo=st.integers(1, 5),
    extra=st.integers(0, 6),
    target=st.integers(1, 5000),
    up=st.floats(0.0, 60.0),
    down=st.floats(0.0, 200.0),
    cooldown=st.floats(0.0, 90.0),
    start=st.integers(0, 15),
    steps=readings,
)
def test_decisions_stay_in_bounds_and_change_at_most_once_per_cooldown(
    lo: int,
    extra: int,
    target: int,
    up: float,
    down: float,
    cooldown: float,
    start: int,
    steps: list[tuple[float, int]],
) -> None:
    p = AutoscalePolicy(lo, lo + extra, target, up_after_s=up, down_after_s=down,
                        cooldown_s=cooldown)  # fmt: skip
    a = Autoscaler(p)
    now, workers = 0.0, start
    changes: list[float] = []
    for dt, lag in steps:
        now += dt
        decision = a.decide(now, lag, workers)
        assert p.min_workers <= decision <= p.max_workers
        assert a.desired == decision
        if decision != workers:
            in_bounds = p.min_workers <= workers <= p.max_workers
            if in_bounds and changes:
                assert now - changes[-1] >= cooldown, (changes, now)
            if in_bounds and decision < workers:
                assert decision == workers - 1  # down: one at a time
            if in_bounds and decision > workers:
                assert decision == p.wanted(lag)  # up: straight to wanted
            changes.append(now)
        workers = decision
