"""Incremental store updates: one class event derives one class; the metric refits on a schedule.

The contract: whatever the history, a store's labels, scores and thresholds
are those of a store compiled from scratch from the same class states under
the same metric fit (:func:`compile_store` with ``fit=``); stores fed the same
events refit at the same versions; a replica that starts late converges to the
leader's metric at the next tick.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamlabel.core.class_arrays import arrays_of
from streamlabel.core.compiled import compile_store
from streamlabel.core.store import Classification, PrototypeStore, StoreConfig
from streamlabel.schemas import ClassEvent
from streamlabel.testing import ManualClock

from store_world import DIM, Blobs  # isort: skip  (tests/unit/core)

SCHEDULED = StoreConfig(
    exemplar_capacity=16,
    max_sub_prototypes=2,
    metric_refit_exact_below=0,
    metric_refit_share=0.5,
    metric_refit_every=8,
)
"""Refits rare enough that the metric is often older than the states."""


def _store(config: StoreConfig = SCHEDULED) -> PrototypeStore:
    return PrototypeStore(DIM, config, clock=ManualClock(1_000.0))


def _assert_same(a: Classification, b: Classification) -> None:
    assert a.class_ids == b.class_ids
    assert [a.label(i) for i in range(len(a.best))] == [b.label(i) for i in range(len(b.best))]
    np.testing.assert_array_equal(a.best, b.best)
    np.testing.assert_array_equal(a.accepted, b.accepted)
    np.testing.assert_array_equal(a.top_idx, b.top_idx)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    np.testing.assert_allclose(a.top_scores, b.top_scores, atol=1e-6)
    np.testing.assert_allclose(a.thresholds, b.thresholds, atol=1e-6)


def _steps(store: PrototypeStore, blobs: Blobs) -> list[object]:
    """A stream of every kind of change, as callables on ``store``."""
    s = store
    return [
        lambda: s.learn("python", blobs.around(0, 12)),
        lambda: s.learn("sql", blobs.around(1, 12)),
        lambda: s.learn("rust", blobs.around(2, 10)),
        lambda: s.learn("python", blobs.around(0, 4)),
        lambda: s.add_class(
            "novel-1", "n1", blobs.around(3, 20), status="provisional", origin="discovery"
        ),
        lambda: s.learn("go", blobs.around(4, 9)),
        lambda: s.rename("sql", "databases"),
        lambda: s.set_threshold("rust", 0.2),
        lambda: s.extend("novel-1", blobs.around(3, 5), cause="discovery"),
        lambda: s.register_zero_shot("billing", blobs.centres[5], "invoices"),
        lambda: s.learn("databases", blobs.around(1, 6)),
        lambda: s.merge("go", "rust"),
        lambda: s.retire("billing"),
        lambda: s.split_off("python", "django", s.get("python").exemplars.array[:3], ["a"] * 3),
        lambda: s.learn("python", blobs.around(0, 3)),
        lambda: s.set_threshold("rust", None),
        lambda: s.learn("billing", blobs.around(5, 8)),
        lambda: s.learn("sql", blobs.around(1, 2)),
    ]


def test_every_step_agrees_with_a_store_compiled_from_scratch_under_the_same_metric() -> None:
    """After each change the incremental store labels, scores and thresholds like a full
    recompile of its states with its metric fit (the metric often older than the states)."""
    blobs = Blobs()
    store = _store()
    probe = np.concatenate([blobs.around(c, 8) for c in range(6)])
    stale = 0
    for step in _steps(store, blobs):
        step()
        ours = store.classify(probe)
        fit = store._compile().fit
        states = store.states()
        arrays = {k: arrays_of(v, DIM) for k, v in states.items()}
        view = compile_store(states, arrays, store.config, dim=DIM, fit=fit)
        _assert_same(ours, view.classify(probe, store.config.top_k))
        assert dict(zip(view.class_ids, view.thresholds.tolist(), strict=True)) == pytest.approx(
            store.thresholds(), abs=1e-6
        )
        for cid in view.class_ids:
            np.testing.assert_allclose(
                np.sort(view.member_scores(cid)), np.sort(store._compile().member_scores(cid))
            )
        stale += store.metric_version < store.version
    assert stale >= 5  # the schedule kept the metric older than the states for a while


def _events(blobs: Blobs) -> tuple[PrototypeStore, list[ClassEvent], list[int]]:
    leader = _store()
    events: list[ClassEvent] = []
    fits: list[int] = []
    for step in _steps(leader, blobs):
        out = step()
        events.extend(out if isinstance(out, list) else [out])  # type: ignore[arg-type]
        fits.append(leader.metric_version)
    return leader, events, fits


def test_stores_fed_the_same_events_refit_at_the_same_versions() -> None:
    """Replay is deterministic: a replica applying the leader's events in order refits the
    metric at the same versions, to the same metric, and labels alike at every step."""
    blobs = Blobs()
    leader = _store()
    replica = _store()
    probe = np.concatenate([blobs.around(c, 6) for c in range(6)])
    versions = []
    for step in _steps(leader, blobs):
        out = step()
        for event in out if isinstance(out, list) else [out]:  # type: ignore[union-attr]
            replica.apply(event)  # type: ignore[arg-type]
        assert replica.metric_version == leader.metric_version
        assert replica._compile().fit.same_as(leader._compile().fit)
        _assert_same(replica.classify(probe), leader.classify(probe))
        versions.append(leader.metric_version)
    assert len(set(versions)) >= 3  # it did refit, more than once


def test_a_late_replica_from_the_compacted_changelog_converges_at_the_next_tick() -> None:
    """A replica that starts from the last event per class fits on the states it caught up
    to; after the next tick it holds the leader's metric and labels exactly as it does."""
    blobs = Blobs()
    leader, events, _ = _events(blobs)
    assert leader.metric_version < leader.version  # the leader's metric is older
    last = {e.class_id: e for e in events}
    replica = _store()
    for event in sorted(last.values(), key=lambda e: e.store_version):
        replica.apply(event)
    replica.refresh()
    probe = np.concatenate([blobs.around(c, 6) for c in range(6)])
    tick = leader._view.schedule.tick()
    changed_before_tick = False
    while leader.version // tick == (leader.version + 1) // tick or not changed_before_tick:
        replica.apply(leader.learn("sql", blobs.around(1, 1)))
        changed_before_tick = True
    replica.apply(leader.learn("sql", blobs.around(1, 1)))  # crosses the tick
    assert leader.metric_version == leader.version
    assert replica._compile().fit.same_as(leader._compile().fit)
    _assert_same(replica.classify(probe), leader.classify(probe))
    for _ in range(3):  # and they stay together
        replica.apply(leader.learn("python", blobs.around(0, 2)))
        assert replica._compile().fit.same_as(leader._compile().fit)


def test_a_snapshot_keeps_the_metric_in_force() -> None:
    """A restored store continues with the snapshot's metric fit (not one fitted on its
    states), so it labels as the store it came from, and refits when that one does."""
    blobs = Blobs()
    leader, _, _ = _events(blobs)
    assert leader.metric_version < leader.version
    restored = PrototypeStore.restore(leader.snapshot(), SCHEDULED, clock=ManualClock(0.0))
    probe = np.concatenate([blobs.around(c, 6) for c in range(6)])
    assert restored.metric_version == leader.metric_version
    _assert_same(restored.classify(probe), leader.classify(probe))
    for c, name in [(0, "python"), (1, "databases"), (2, "rust")] * 4:
        restored.apply(leader.learn(name, blobs.around(c, 3)))
        assert restored.metric_version == leader.metric_version


@pytest.mark.parametrize("classes", [40, 400])
def test_one_class_event_derives_one_class_whatever_the_store_size(classes: int) -> None:
    """The work of a class event does not grow with the classes: it derives its own class
    (rows, member scores, quantiles) and no other, as long as the metric is not refitted."""
    rng = np.random.default_rng(0)
    config = StoreConfig(exemplar_capacity=8, metric_refit_exact_below=0, metric_refit_share=1.0,
                         metric_refit_every=4096)  # fmt: skip
    store = PrototypeStore(16, config, clock=ManualClock(0.0))
    centres = rng.standard_normal((classes, 16)).astype(np.float32)
    for k in range(classes):
        x = centres[k] + 0.1 * rng.standard_normal((4, 16)).astype(np.float32)
        store.add_class(f"c{k}", f"c{k}", x / np.linalg.norm(x, axis=1, keepdims=True),
                        status="known", origin="feedback")  # fmt: skip
    store.refresh()
    fit = store.metric_version
    for k in range(5):
        before = store.classes_derived
        store.learn(f"c{k}", centres[k : k + 1] / np.linalg.norm(centres[k]))
        store.refresh()
        assert store.classes_derived - before == 1
    store.retire("c7")
    before = store.classes_derived
    store.refresh()
    assert store.classes_derived == before  # a removal derives nothing
    assert "c7" not in store.thresholds()
    assert store.metric_version == fit


def test_events_that_do_not_change_the_metric_inputs_never_refit_it() -> None:
    """Renames, thresholds, discovered and zero-shot classes leave the metric as it is."""
    blobs = Blobs()
    store = _store(StoreConfig())  # refits at every input change while small
    store.learn("a", blobs.around(0, 15))
    store.learn("b", blobs.around(1, 15))
    fit = store.metric_version
    store.rename("a", "alpha")
    store.set_threshold("b", 0.4)
    store.add_class("novel-1", "n", blobs.around(2, 30), status="provisional", origin="discovery")
    store.register_zero_shot("z", blobs.centres[3], "zed")
    assert store.metric_version == fit
    store.learn("a", blobs.around(0, 2))
    assert store.metric_version == store.version  # a small store refits at every input change


def test_the_share_rule_refits_once_enough_of_the_labelled_examples_changed() -> None:
    """Above the exact regime, small changes wait; a change of ``share`` of the labelled
    exemplars at the last refit triggers one."""
    blobs = Blobs()
    config = StoreConfig(metric_refit_exact_below=0, metric_refit_share=0.25,
                         metric_refit_every=1024)  # fmt: skip
    store = _store(config)
    for c in range(4):
        store.learn(f"c{c}", blobs.around(c, 10))  # the first fit: from the identity, at once
    fit = store.metric_version
    assert fit > 0
    store.learn("c0", blobs.around(0, 4))
    assert store.metric_version == fit  # 4 of 40 changed
    store.learn("c1", blobs.around(1, 6))
    assert store.metric_version == store.version  # 10 of 40: a quarter
