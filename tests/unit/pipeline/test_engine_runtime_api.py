"""The Engine's runtime API: observe, absorb, background discovery jobs and state snapshots.

The scene mirrors the distributed runtime: a *learner* Engine holds the classes
and a *worker* Engine (a replica fed the learner's class events) labels the
stream, then reports what it labelled (``Observed``) and its unknowns
(``UnknownRecord``) to the learner.
"""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from topic_world import topic_texts

from streamlabel.core.drift import DriftSignal
from streamlabel.errors import SnapshotError
from streamlabel.pipeline import Engine, RawRecord, load_settings
from streamlabel.pipeline.output import Observed
from streamlabel.schemas import UNKNOWN, Feedback, Item, SourceRef, encode
from streamlabel.testing import HashEmbedder, ManualClock

# A quick discovery: a run only when asked (or after 1000 unknowns), small clusters.
# persistence 2: these tests follow a candidate from its first sighting to its acceptance
DISCOVERY = {"run_every": 1000, "min_cluster_size": 15, "min_samples": 5, "persistence": 2}


def teach(engine: Engine, topics: list[str], n: int = 30, seed: int = 0) -> list:
    events = []
    for t in topics:
        out = engine.learn([Feedback(text=x, label=t) for x in topic_texts(t, n, seed)])
        events += out.class_events
    return events


def learner_and_worker(make_engine, **overrides: object) -> tuple[Engine, Engine]:
    """A learner taught python and java, and a worker replica holding the same classes."""
    learner = make_engine(**overrides)
    worker = make_engine(**overrides)
    worker.apply(teach(learner, ["python", "java"]))
    assert worker.store.version == learner.store.version
    return learner, worker


def haskell_items(n: int, seed: int = 5, prefix: str = "h") -> list[Item]:
    return [Item(id=f"{prefix}{i}", text=x) for i, x in enumerate(topic_texts("haskell", n, seed))]


def engine_with_haskell_unknowns(make_engine) -> Engine:
    """Three taught classes and 40 haskell items in the unknown buffer (nothing discovered)."""
    engine = make_engine(discovery=DISCOVERY)
    teach(engine, ["python", "java", "sql"], n=40)
    out = engine.process(haskell_items(40))
    assert len(engine.buffer) == len(out.unknowns) == 40
    return engine


def events_and_labels(out) -> tuple[list[tuple[str, str]], list[tuple[str, str, int, str]]]:
    return (
        [(e.kind, e.class_id) for e in out.class_events],
        sorted((r.item_id, r.label, r.revision, r.reason) for r in out.labels),
    )


# ------------------------------------------------------------------ observe
def test_observe_fills_the_item_cache_so_feedback_names_a_worker_item_by_id(
    make_engine,
) -> None:
    # No window: feedback for an item not seen yet is dead-lettered at once (it would
    # otherwise wait for the item: test_pending_feedback).
    learner, worker = learner_and_worker(make_engine, limits={"feedback_wait_s": 0})
    observed = worker.process([Item(id="w1", text="haskell monad functor ghc")]).observed
    assert observed is not None
    before = learner.learn([Feedback(item_id="w1", label="haskell")])
    assert [d.reason for d in before.dead_letters] == ["unresolvable"]

    assert learner.observe(observed).alerts == []
    out = learner.learn([Feedback(item_id="w1", label="haskell")])
    assert out.dead_letters == []
    assert [(r.item_id, r.label, r.revision, r.reason) for r in out.labels] == [
        ("w1", "haskell", 1, "feedback")
    ]
    # The class was taught the worker's vector for the item.
    np.testing.assert_allclose(
        learner.store.get("haskell").exemplars[0], observed.vectors[0], atol=1e-6
    )


def test_observe_does_not_downgrade_an_item_the_engine_already_revised(make_engine) -> None:
    learner, worker = learner_and_worker(make_engine)
    observed = worker.process([Item(id="w1", text="haskell monad functor ghc")]).observed
    assert observed is not None
    learner.observe(observed)
    revised = learner.learn([Feedback(item_id="w1", label="haskell")]).labels[0]
    assert revised.revision == 1

    learner.observe(observed)  # a late observation of revision 0 arrives again
    again = learner.learn([Feedback(item_id="w1", label="haskell")]).labels[0]
    assert again.revision == 2  # continues from the learner's revision 1, not from 0


def test_observe_takes_a_newer_revision_reported_by_a_worker(make_engine) -> None:
    learner, worker = learner_and_worker(make_engine)
    observed = worker.process([Item(id="w1", text="python pandas numpy")]).observed
    assert observed is not None
    newer = Observed(
        item_ids=observed.item_ids,
        vectors=observed.vectors,
        texts=observed.texts,
        labels=observed.labels,
        revisions=[4],
        scores=observed.scores,
        is_unknown=observed.is_unknown,
    )
    learner.observe(observed)
    learner.observe(newer)
    out = learner.learn([Feedback(item_id="w1", label="python")])
    assert [r.revision for r in out.labels] == [5]


def test_observe_feeds_every_drift_detector_when_drift_is_enabled(make_engine) -> None:
    learner = make_engine(drift={"enabled": True})
    worker = make_engine()
    worker.apply(teach(learner, ["python", "java"]))
    items = [Item(id=str(i), text=x) for i, x in enumerate(topic_texts("python", 12, 3))]
    observed = worker.process(items).observed
    assert observed is not None
    assert learner.detectors
    learner.observe(observed)
    assert [d.n_seen for d in learner.detectors] == [12] * len(learner.detectors)


def test_observe_without_drift_detection_raises_no_alerts(make_engine) -> None:
    learner, worker = learner_and_worker(make_engine)
    observed = worker.process(haskell_items(20)).observed
    assert observed is not None
    assert learner.detectors == []
    assert learner.observe(observed).alerts == []


class _FiringDetector:
    """A detector that records what it saw and fires once, on its first batch."""

    kind = "unknown_rate"
    detection_bound = 1

    def __init__(self) -> None:
        self.n_seen = 0
        self.batches: list[list[str]] = []

    def update(self, obs) -> list[DriftSignal]:
        self.batches.append(list(obs.labels))
        self.n_seen += len(obs.labels)
        if len(self.batches) > 1:
            return []
        return [
            DriftSignal(
                kind="unknown_rate",
                statistic=3.0,
                threshold=1.0,
                p_value=None,
                window=len(obs.labels),
                reference=10,
                at_item=self.n_seen - 1,
                severity="critical",
                affected_classes=(),
                detail="unknown rate jumped",
            )
        ]

    def reset(self) -> None:
        self.n_seen = 0


def test_observe_turns_a_detector_signal_into_a_drift_alert(make_engine) -> None:
    learner, worker = learner_and_worker(make_engine)
    observed = worker.process(haskell_items(5)).observed
    assert observed is not None
    detector = _FiringDetector()
    learner.detectors = [detector]
    alerts = learner.observe(observed).alerts
    assert detector.batches == [list(observed.labels)]
    assert [(a.kind, a.at_item, a.severity, a.store_version) for a in alerts] == [
        ("unknown_rate", 4, "critical", learner.store.version)
    ]
    assert learner.observe(observed).alerts == []


# ------------------------------------------------------------------- absorb
def test_absorbed_unknowns_are_buffered_and_count_toward_discovery_due(make_engine) -> None:
    learner, worker = learner_and_worker(make_engine, discovery={"run_every": 5})
    first = worker.process(haskell_items(3, prefix="a")).unknowns
    second = worker.process(haskell_items(2, seed=9, prefix="b")).unknowns
    assert len(first) == 3
    assert len(second) == 2

    assert learner.absorb(first).labels == []
    assert learner.buffer.ids == ["a0", "a1", "a2"]
    assert not learner.discovery_due()
    learner.absorb(second)
    assert learner.buffer.ids == ["a0", "a1", "a2", "b0", "b1"]
    assert learner.discovery_due()
    np.testing.assert_allclose(learner.buffer.vectors[0], first[0].vector, atol=1e-6)


def test_absorbed_unknowns_can_be_named_by_feedback(make_engine) -> None:
    learner, worker = learner_and_worker(make_engine)
    unknowns = worker.process(haskell_items(1)).unknowns
    learner.absorb(unknowns)
    out = learner.learn([Feedback(item_id="h0", label="haskell")])
    assert out.dead_letters == []
    assert [(r.item_id, r.label, r.revision) for r in out.labels] == [("h0", "haskell", 1)]
    assert "h0" not in learner.buffer.ids


def test_absorbing_nothing_changes_nothing(make_engine) -> None:
    learner, _ = learner_and_worker(make_engine, discovery={"run_every": 1})
    out = learner.absorb([])
    assert (out.labels, out.class_events, out.dead_letters) == ([], [], [])
    assert len(learner.buffer) == 0
    assert not learner.discovery_due()


def test_a_stale_unknown_a_new_class_accepts_is_reclassified_not_buffered(make_engine) -> None:
    learner, worker = learner_and_worker(make_engine, discovery={"run_every": 1})
    unknown = worker.process([Item(id="w1", text="haskell monad functor ghc lazy")]).unknowns[0]
    assert unknown.store_version == learner.store.version
    teach(learner, ["haskell"])  # the learner moved on: the item now has a class
    assert unknown.store_version < learner.store.version

    out = learner.absorb([unknown])
    assert len(out.labels) == 1
    record = out.labels[0]
    assert (record.item_id, record.label, record.reason) == ("w1", "haskell", "reclassified")
    assert record.revision == unknown.revision + 1
    assert record.store_version == learner.store.version
    assert not record.is_unknown
    assert len(learner.buffer) == 0
    assert not learner.discovery_due()


def test_a_stale_unknown_no_class_accepts_is_still_buffered(make_engine) -> None:
    learner, worker = learner_and_worker(make_engine)
    unknown = worker.process([Item(id="c1", text="css flexbox grid selector margin")]).unknowns[0]
    teach(learner, ["haskell"])
    out = learner.absorb([unknown])
    assert out.labels == []
    assert learner.buffer.ids == ["c1"]


def test_an_unknown_at_the_current_store_version_is_buffered_without_a_label(
    make_engine,
) -> None:
    learner, worker = learner_and_worker(make_engine)
    unknowns = worker.process(haskell_items(4)).unknowns
    assert {u.store_version for u in unknowns} == {learner.store.version}
    out = learner.absorb(unknowns)
    assert out.labels == []
    assert learner.buffer.ids == ["h0", "h1", "h2", "h3"]


def test_absorb_with_discovery_disabled_buffers_nothing(make_engine) -> None:
    learner, worker = learner_and_worker(make_engine, discovery={"enabled": False})
    learner.absorb(worker.process(haskell_items(5)).unknowns)
    assert len(learner.buffer) == 0
    assert not learner.discovery_due()


def test_a_late_unknown_report_does_not_undo_a_feedback_revision(make_engine) -> None:
    learner, worker = learner_and_worker(make_engine)
    out = worker.process([Item(id="w1", text="haskell monad functor ghc")])
    assert out.observed is not None
    learner.observe(out.observed)
    revised = learner.learn([Feedback(item_id="w1", label="java")]).labels[0]
    assert (revised.label, revised.revision) == ("java", 1)

    learner.absorb(out.unknowns)  # the worker's unknown report for w1, revision 0
    assert "w1" not in learner.buffer.ids
    again = learner.learn([Feedback(item_id="w1", label="java")]).labels[0]
    assert again.revision == 2


# ---------------------------------------------------------------- discovery
def test_a_discovery_job_finished_on_the_engine_equals_discover(make_engine) -> None:
    direct = engine_with_haskell_unknowns(make_engine)
    staged = engine_with_haskell_unknowns(make_engine)
    for _ in range(2):  # the first run sees a candidate, the second accepts it
        expected = direct.discover()
        job = staged.begin_discovery()
        job.run()
        got = staged.finish_discovery(job)
        assert events_and_labels(got) == events_and_labels(expected)
    assert any(kind == "created" for kind, _ in events_and_labels(got)[0])
    assert staged.store.version == direct.store.version
    assert staged.buffer.ids == direct.buffer.ids
    assert staged.discoverer.state() == direct.discoverer.state()


def test_keep_candidates_says_whether_a_run_found_a_new_class(make_engine) -> None:
    engine = engine_with_haskell_unknowns(make_engine)
    job = engine.begin_discovery()
    with pytest.raises(ValueError, match="not run"):
        engine.keep_candidates(job)
    job.run()  # persistence 2: a candidate, nothing to adopt yet
    assert not engine.keep_candidates(job)
    assert engine.discoverer.state()["candidates"]
    engine.finish_discovery(job)
    second = engine.begin_discovery()
    second.run()
    assert engine.keep_candidates(second)


def test_candidates_kept_before_adoption_give_a_restored_engine_the_same_ids(
    make_engine,
) -> None:
    # Persistence 1: a cluster is a class at first sight. The learner checkpoints
    # between keep_candidates and finish_discovery; a crash in between loses the
    # adoption, and the restored engine, whose buffer has grown meanwhile, must
    # still name the class as the lost adoption did.
    first_sight = {**DISCOVERY, "persistence": 1}
    engine = make_engine(discovery=first_sight)
    teach(engine, ["python", "java", "sql"], n=40)
    engine.process(haskell_items(25))
    job = engine.begin_discovery()
    job.run()
    assert engine.keep_candidates(job)
    checkpoint = msgpack_round_trip(engine.state())
    lost = [e.class_id for e in engine.finish_discovery(job).class_events]
    assert lost

    restored = make_engine(discovery=first_sight)
    restored.load_state(checkpoint)
    # read again after the crash: newer items that move the cluster's centre
    late = [it.text for it in haskell_items(25)[13:]] * 3
    restored.process([Item(id=f"late{i}", text=t) for i, t in enumerate(late)])
    assert len(restored.buffer) == 61
    found = [e.class_id for e in restored.discover().class_events]
    assert found == lost


def test_begin_discovery_resets_discovery_due(make_engine) -> None:
    learner, worker = learner_and_worker(make_engine, discovery={**DISCOVERY, "run_every": 10})
    learner.absorb(worker.process(haskell_items(12)).unknowns)
    assert learner.discovery_due()
    learner.begin_discovery()
    assert not learner.discovery_due()


def test_a_discovery_job_is_not_affected_by_changes_to_the_engine_while_it_runs(
    make_engine,
) -> None:
    changed = engine_with_haskell_unknowns(make_engine)
    untouched = engine_with_haskell_unknowns(make_engine)
    changed.discover()  # a candidate, to be accepted by the jobs
    untouched.discover()
    job = changed.begin_discovery()
    reference = untouched.begin_discovery().run()

    # The engine goes on while the job runs: new classes, new unknowns, feedback.
    teach(changed, ["css"])
    changed.process([Item(id=f"x{i}", text="rust borrow checker lifetime") for i in range(5)])
    changed.learn([Feedback(item_id="h0", label="haskell"), Feedback(item_id="h1", label="css")])
    changed.retire("python")
    assert len(changed.buffer) != len(job.buffer)

    report = job.run()
    assert len(job.buffer) == 40
    assert "css" not in job.store.states()
    assert [(f.class_id, f.item_ids) for f in report.findings] == [
        (f.class_id, f.item_ids) for f in reference.findings
    ]
    assert report.findings


# ----------------------------------------------------------------- snapshot
def msgpack_round_trip(state: dict) -> dict:
    return msgpack.unpackb(msgpack.packb(state, use_bin_type=True), raw=False, strict_map_key=False)


def test_engine_state_survives_msgpack_with_classes_buffer_and_candidates(make_engine) -> None:
    original = engine_with_haskell_unknowns(make_engine)
    original.discover()  # leaves a discovery candidate awaiting persistence
    original.process(haskell_items(3, seed=8, prefix="late"))
    assert original.discoverer.state()["candidates"]

    restored = make_engine(discovery=DISCOVERY)
    restored.load_state(msgpack_round_trip(original.state()))

    assert restored.store.version == original.store.version
    assert restored.store.states() == original.store.states()
    assert restored.buffer.ids == original.buffer.ids
    assert restored.buffer.texts == original.buffer.texts
    np.testing.assert_array_equal(restored.buffer.vectors, original.buffer.vectors)
    assert [restored.buffer.revision(i) for i in range(len(restored.buffer))] == [
        original.buffer.revision(i) for i in range(len(original.buffer))
    ]
    assert restored.discoverer.state() == original.discoverer.state()
    assert restored.discoverer.runs == 1
    assert restored.state()["unknowns_since_run"] == 3


def test_a_restored_engine_labels_and_discovers_like_the_original(make_engine) -> None:
    original = engine_with_haskell_unknowns(make_engine)
    original.discover()
    restored = make_engine(discovery=DISCOVERY)
    restored.load_state(msgpack_round_trip(original.state()))

    items = [Item(id=f"q{i}", text=x) for i, x in enumerate(topic_texts("sql", 5, 4))]
    a, b = original.process(items).labels, restored.process(items).labels
    assert [(r.label, r.score, r.store_version) for r in a] == [
        (r.label, r.score, r.store_version) for r in b
    ]
    created = [e.class_id for e in restored.discover().class_events]
    assert created == [e.class_id for e in original.discover().class_events]
    assert created  # the restored candidate persisted: the second run accepts it


def _bad_format(state: dict) -> None:
    state["format"] = 99


def _no_store(state: dict) -> None:
    del state["store"]


def _no_discoverer(state: dict) -> None:
    del state["discoverer"]


def _misaligned_buffer(state: dict) -> None:
    state["buffer"]["ids"] = [*state["buffer"]["ids"], "extra"]


def _bad_store_format(state: dict) -> None:
    state["store"]["format"] = -1


@pytest.mark.parametrize(
    "spoil", [_bad_format, _no_store, _no_discoverer, _misaligned_buffer, _bad_store_format]
)
def test_a_state_of_another_format_or_shape_raises_snapshot_error(make_engine, spoil) -> None:
    engine = make_engine()
    teach(engine, ["python"])
    engine.process(haskell_items(2))
    state = msgpack_round_trip(engine.state())
    spoil(state)
    with pytest.raises(SnapshotError):
        make_engine().load_state(state)


def test_a_state_of_another_dimension_raises_snapshot_error(make_engine, clock) -> None:
    engine = make_engine()
    teach(engine, ["python"])
    narrow = Engine(load_settings(drift={"enabled": False}), HashEmbedder(dim=32), clock=clock)
    with pytest.raises(SnapshotError, match="dimension"):
        narrow.load_state(engine.state())


def test_a_rejected_state_leaves_the_store_and_buffer_as_they_were(make_engine) -> None:
    engine = make_engine()
    teach(engine, ["python", "java"])
    engine.process(haskell_items(3))
    version, ids = engine.store.version, engine.buffer.ids
    state = engine.state()
    state["format"] = 99
    with pytest.raises(SnapshotError):
        engine.load_state(state)
    assert engine.store.version == version
    assert engine.buffer.ids == ids


def test_a_rejected_state_leaves_the_discoverer_as_it_was(make_engine) -> None:
    engine = make_engine()
    teach(engine, ["python"])
    state = engine.state()
    state["discoverer"] = {"runs": 7}  # no candidates: invalid
    with pytest.raises(SnapshotError):
        engine.load_state(state)
    assert engine.discoverer.runs == 0


# ----------------------------------------------------------------- observed
def test_process_reports_observed_rows_aligned_with_its_labels(make_engine) -> None:
    engine = make_engine()
    teach(engine, ["python", "java"])
    vector = np.asarray(engine.embedder.embed(["java maven spring jar"])[0]) * 3.0
    batch = [
        Item(id="p", text="python pandas numpy dict"),
        RawRecord(b"\xc1 not msgpack", SourceRef(topic="items", partition=0, offset=7)),
        Item(id="h", text="haskell monad functor ghc"),
        RawRecord(
            encode(Item(id="v", vector=vector.tolist())),
            SourceRef(topic="items", partition=0, offset=8),
        ),
    ]
    out = engine.process(batch)
    observed = out.observed
    assert observed is not None
    assert len(out.dead_letters) == 1
    assert observed.item_ids == [r.item_id for r in out.labels] == ["p", "h", "v"]
    assert observed.labels == [r.label for r in out.labels]
    assert observed.labels[1] == UNKNOWN
    assert observed.revisions == [r.revision for r in out.labels]
    assert observed.texts == ["python pandas numpy dict", "haskell monad functor ghc", None]
    assert observed.is_unknown.tolist() == [r.is_unknown for r in out.labels]
    assert observed.vectors.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(observed.vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(observed.vectors[2], vector / np.linalg.norm(vector), atol=1e-5)
    assert observed.scores.shape == (3,)
    assert observed.scores[1] == pytest.approx(out.labels[1].score)


def test_process_reports_an_empty_observed_when_every_input_is_dead(make_engine) -> None:
    engine = make_engine()
    teach(engine, ["python"])
    out = engine.process([RawRecord(None, SourceRef(topic="items", partition=0, offset=0))])
    assert out.observed is not None
    assert len(out.observed) == 0
    assert out.labels == []


def test_learn_and_absorb_leave_observed_empty(make_engine) -> None:
    engine = make_engine()
    assert engine.learn([Feedback(text="python list", label="python")]).observed is None
    assert engine.absorb([]).observed is None


def test_a_reclassified_label_is_stamped_with_the_injected_clock(
    make_engine, clock: ManualClock
) -> None:
    learner, worker = learner_and_worker(make_engine)
    unknown = worker.process([Item(id="w1", text="haskell monad functor ghc lazy")]).unknowns[0]
    teach(learner, ["haskell"])
    clock.advance(50)
    assert learner.absorb([unknown]).labels[0].emitted_at == 1_050.0
