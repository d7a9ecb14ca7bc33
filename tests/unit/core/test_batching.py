"""The adaptive batch size: polls sized to a latency target from the cost per item."""

from __future__ import annotations

import pytest

from streamlabel.core.batching import BatchSizer


def run(sizer: BatchSizer, per_item_s: float, batches: int) -> list[int]:
    sizes = []
    for _ in range(batches):
        sizes.append(sizer.observe(sizer.size, sizer.size * per_item_s))
    return sizes


def test_a_slow_model_shrinks_polls_until_a_batch_fits_the_target() -> None:
    sizer = BatchSizer(target_s=0.5, min_size=8, max_size=1024, initial=1024)
    sizes = run(sizer, 0.01, 12)  # 10 ms per item: 50 items fit in 0.5 s
    assert sizes[:3] == [512, 256, 128]  # at most halving per batch
    assert sizes[-1] == 50
    assert sizer.per_item_s == pytest.approx(0.01)


def test_a_fast_model_grows_polls_up_to_the_largest_allowed() -> None:
    sizer = BatchSizer(target_s=1.0, min_size=4, max_size=300, initial=4)
    sizes = run(sizer, 0.001, 8)
    assert sizes[:3] == [8, 16, 32]  # at most doubling per batch
    assert sizes[-1] == 300


def test_the_size_follows_the_model_when_it_slows_down_and_recovers() -> None:
    sizer = BatchSizer(target_s=1.0, min_size=8, max_size=512, initial=100)
    run(sizer, 0.01, 20)
    assert sizer.size == 100
    run(sizer, 0.04, 20)  # a neighbour takes the cores: 4x slower
    assert sizer.size == 25
    run(sizer, 0.01, 30)
    assert sizer.size == 100


def test_one_odd_batch_moves_the_size_less_than_a_steady_change() -> None:
    sizer = BatchSizer(target_s=1.0, min_size=8, max_size=512, initial=100)
    run(sizer, 0.01, 20)
    sizer.observe(100, 5.0)  # one batch 5x slower
    assert 40 <= sizer.size < 100
    run(sizer, 0.01, 10)
    assert sizer.size == pytest.approx(100, rel=0.05)


def test_a_trickle_of_tiny_batches_barely_moves_the_estimate() -> None:
    sizer = BatchSizer(target_s=1.0, min_size=8, max_size=512, initial=100)
    run(sizer, 0.01, 20)
    for _ in range(5):  # single items carrying a fixed 50 ms per batch
        sizer.observe(1, 0.05)
    assert sizer.per_item_s is not None
    assert sizer.per_item_s < 0.03


def test_the_bounds_hold_and_bad_arguments_are_refused() -> None:
    sizer = BatchSizer(target_s=0.1, min_size=16, max_size=64, initial=1000)
    assert sizer.size == 64
    assert run(sizer, 1.0, 5)[-1] == 16  # never below the floor
    assert sizer.observe(0, 1.0) == 16  # an empty batch changes nothing
    with pytest.raises(ValueError, match="target_s"):
        BatchSizer(target_s=0, min_size=1, max_size=2)
    with pytest.raises(ValueError, match="min_size"):
        BatchSizer(target_s=1, min_size=5, max_size=2)
    with pytest.raises(ValueError, match="smoothing"):
        BatchSizer(target_s=1, min_size=1, max_size=2, smoothing=0)
