"""The learned metric: whitening by the pooled within-class scatter, identity when unsure."""

from __future__ import annotations

import doctest
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamlabel.core.metric as metric_module
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.metric import Metric


def _groups(n_per: int, k: int = 3, dim: int = 8, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = np.ones(dim)
    scale[0] = 5.0  # a strong shared nuisance direction
    return [
        l2_normalize(rng.standard_normal(dim) * 2 + rng.standard_normal((n_per, dim)) * scale)
        for _ in range(k)
    ]


def test_identity_only_renormalises() -> None:
    """The identity metric is plain cosine: it only L2-normalises."""
    x = np.array([[3.0, 4.0], [0.0, 2.0]], np.float32)
    metric = Metric.identity(2)
    assert metric.is_identity
    np.testing.assert_allclose(metric.apply(x), [[0.6, 0.8], [0.0, 1.0]])


@pytest.mark.parametrize(
    ("groups", "min_examples"),
    [
        (_groups(6, k=3), 20),  # 18 examples < 20
        (_groups(30, k=1), 20),  # one class carries no between-class information
        ([np.ones((1, 8))] * 30, 20),  # singletons carry no within-class scatter
    ],
    ids=["too-few-examples", "one-class", "singletons"],
)
def test_fit_returns_the_identity_without_enough_evidence(
    groups: list[np.ndarray], min_examples: int
) -> None:
    """Too few usable examples (or classes) give the identity, not a degenerate transform."""
    metric = Metric.fit(groups, min_examples=min_examples)
    assert metric.is_identity
    assert metric.n_examples == 0
    x = _groups(4, k=1, seed=9)[0]
    np.testing.assert_allclose(metric.apply(x), l2_normalize(x))


def test_fit_counts_only_usable_examples() -> None:
    """Groups of one row are ignored; the others are counted."""
    groups = [*_groups(12, k=2), np.ones((1, 8))]
    metric = Metric.fit(groups, min_examples=20)
    assert metric.n_examples == 24


def test_fit_needs_at_least_one_group() -> None:
    """Fitting on nothing is a programming error."""
    with pytest.raises(ValueError, match="at least one group"):
        Metric.fit([])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 1.0), st.integers(1, 20))
def test_output_is_unit_norm(seed: int, shrinkage: float, n: int) -> None:
    """Whatever was learned, mapped vectors have norm 1 (so inner product = cosine)."""
    metric = Metric.fit(_groups(15, seed=seed), shrinkage=shrinkage, min_examples=20)
    assert not metric.is_identity
    x = l2_normalize(np.random.default_rng(seed + 1).standard_normal((n, 8)))
    z = metric.apply(x)
    assert z.shape == (n, 8)
    assert z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)


def test_a_single_vector_maps_to_a_single_vector() -> None:
    """``apply`` accepts one ``(d,)`` vector as well as a batch."""
    metric = Metric.fit(_groups(15), min_examples=20)
    v = _groups(1, k=1, seed=5)[0][0]
    out = metric.apply(v)
    assert out.shape == (8,)
    np.testing.assert_allclose(out, metric.apply(v[None, :])[0], atol=1e-6)


def test_without_shrinkage_the_within_class_scatter_becomes_isotropic() -> None:
    """Before normalisation, the mapped within-class covariance is a multiple of the identity."""
    groups = _groups(200, k=3)
    metric = Metric.fit(groups, shrinkage=0.0, min_examples=20)
    mapped = [(np.asarray(g, np.float64) - metric.center) @ metric.transform for g in groups]
    centered = np.concatenate([m - m.mean(axis=0) for m in mapped])
    cov = centered.T @ centered / (len(centered) - len(groups))
    np.testing.assert_allclose(cov, np.eye(8) * cov[0, 0], atol=1e-3 * cov[0, 0] * 8)


def test_whitening_shrinks_the_nuisance_direction() -> None:
    """The dominant within-class direction is scaled down relative to the others."""
    groups = _groups(200, k=3)
    metric = Metric.fit(groups, shrinkage=0.1, min_examples=20)
    gains = np.linalg.norm(metric.transform, axis=1)  # how much each input axis is stretched
    assert gains[0] < 0.5 * np.median(gains[1:])


def test_shrinkage_one_is_the_identity_up_to_scale() -> None:
    """Full shrinkage ignores the scatter: the transform is a multiple of the identity."""
    metric = Metric.fit(_groups(30), shrinkage=1.0, min_examples=20)
    np.testing.assert_allclose(metric.transform, np.eye(8), atol=1e-5)


def test_metric_survives_pickle() -> None:
    """A fitted metric pickles (it travels to Ray actors) and maps vectors the same."""
    metric = Metric.fit(_groups(15), min_examples=20)
    clone = pickle.loads(pickle.dumps(metric))
    x = _groups(5, k=1, seed=3)[0]
    np.testing.assert_array_equal(clone.apply(x), metric.apply(x))
    assert clone.n_examples == metric.n_examples


def test_docstring_example_runs() -> None:
    """The module's example stays true."""
    result = doctest.testmod(metric_module, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0
