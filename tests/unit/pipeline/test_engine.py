"""Behaviour of the Engine: class-incremental learning, open set, DLQ, discovery, replicas."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from topic_world import TOPICS, topic_texts

from streamlabel.pipeline import Engine, RawRecord
from streamlabel.schemas import UNKNOWN, ClassEvent, Feedback, Item, SourceRef, encode


def teach(engine: Engine, topics: list[str], n: int = 30, seed: int = 0) -> None:
    for t in topics:
        engine.learn([Feedback(text=x, label=t) for x in topic_texts(t, n, seed)])


def raw(value: bytes | None, offset: int) -> RawRecord:
    return RawRecord(value, SourceRef(topic="items", partition=3, offset=offset), key=b"k")


def test_new_label_creates_class_at_once_and_is_used_by_the_next_batch(make_engine) -> None:
    engine = make_engine()
    out = engine.learn([Feedback(text="python list dict pandas", label="python")])
    assert [e.kind for e in out.class_events] == ["created"]
    assert engine.store.active_ids() == ["python"]
    teach(engine, ["python", "java"])
    labels = engine.process([Item(id="a", text="java spring maven jar")]).labels
    assert labels[0].label == "java"
    assert labels[0].class_name == "java"
    assert labels[0].revision == 0
    assert labels[0].store_version == engine.store.version


def test_label_record_carries_source_position_model_and_timings(make_engine) -> None:
    engine = make_engine()
    teach(engine, ["python", "java"])
    rec = engine.process([raw(encode(Item(id="x", text="python pandas numpy")), 41)]).labels[0]
    assert rec.source == SourceRef(topic="items", partition=3, offset=41)
    assert rec.model_id == "hash-bow-64"
    assert set(rec.timings_ms) == {"decode", "embed", "classify"}
    assert rec.top_k[0].class_id == "python"
    assert rec.margin >= 0


def test_item_fitting_no_class_is_unknown_and_goes_to_the_unknowns_output(make_engine) -> None:
    engine = make_engine()
    teach(engine, ["python", "java", "sql"])
    out = engine.process([Item(id="u", text="haskell monad functor typeclass ghc")])
    assert out.labels[0].label == UNKNOWN
    assert out.labels[0].is_unknown
    assert [u.item_id for u in out.unknowns] == ["u"]
    assert len(out.unknowns[0].vector) == 64
    assert len(engine.buffer) == 1


def test_items_with_vectors_skip_the_model(make_engine) -> None:
    engine = make_engine()
    teach(engine, ["python", "java"])
    vec = engine.embedder.embed(["python pandas numpy dict"])[0]
    calls = engine.embedder.calls
    out = engine.process([Item(id="v", vector=vec)])
    assert engine.embedder.calls == calls
    assert out.labels[0].label == "python"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xc1\xc1 not msgpack", "not_msgpack"),
        (None, "empty"),
        (msgpack.packb({"v": 99, "t": "item", "d": {"id": "a", "text": "x"}}), "schema_version"),
        (msgpack.packb({"v": 1, "t": "item", "d": {"text": "no id"}}), "invalid"),
        (msgpack.packb({"v": 1, "t": "item", "d": {"id": "a", "text": "   "}}), "invalid"),
        (b"\x00" * 2_000_000, "oversized"),
        (encode(Item(id="big", text="word " * 10_000)), "oversized"),
        (encode(Item(id="dim", vector=[0.1] * 5)), "bad_vector"),
        (encode(Item(id="boom", text="python __poison__ list")), "embedding"),
    ],
)
def test_bad_input_is_dead_lettered_with_its_offset_and_the_batch_goes_on(
    make_engine, value, reason
) -> None:
    engine = make_engine()
    teach(engine, ["python", "java"])
    batch = [
        raw(encode(Item(id="before", text="python list")), 10),
        raw(value, 11),
        raw(encode(Item(id="after", text="java maven")), 12),
    ]
    out = engine.process(batch)
    assert [r.item_id for r in out.labels] == ["before", "after"]
    assert len(out.dead_letters) == 1
    dead = out.dead_letters[0]
    assert dead.reason == reason
    assert dead.source is not None
    assert dead.source.offset == 11
    assert dead.error
    if value is not None:  # the consumed bytes, unchanged, whatever the reason
        assert dead.value == value


def test_feedback_on_a_seen_item_relabels_it_as_a_revision(make_engine) -> None:
    engine = make_engine()
    teach(engine, ["python", "java"])
    first = engine.process([Item(id="h1", text="haskell monad functor ghc")]).labels[0]
    assert first.label == UNKNOWN
    out = engine.learn([Feedback(item_id="h1", label="haskell")])
    assert [e.kind for e in out.class_events] == ["created"]
    assert len(out.labels) == 1
    revised = out.labels[0]
    assert (revised.item_id, revised.label, revised.revision, revised.reason) == (
        "h1",
        "haskell",
        1,
        "feedback",
    )
    assert "h1" not in engine.buffer.ids


def test_feedback_for_an_unseen_item_id_without_a_window_is_dead_lettered_at_once(
    make_engine,
) -> None:
    engine = make_engine(limits={"feedback_wait_s": 0})  # else it waits: test_pending_feedback
    out = engine.learn([Feedback(item_id="never-seen", label="python")])
    assert out.class_events == []
    assert out.dead_letters[0].reason == "unresolvable"
    assert out.dead_letters[0].error == "item 'never-seen' is not in the cache"


def test_held_back_topic_is_discovered_named_and_its_unknowns_revised(make_engine) -> None:
    engine = make_engine(discovery={"run_every": 40, "min_cluster_size": 15, "min_samples": 5})
    teach(engine, ["python", "java", "sql", "css"], n=40)
    rng = np.random.default_rng(3)
    stream = [
        (t, x) for t in ["python", "java", "sql", "css", "haskell"] for x in topic_texts(t, 60, 7)
    ]
    order = rng.permutation(len(stream))
    first: dict[str, str] = {}
    final: dict[str, tuple[int, str]] = {}
    events = []
    for lo in range(0, len(order), 25):
        items = [Item(id=f"i{j}", text=stream[j][1]) for j in order[lo : lo + 25]]
        out = engine.process(items)
        events += out.class_events
        for r in out.labels:
            first.setdefault(r.item_id, r.label)
            if r.item_id not in final or r.revision > final[r.item_id][0]:
                final[r.item_id] = (r.revision, r.label)
    out = engine.discover()
    events += out.class_events
    for r in out.labels:
        if r.revision > final[r.item_id][0]:
            final[r.item_id] = (r.revision, r.label)
    created = [e for e in events if e.kind == "created"]
    assert len(created) == 1, [e.state.name for e in created]
    novel = created[0].state
    assert novel.class_id.startswith("novel-")
    assert novel.status == "provisional"
    assert novel.origin == "discovery"
    assert set(novel.name.split("-")) <= set(TOPICS["haskell"].split())
    haskell = [f"i{j}" for j in order if stream[j][0] == "haskell"]
    assert sum(final[i][1] == novel.class_id for i in haskell) >= 0.8 * len(haskell)
    revised = [i for i in haskell if final[i][0] > 0]
    assert any(first[i] == UNKNOWN for i in revised)  # buffered unknowns revised
    assert all(final[i][1] == novel.class_id for i in revised)
    other = [f"i{j}" for j in order if stream[j][0] != "haskell"]
    assert sum(final[i][1] == novel.class_id for i in other) <= 0.05 * len(other)


def test_replica_applying_the_changelog_labels_identically(make_engine) -> None:
    leader = make_engine()
    events = []
    for t in ["python", "java", "sql"]:
        events += leader.learn(
            [Feedback(text=x, label=t) for x in topic_texts(t, 30, 1)]
        ).class_events
    replica = make_engine()
    assert replica.apply(events) == len(events)
    items = [Item(id=str(i), text=x) for i, x in enumerate(topic_texts("sql", 10, 9))]
    a = leader.process(items).labels
    b = replica.process(items).labels
    assert [(r.label, r.score, r.store_version) for r in a] == [
        (r.label, r.score, r.store_version) for r in b
    ]
    assert replica.apply(events) == 0  # redelivered events change nothing


def test_stationary_stream_raises_no_alert_and_a_topic_shift_raises_one(make_engine) -> None:
    engine = make_engine(drift={"enabled": True}, discovery={"enabled": False})
    teach(engine, ["python", "java", "sql"], n=40)
    alerts = []
    known = ["python", "java", "sql"]
    for step in range(60):
        topic = known[step % 3] if step < 30 else "css"
        items = [Item(id=f"{step}-{i}", text=x) for i, x in enumerate(topic_texts(topic, 50, step))]
        if step < 30:
            texts = [x for t in known for x in topic_texts(t, 17, step)]
            items = [Item(id=f"{step}-{i}", text=x) for i, x in enumerate(texts)]
        out = engine.process(items)
        if step < 30:
            assert out.alerts == [], [a.detail for a in out.alerts]
        alerts += out.alerts
    kinds = [a.kind for a in alerts]
    assert "embedding" in kinds
    assert kinds.count("embedding") == 1


def test_zero_shot_class_from_a_description_labels_matching_items(make_engine) -> None:
    engine = make_engine(store={"default_threshold": 0.2})
    out = engine.register_zero_shot("haskell", "haskell monad functor typeclass ghc")
    assert out.class_events[0].state.origin == "zero_shot"
    label = engine.process([Item(id="z", text="haskell monad ghc typeclass")]).labels[0]
    assert label.label == "haskell"


def test_operator_rename_merge_retire_change_what_items_are_labelled(make_engine) -> None:
    engine = make_engine()
    teach(engine, ["python", "java", "sql"])
    engine.rename("sql", "databases")
    rec = engine.process([Item(id="1", text="sql join index postgres")]).labels[0]
    assert (rec.label, rec.class_name) == ("sql", "databases")
    kinds = [e.kind for e in engine.merge("java", "python").class_events]
    assert kinds == ["updated", "merged"]
    assert engine.store.resolve("java") == "python"
    rec = engine.process([Item(id="2", text="java maven jar tomcat")]).labels[0]
    assert rec.label in {"python", UNKNOWN}
    engine.retire("sql")
    assert "sql" not in engine.store.active_ids()
    rec = engine.process([Item(id="3", text="sql join index postgres")]).labels[0]
    assert rec.label != "sql"


def test_same_seed_and_inputs_give_identical_outputs(make_engine) -> None:
    def run() -> tuple[list[tuple[str, str, int]], list[str]]:
        engine = make_engine(discovery={"run_every": 40, "min_cluster_size": 15, "min_samples": 5})
        teach(engine, ["python", "java", "sql", "css"], n=40)
        texts = [x for t in ["python", "haskell", "sql"] for x in topic_texts(t, 50, 11)]
        labels, events = [], []
        for lo in range(0, len(texts), 30):
            items = [Item(id=f"i{lo + j}", text=x) for j, x in enumerate(texts[lo : lo + 30])]
            out = engine.process(items)
            labels += [(r.item_id, r.label, r.revision) for r in out.labels]
            events += [e.class_id for e in out.class_events]
        for _ in range(2):
            out = engine.discover()
            labels += [(r.item_id, r.label, r.revision) for r in out.labels]
            events += [e.class_id for e in out.class_events]
        return labels, events

    first, second = run(), run()
    assert first == second
    assert any(e.startswith("novel-") for e in first[1])


def test_reprocessing_an_item_labels_it_at_revision_zero_below_the_learners(
    make_engine,
) -> None:
    """Only the learner revises: a redelivered item's label (revision 0, a newer
    store_version) never outranks the feedback revision downstream."""
    engine = make_engine()
    teach(engine, ["python", "java"])
    first = engine.process([Item(id="h1", text="haskell monad functor ghc")]).labels[0]
    revised = engine.learn([Feedback(item_id="h1", label="haskell")]).labels[0]
    again = engine.process([Item(id="h1", text="haskell monad functor ghc")]).labels[0]
    assert (first.revision, revised.revision, again.revision) == (0, 1, 0)
    assert again.store_version > first.store_version
    assert again.label == "haskell"


def test_a_rejected_label_dead_letters_its_feedback_and_keeps_the_other_labels(
    make_engine,
) -> None:
    engine = make_engine()
    teach(engine, ["python", "java", "sql"])
    # A replica can hold a merge whose target's event has not arrived (compaction
    # gives no cross-key order): "sql" then names a class the store cannot reach.
    version = engine.store.version + 1
    state = engine.store.get("sql").model_copy(
        update={"status": "retired", "merged_into": "ghost", "updated_version": version}
    )
    engine.apply([ClassEvent(kind="merged", class_id="sql", state=state, store_version=version)])
    out = engine.learn(
        [Feedback(text="css flexbox grid", label="css"), Feedback(text="sql join", label="sql")]
    )
    assert [e.class_id for e in out.class_events] == ["css"]
    assert engine.store.version == version + 1
    assert [(d.reason, "ghost" in d.error) for d in out.dead_letters] == [("rejected", True)]


def test_feedback_naming_a_class_merged_into_a_retired_one_revives_the_target(
    make_engine,
) -> None:
    engine = make_engine()
    teach(engine, ["python", "java", "sql"])
    engine.merge("sql", "java")
    engine.retire("java")
    out = engine.learn([Feedback(text="sql join index", label="sql")])
    assert [(e.class_id, e.state.status) for e in out.class_events] == [("java", "known")]


def test_feedback_reaches_a_buffered_unknown_evicted_from_the_item_cache(make_engine) -> None:
    engine = make_engine(limits={"max_item_cache": 2})
    teach(engine, ["python", "java"])
    engine.process([Item(id="h1", text="haskell monad functor ghc")])
    engine.process([Item(id=f"p{i}", text="python pandas numpy") for i in range(3)])
    assert "h1" in engine.buffer.ids
    out = engine.learn([Feedback(item_id="h1", label="haskell")])
    assert out.dead_letters == []
    assert [(r.item_id, r.label, r.revision) for r in out.labels] == [("h1", "haskell", 1)]
    assert "h1" not in engine.buffer.ids


def test_residual_unknowns_settle_once_and_stay_buffered_with_their_label(make_engine) -> None:
    """Items no cluster took settle into their nearest class on a later run (reason
    ``settled``, one revision), stay in the buffer with that label for later runs to
    cluster, and are not revised again while nothing changes."""
    from topic_world import FILLER

    engine = make_engine()
    teach(engine, ["python", "java", "sql"])
    rng = np.random.default_rng(5)
    words = TOPICS["python"].split()
    texts = [" ".join([*rng.choice(words, 2), *rng.choice(FILLER, 5)]) for _ in range(30)]
    first = engine.process([Item(id=f"p{i}", text=t) for i, t in enumerate(texts)])
    assert sum(r.is_unknown for r in first.labels) >= 20
    engine.discover()  # a class of most of them; a few are left over
    left = set(engine.buffer.ids)
    assert left
    settled = [r for r in engine.discover().labels if r.reason == "settled"]
    assert settled
    assert {r.item_id for r in settled} <= left
    assert all(r.revision == 1 and not r.is_unknown for r in settled)
    labels = dict(zip(engine.buffer.ids, engine.buffer.labels, strict=True))
    assert all(labels[r.item_id] == r.label for r in settled)  # still buffered, labelled
    again = engine.discover().labels
    assert not {r.item_id for r in again} & {r.item_id for r in settled}
