"""Open-set acceptance: cross-fitted metric thresholds, the raw-space gate, discovered caps."""

from __future__ import annotations

import numpy as np

from streamlabel.core.embedder import l2_normalize
from streamlabel.core.store import PrototypeStore, StoreConfig
from streamlabel.schemas import ClassEvent
from streamlabel.testing import ManualClock

DIM = 32


def centres(n: int, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((DIM, n)))
    return q.T.astype(np.float32)


def around(c: np.ndarray, n: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return l2_normalize(c + spread / np.sqrt(DIM) * rng.standard_normal((n, DIM)))


def labelled_store(config: StoreConfig, n_classes: int = 4) -> tuple[PrototypeStore, np.ndarray]:
    cs = centres(n_classes + 2)
    store = PrototypeStore(DIM, config, clock=ManualClock(0))
    for i in range(n_classes):
        store.learn(f"c{i}", around(cs[i], 40, 1.0, seed=i))
    return store, cs


def open_metric_gate(store: PrototypeStore) -> None:
    """Overrides every class's metric threshold to -1, so only the raw gate can reject."""
    for cid in store.active_ids():
        version = store.version + 1
        state = store.get(cid).model_copy(
            update={"threshold_override": -1.0, "updated_version": version}
        )
        store.apply(ClassEvent(kind="updated", class_id=cid, state=state, store_version=version))


def test_raw_gate_rejects_an_off_domain_item_even_when_the_metric_gate_passes() -> None:
    store, cs = labelled_store(StoreConfig(raw_threshold_quantile=0.02))
    open_metric_gate(store)
    off_domain = cs[5][None, :]  # orthogonal to every class centre
    in_domain = around(cs[0], 1, 1.0, seed=99)
    result = store.classify(np.concatenate([off_domain, in_domain]))
    assert not result.accepted[0]
    assert result.accepted[1]
    assert result.class_ids[int(result.best[1])] == "c0"


def test_without_raw_gate_the_same_off_domain_item_is_accepted() -> None:
    store, cs = labelled_store(StoreConfig(raw_threshold_quantile=None))
    open_metric_gate(store)
    assert store.classify(cs[5][None, :]).accepted[0]


def test_cross_fitted_thresholds_accept_unseen_members_at_about_the_nominal_rate() -> None:
    q = 0.1
    store, cs = labelled_store(StoreConfig(threshold_quantile=q, raw_threshold_quantile=None))
    fresh = np.concatenate([around(cs[i], 500, 1.0, seed=100 + i) for i in range(4)])
    rejected = 1.0 - float(store.classify(fresh).accepted.mean())
    in_sample, _ = labelled_store(
        StoreConfig(threshold_quantile=q, raw_threshold_quantile=None, calibration_folds=1)
    )
    rejected_in_sample = 1.0 - float(in_sample.classify(fresh).accepted.mean())
    assert rejected < 2.5 * q
    assert rejected < rejected_in_sample


def test_discovered_class_threshold_is_capped_by_the_labelled_classes() -> None:
    store, cs = labelled_store(StoreConfig(discovered_threshold_cap=0.5))
    tight = around(cs[4], 60, 0.2, seed=7)  # a dense core, as clustering returns
    store.add_class("novel-x", "x", tight, status="provisional", origin="discovery")
    t = store.thresholds()
    labelled = sorted(t[f"c{i}"] for i in range(4))
    assert t["novel-x"] <= float(np.median(labelled)) + 1e-6


def test_leave_one_out_scores_are_below_in_sample_ones_and_match_a_direct_computation() -> None:
    from streamlabel.core.calibration import leave_one_out_scores

    x = around(centres(1)[0], 12, 1.0, seed=3)
    loo = leave_one_out_scores(x)
    in_sample = x @ l2_normalize(x.mean(axis=0))
    assert (loo < in_sample).all()
    direct = [float(x[i] @ l2_normalize(np.delete(x, i, axis=0).mean(axis=0))) for i in range(12)]
    np.testing.assert_allclose(loo, direct, atol=1e-5)
    assert leave_one_out_scores(x[:1]).shape == (0,)
