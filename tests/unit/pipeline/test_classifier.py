"""Behaviour of OpenWorldClassifier: learn/predict in-process, discover, curate, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
from topic_world import TOPICS, topic_texts

from streamlabel.errors import EmbeddingError, SnapshotError, StoreError
from streamlabel.pipeline.classifier import OpenWorldClassifier, Prediction
from streamlabel.testing import HashEmbedder, ManualClock

KNOWN = ["python", "java", "sql", "css"]


def make(**overrides: object) -> OpenWorldClassifier:
    overrides.setdefault("drift", {"enabled": False})
    return OpenWorldClassifier(
        embedder=HashEmbedder(dim=64), clock=ManualClock(1_000.0), **overrides
    )


def taught(**overrides: object) -> OpenWorldClassifier:
    clf = make(**overrides)
    for topic in KNOWN:
        texts = topic_texts(topic, 30, 0)
        clf.learn_many(texts, [topic] * len(texts))
    return clf


def same(a: list[Prediction], b: list[Prediction]) -> bool:
    """Equal predictions (the records' timings are wall-clock measurements, not compared)."""
    fields = ("item_id", "label", "name", "score", "margin", "is_unknown")
    return [[getattr(p, f) for f in fields] + [p.record.store_version] for p in a] == [
        [getattr(p, f) for f in fields] + [p.record.store_version] for p in b
    ]


def test_learned_topics_are_predicted_with_their_names_and_counted_ids() -> None:
    clf = taught()
    texts = [topic_texts(t, 1, 9)[0] for t in KNOWN]
    predictions = clf.predict_many(texts)
    assert [p.label for p in predictions] == KNOWN
    assert [p.name for p in predictions] == KNOWN
    assert not any(p.is_unknown for p in predictions)
    assert [p.item_id for p in predictions] == ["item-0", "item-1", "item-2", "item-3"]
    assert clf.predict_one(texts[0]).item_id == "item-4"
    assert clf.predict_one(texts[1], item_id="mine").record.item_id == "mine"
    assert [c.class_id for c in clf.classes()] == KNOWN


def test_learn_one_creates_a_class_the_next_prediction_uses() -> None:
    clf = make()
    clf.learn_one("python list dict pandas", "python")
    clf.learn_one("java spring maven jar", "java")
    assert clf.predict_one("java maven spring").label == "java"


def test_a_text_unlike_every_class_is_unknown() -> None:
    clf = taught()
    p = clf.predict_one("haskell monad functor typeclass ghc cabal")
    assert p.is_unknown
    assert p.label == "unknown"
    assert p.name is None
    assert len(clf.engine.buffer) == 1  # kept for discovery


def test_a_rename_is_visible_in_the_next_prediction_and_the_old_name_still_resolves() -> None:
    clf = taught()
    renamed = clf.rename("python", "Python 3")
    assert (renamed.class_id, renamed.name) == ("python", "Python 3")
    p = clf.predict_one(topic_texts("python", 1, 5)[0])
    assert (p.label, p.name) == ("python", "Python 3")
    assert clf.rename("python", "py").name == "py"  # the old name is an alias of the class
    with pytest.raises(StoreError, match="taken"):
        clf.rename("java", "py")


def test_a_merged_class_predicts_as_its_target_and_leaves_the_class_list() -> None:
    clf = taught()
    target = clf.merge("css", "sql")
    assert target.class_id == "sql"
    assert clf.predict_one(topic_texts("css", 1, 5)[0]).label == "sql"
    assert [c.class_id for c in clf.classes()] == ["python", "java", "sql"]
    assert "css" in [c.class_id for c in clf.classes(include_retired=True)]
    with pytest.raises(StoreError, match="same class"):  # "css" now names "sql"
        clf.merge("css", "sql")


def test_a_retired_class_is_no_longer_predicted() -> None:
    clf = taught()
    assert clf.retire("java").status == "retired"
    assert clf.predict_one(topic_texts("java", 1, 5)[0]).label != "java"
    with pytest.raises(StoreError):
        clf.retire("java")


def test_a_class_added_from_a_description_is_predicted_before_any_example() -> None:
    clf = taught()
    added = clf.add_class("haskell", TOPICS["haskell"])
    assert (added.origin, added.description) == ("zero_shot", TOPICS["haskell"])
    assert clf.predict_one("haskell monad functor typeclass ghc cabal").label == added.class_id
    with pytest.raises(StoreError, match="already"):
        clf.add_class("haskell", "anything")


def test_discover_finds_a_planted_topic_and_relabels_its_items() -> None:
    clf = taught(discovery={"run_every": 10_000, "min_cluster_size": 15, "min_samples": 5})
    planted = clf.predict_many(topic_texts("haskell", 60, 7))
    assert all(p.is_unknown for p in planted)
    found = clf.discover()
    assert len(found.classes) == 1
    novel = found.classes[0]
    assert novel.class_id.startswith("novel-")
    assert novel.status == "provisional"
    assert set(novel.keywords) <= set(TOPICS["haskell"].split())
    relabelled = {p.item_id for p in found.relabelled if p.label == novel.class_id}
    assert len(relabelled) >= 45  # most of the 60 planted items
    assert relabelled <= {p.item_id for p in planted}
    assert clf.predict_one(topic_texts("haskell", 1, 99)[0]).label == novel.class_id
    assert clf.discover().classes == ()  # nothing new buffered since


def test_saved_and_loaded_classifiers_predict_and_discover_identically(tmp_path: Path) -> None:
    overrides = {"discovery": {"run_every": 10_000, "min_cluster_size": 15, "min_samples": 5}}
    clf = taught(**overrides)
    clf.rename("python", "Python")
    clf.predict_many(topic_texts("haskell", 40, 7))  # buffered unknowns travel too
    path = tmp_path / "clf.slc"
    clf.save(path)
    loaded = OpenWorldClassifier.load(
        path, embedder=HashEmbedder(dim=64), clock=ManualClock(1_000.0)
    )
    assert loaded.settings == clf.settings
    assert loaded.classes() == clf.classes()
    texts = [*(topic_texts(t, 3, 11)[0] for t in KNOWN), *topic_texts("haskell", 20, 8)]
    assert same(clf.predict_many(texts), loaded.predict_many(texts))
    a, b = clf.discover(), loaded.discover()
    assert [c.class_id for c in a.classes] == [c.class_id for c in b.classes] != []
    assert same(list(a.relabelled), list(b.relabelled))


def test_load_reads_the_engine_state_of_a_learner_snapshot(tmp_path: Path) -> None:
    """A learner's checkpoint holds the same Engine state: a classifier can load it."""
    from streamlabel.workers.checkpoint import Checkpoint

    clf = taught()
    Checkpoint(tmp_path / "learner.snapshot").write(clf.engine.state(), {"sl.feedback:0": 9}, 0, [])
    loaded = OpenWorldClassifier.load(
        tmp_path / "learner.snapshot", embedder=HashEmbedder(dim=64), settings=clf.settings
    )
    texts = [topic_texts(t, 1, 3)[0] for t in KNOWN]
    assert [p.label for p in loaded.predict_many(texts)] == KNOWN


def test_load_refuses_a_file_that_is_not_a_saved_classifier(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\xc1 not msgpack")
    with pytest.raises(SnapshotError, match="corrupt"):
        OpenWorldClassifier.load(garbage, embedder=HashEmbedder(dim=64))
    with pytest.raises(SnapshotError, match="cannot read"):
        OpenWorldClassifier.load(tmp_path / "missing", embedder=HashEmbedder(dim=64))
    saved = tmp_path / "clf"
    taught().save(saved)
    with pytest.raises(SnapshotError, match="dimension"):
        OpenWorldClassifier.load(saved, embedder=HashEmbedder(dim=32))


def test_a_too_long_text_is_refused_before_anything_is_predicted_or_learned() -> None:
    clf = taught(limits={"max_text_chars": 100})
    with pytest.raises(ValueError, match="max_text_chars"):
        clf.predict_many(["python list", "x" * 101])
    with pytest.raises(ValueError, match="max_text_chars"):
        clf.learn_one("y" * 101, "python")
    assert clf.predict_one("python list").item_id == "item-0"  # the refused call took no ids
    assert clf.engine.store.get("python").count == 30


def test_mismatched_lengths_a_reserved_label_and_conflicting_settings_are_errors() -> None:
    clf = taught()
    with pytest.raises(ValueError, match="labels"):
        clf.learn_many(["a", "b"], ["python"])
    with pytest.raises(ValueError, match="reserved"):
        clf.learn_one("a text", "unknown")
    with pytest.raises(ValueError, match="item ids"):
        clf.predict_many(["a", "b"], item_ids=["one"])
    with pytest.raises(ValueError, match="not both"):
        OpenWorldClassifier(clf.settings, drift={"enabled": False})


def test_a_model_failure_on_a_text_raises_embedding_error() -> None:
    clf = taught()
    with pytest.raises(EmbeddingError, match="item-1"):
        clf.predict_many(["python list", "__poison__ text"])


def test_the_default_model_is_loaded_on_first_use_not_by_the_constructor(tmp_path: Path) -> None:
    """Constructing costs nothing; the configured model is loaded by the first call."""
    clf = OpenWorldClassifier(model={"path": str(tmp_path / "no-model")})
    with pytest.raises(EmbeddingError, match="not a directory"):
        clf.predict_one("hello")
