"""Open-set thresholds: per-class quantiles, the borrowed fallback, cross-fitted member scores."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlabel.core.calibration import calibrate_thresholds, crossfit_member_scores
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.metric import Metric

scores = st.lists(
    st.floats(min_value=-1.0, max_value=1.0, allow_nan=False), min_size=5, max_size=60
).map(lambda v: np.asarray(v, np.float64))


@settings(max_examples=100, deadline=None)
@given(st.lists(scores, min_size=1, max_size=6), st.floats(min_value=0.0, max_value=1.0))
def test_threshold_is_the_quantile_of_member_scores(groups: list[np.ndarray], q: float) -> None:
    """A class with enough examples gets exactly the ``q`` quantile of its members' scores."""
    out = calibrate_thresholds(groups, quantile=q, min_examples=5, default=0.3)
    expected = [np.quantile(g, q) for g in groups]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    assert out.dtype == np.float32


def test_a_low_quantile_accepts_about_the_complement_of_members() -> None:
    """With quantile 0.05, about 95% of scores like the members' are at or above the threshold."""
    rng = np.random.default_rng(0)
    members = rng.beta(8, 2, size=4000)
    (threshold,) = calibrate_thresholds([members[:2000]], quantile=0.05, min_examples=8, default=0)
    assert (members[2000:] >= threshold).mean() == pytest.approx(0.95, abs=0.02)


def test_classes_with_too_few_examples_borrow_the_median_threshold() -> None:
    """Small classes get the median of the calibrated classes' thresholds."""
    groups = [
        np.linspace(0.5, 1.0, 101),  # q10 = 0.55
        np.linspace(0.7, 1.0, 101),  # q10 = 0.73
        np.linspace(0.1, 0.5, 101),  # q10 = 0.14
        np.array([0.99, 0.98]),  # too few
        np.array([], np.float64),  # none at all
    ]
    out = calibrate_thresholds(groups, quantile=0.1, min_examples=5, default=0.3)
    np.testing.assert_allclose(out, [0.55, 0.73, 0.14, 0.55, 0.55], atol=1e-6)


def test_the_default_is_used_when_no_class_is_calibrated() -> None:
    """With no class large enough, every class gets the configured default."""
    out = calibrate_thresholds(
        [np.array([0.9]), np.array([0.8, 0.7])], quantile=0.1, min_examples=5, default=0.42
    )
    np.testing.assert_allclose(out, [0.42, 0.42])


def test_no_classes_give_no_thresholds() -> None:
    """An empty store calibrates nothing."""
    assert calibrate_thresholds([], quantile=0.1, min_examples=5, default=0.3).shape == (0,)


def test_min_examples_is_inclusive() -> None:
    """A class with exactly ``min_examples`` scores calibrates its own threshold."""
    out = calibrate_thresholds(
        [np.full(5, 0.8), np.full(50, 0.2)], quantile=0.5, min_examples=5, default=0.0
    )
    np.testing.assert_allclose(out, [0.8, 0.2], atol=1e-6)


# --------------------------------------------------------------- crossfit
def _overfit_groups(seed: int = 0) -> list[np.ndarray]:
    """Three classes of 24 noisy examples in 128 dims: fewer examples than dimensions."""
    rng = np.random.default_rng(seed)
    return [
        l2_normalize(rng.standard_normal(128) + 0.8 * rng.standard_normal((24, 128)))
        for _ in range(3)
    ]


def _fit(groups: list[np.ndarray]) -> Metric:
    # No shrinkage and fewer examples than dimensions: the whitening overfits.
    return Metric.fit(groups, shrinkage=0.0, min_examples=20)


def test_crossfit_scores_are_less_optimistic_than_in_sample_ones() -> None:
    """Held-out examples score lower than in-sample ones when the metric overfits.

    In-sample, the metric learned on the class's examples pulls them onto the class
    mean; cross-fitted scores come from a metric and mean fitted without them.
    """
    groups = _overfit_groups()
    metric = _fit(groups)
    assert not metric.is_identity
    in_sample = [metric.apply(g) @ metric.apply(g.mean(axis=0)) for g in groups]
    crossfit = crossfit_member_scores(groups, _fit, folds=2)
    for own, held in zip(in_sample, crossfit, strict=True):
        assert len(held) == len(own) == 24
        assert held.mean() < own.mean() - 0.1
        assert np.quantile(held, 0.05) < np.quantile(own, 0.05) - 0.1


def test_each_fold_uses_a_learned_metric_when_folds_are_large_enough() -> None:
    """The fold metrics are really learned (36 examples ≥ 20), so crossfit is not just cosine."""
    groups = _overfit_groups()
    fitted: list[Metric] = []

    def fit(train: list[np.ndarray]) -> Metric:
        fitted.append(_fit(train))
        return fitted[-1]

    crossfit_member_scores(groups, fit, folds=2)
    assert len(fitted) == 2
    assert all(m.n_examples == 36 for m in fitted)


def test_crossfit_with_the_identity_metric_is_cosine_to_the_other_folds_mean() -> None:
    """Example ``i`` (fold ``i % folds``) is scored against the mean of the other folds."""
    rng = np.random.default_rng(1)
    group = l2_normalize(rng.standard_normal((7, 8)))
    (out,) = crossfit_member_scores([group], lambda g: Metric.identity(8), folds=3)
    expected = []
    for f in range(3):
        idx = np.arange(7)
        centre = l2_normalize(group[idx % 3 != f].mean(axis=0))
        expected.append(group[idx % 3 == f] @ centre)
    np.testing.assert_allclose(out, np.concatenate(expected), atol=1e-6)


def test_classes_smaller_than_the_folds_get_no_scores() -> None:
    """A single example cannot be held out and scored against its own class."""
    rng = np.random.default_rng(2)
    groups = [l2_normalize(rng.standard_normal((1, 8))), l2_normalize(rng.standard_normal((6, 8)))]
    out = crossfit_member_scores(groups, lambda g: Metric.identity(8), folds=2)
    assert out[0].shape == (0,)
    assert out[1].shape == (6,)
