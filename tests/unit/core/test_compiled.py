"""The store's compiled view: open-set classification, the learned metric, the thresholds.

Synthetic data: classes are unit vectors scattered around orthonormal centres
in a small dimension, so the right answer is known for every vector.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamlabel.core.class_arrays import arrays_of
from streamlabel.core.compiled import compile_store
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.store import Classification, StoreConfig
from streamlabel.schemas import UNKNOWN, ClassEvent

from store_world import DIM, Blobs, make_store  # isort: skip  (tests/unit/core)


def _labels(result: Classification) -> list[str]:
    return [result.label(i) for i in range(len(result.best))]


# ---------------------------------------------------------- classification
def test_classify_finds_the_right_class_of_clustered_data() -> None:
    """Held-out vectors around each class centre get that class and are accepted."""
    blobs = Blobs()
    store = make_store()
    for c in range(4):
        store.learn(f"c{c}", blobs.around(c, 30))
    truth = np.repeat(np.arange(4), 25)
    result = store.classify(np.concatenate([blobs.around(c, 25) for c in range(4)]))
    assert not store.metric.is_identity
    assert [result.class_ids[b] for b in result.best] == [f"c{c}" for c in truth]
    assert result.accepted.mean() >= 0.85
    assert (result.margins >= 0).all()
    assert (result.top_idx[:, 0] == result.best).all()
    assert (np.diff(result.top_scores[:, :4], axis=1) <= 0).all()


def test_a_far_away_vector_is_unknown() -> None:
    """A vector unlike every class is rejected: label ``unknown``, ``accepted`` False."""
    blobs = Blobs()
    store = make_store()
    for c in range(3):
        store.learn(f"c{c}", blobs.around(c, 30))
    far = l2_normalize(blobs.centres[5] + 0.1 * blobs.centres[4])[None, :]
    result = store.classify(far)
    assert not result.accepted[0]
    assert result.label(0) == UNKNOWN
    assert result.scores[0] < result.thresholds[0]


def test_an_empty_store_calls_everything_unknown() -> None:
    """Before any class exists every item is unknown."""
    result = make_store().classify(Blobs().around(0, 3))
    assert _labels(result) == [UNKNOWN] * 3
    assert (result.best == -1).all()


def test_classify_of_no_rows_returns_empty_arrays() -> None:
    """An empty batch is fine and gives empty results."""
    store = make_store()
    store.learn("c0", Blobs().around(0, 3))
    result = store.classify(np.zeros((0, DIM), np.float32))
    assert result.best.shape == (0,)
    assert result.top_idx.shape == (0, store.config.top_k)


@pytest.mark.parametrize("top_k", [1, 2, 3, 8])
def test_classify_reports_top_k_candidates(top_k: int) -> None:
    """Any ``top_k`` the settings allow (≥ 1) works; missing candidates are padded with -1."""
    blobs = Blobs()
    store = make_store(StoreConfig(top_k=top_k))
    for c in range(3):
        store.learn(f"c{c}", blobs.around(c, 10))
    result = store.classify(blobs.around(1, 4))
    assert result.top_idx.shape == (4, top_k)
    assert [result.class_ids[b] for b in result.best] == ["c1"] * 4
    present = min(top_k, 3)
    assert (result.top_idx[:, :present] >= 0).all()
    assert (result.top_idx[:, present:] == -1).all()


# -------------------------------------------------------------- the metric
def _nuisance_data(n_per_class: int, seed: int, dim: int = 16, k: int = 4):
    """Classes that differ along small offsets, plus a huge shared nuisance direction.

    Near a base direction the sphere is almost flat: class ``c`` is shifted by 0.08
    along axis ``c + 1``, every item moves ±0.3 along ``w`` (a mix of those same
    axes), and isotropic noise is small. Cosine to the class means is dominated by
    ``w``; whitening by the within-class scatter removes it.
    """
    rng = np.random.default_rng(seed)
    base = np.zeros(dim)
    base[0] = 1.0
    offsets = np.zeros((k, dim))
    offsets[np.arange(k), 1 + np.arange(k)] = 0.08
    w = np.zeros(dim)
    w[1 : 1 + k] = 1.0
    w /= np.linalg.norm(w)
    y = np.repeat(np.arange(k), n_per_class)
    x = (
        base
        + offsets[y]
        + 0.01 * rng.standard_normal((len(y), dim))
        + 0.3 * rng.standard_normal((len(y), 1)) * w
    )
    return l2_normalize(x), y


def test_learned_metric_improves_nearest_prototype_accuracy() -> None:
    """Whitening by within-class scatter beats plain cosine when a nuisance direction dominates."""
    x_train, y_train = _nuisance_data(40, seed=0)
    x_test, y_test = _nuisance_data(100, seed=1)
    accuracy = {}
    for name, min_examples in [("learned", 20), ("cosine", 10**9)]:
        store = make_store(StoreConfig(metric_min_examples=min_examples), dim=16)
        for c in range(4):
            store.learn(f"c{c}", x_train[y_train == c])
        assert store.metric.is_identity == (name == "cosine")
        result = store.classify(x_test)
        predicted = np.array([int(result.class_ids[b][1:]) for b in result.best])
        accuracy[name] = float((predicted == y_test).mean())
    assert accuracy["learned"] >= 0.95
    assert accuracy["cosine"] <= 0.7


def test_metric_is_learned_only_from_labelled_classes() -> None:
    """Discovered and zero-shot classes do not shape the metric (they carry no labels)."""
    blobs = Blobs()
    store = make_store()
    store.learn("a", blobs.around(0, 15))
    store.learn("b", blobs.around(1, 15))
    before = store.metric
    store.add_class("novel-1", "n", blobs.around(2, 40), status="provisional", origin="discovery")
    store.register_zero_shot("z", blobs.centres[3], "zed")
    after = store.metric
    assert after.n_examples == before.n_examples == 30
    np.testing.assert_array_equal(after.transform, before.transform)


def test_thresholds_are_calibrated_per_class_and_shifted_by_the_offset() -> None:
    """Each class gets a quantile threshold; ``threshold_offset`` lowers all; overrides win."""
    blobs = Blobs()
    base = make_store(StoreConfig(calibration_folds=1))
    lenient = make_store(StoreConfig(calibration_folds=1, threshold_offset=0.1))
    a, b = blobs.around(0, 20), blobs.around(1, 20)
    for store in (base, lenient):
        store.learn("a", a)
        store.learn("b", b)
    q = base.config.threshold_quantile
    assert base.thresholds()["a"] == pytest.approx(base.member_score_quantile("a", q), abs=1e-6)
    for cid in ("a", "b"):
        assert lenient.thresholds()[cid] == pytest.approx(base.thresholds()[cid] - 0.1, abs=1e-6)
    state = base.get("a").model_copy(update={"threshold_override": 0.123, "updated_version": 99})
    base.apply(ClassEvent(kind="updated", class_id="a", state=state, store_version=99))
    assert base.thresholds()["a"] == pytest.approx(0.123)


# ------------------------------------------------------------ the pure seam
def test_compile_store_is_a_pure_function_of_the_class_states() -> None:
    """Compiling the states alone gives the view the store classifies with."""
    blobs = Blobs()
    store = make_store(StoreConfig(max_sub_prototypes=2))
    for c in range(3):
        store.learn(f"c{c}", blobs.around(c, 12))
    store.add_class("novel-1", "n", blobs.around(3, 20), status="provisional", origin="discovery")
    store.retire("c2")
    states = store.states()
    view = compile_store(
        states, {k: arrays_of(s, DIM) for k, s in states.items()}, store.config, dim=DIM
    )
    assert view.class_ids == store.active_ids() == ["c0", "c1", "novel-1"]
    assert dict(zip(view.class_ids, view.thresholds.tolist(), strict=True)) == store.thresholds()
    probe = np.concatenate([blobs.around(c, 6) for c in range(5)])
    ours, theirs = view.classify(probe, store.config.top_k), store.classify(probe)
    for field in ("best", "scores", "margins", "thresholds", "accepted", "top_idx", "vectors"):
        np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field))
