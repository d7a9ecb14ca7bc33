"""The Engine with the real model: online classes and open-set rejection on real text."""

from __future__ import annotations

from streamlabel.datasets import read_tsv
from streamlabel.pipeline import Engine, load_settings
from streamlabel.schemas import UNKNOWN, Feedback, Item


def test_classes_taught_online_label_real_questions_and_reject_an_unseen_topic(
    embedder, small_train, small_test
) -> None:
    train, test = read_tsv(small_train), read_tsv(small_test)
    taught = ["matlab", "oracle", "svn", "wordpress"]
    engine = Engine(load_settings(drift={"enabled": False}), embedder)
    for label in taught:
        examples = [t for t, y in zip(train.texts, train.labels, strict=True) if y == label]
        out = engine.learn([Feedback(text=t, label=label) for t in examples])
        assert out.class_events[0].kind == "created"
    items = [
        Item(id=str(i), text=t)
        for i, (t, y) in enumerate(zip(test.texts, test.labels, strict=True))
        if y in taught
    ]
    labels = engine.process(items).labels
    truth = {str(i): y for i, y in enumerate(test.labels)}
    correct = sum(r.label == truth[r.item_id] for r in labels)
    assert correct >= 0.75 * len(labels)
    offtopic = engine.process([Item(id="x", text="Best pizza recipe with fresh basil")])
    assert offtopic.labels[0].label == UNKNOWN
    # A fifth label arrives: it is used by the very next batch.
    engine.learn(
        [
            Feedback(text=t, label="haskell")
            for t, y in zip(train.texts, train.labels, strict=True)
            if y == "haskell"
        ]
    )
    nxt = engine.process([Item(id="h", text="Haskell monad transformer stack with StateT")])
    assert nxt.labels[0].label == "haskell"
