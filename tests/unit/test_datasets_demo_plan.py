"""``plan_demo``: what the demo streams, built from a dataset with held-back classes."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest

from streamlabel.datasets import LabelledTexts
from streamlabel.errors import SettingsError

with warnings.catch_warnings():  # kafka-python loads its protocol files with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    from streamlabel.datasets import DemoPlan, plan_demo

CLASSES = ["alpha", "bravo", "charlie", "delta"]


def dataset(per_class: int, tag: str, classes: list[str] = CLASSES) -> LabelledTexts:
    """Class-interleaved rows with unique texts, like a shuffled TSV."""
    texts, labels = [], []
    for i in range(per_class):
        for c in classes:
            texts.append(f"{tag} {c} text number {i}")
            labels.append(c)
    return LabelledTexts(texts, labels)


TRAIN = dataset(20, "train")
TEST = dataset(60, "test")


def plan(n_items: int = 200, seed: int = 0) -> DemoPlan:
    return plan_demo(TRAIN, TEST, n_items=n_items, seed=seed)


def test_a_quarter_of_the_classes_is_held_back_and_the_rest_taught() -> None:
    p = plan()
    assert len(p.known) == 3
    assert len(p.held_back) == 1
    assert sorted(p.known + p.held_back) == CLASSES
    assert p.known == sorted(p.known)


def test_held_back_classes_never_appear_before_the_shift() -> None:
    p = plan()
    assert 0 < p.shift_at < len(p.items)
    before = {p.truth[item.id] for item in p.items[: p.shift_at]}
    assert before <= set(p.known)


def test_held_back_classes_appear_after_the_shift() -> None:
    p = plan()
    after = Counter(p.truth[item.id] for item in p.items[p.shift_at :])
    assert all(after[c] > 0 for c in p.held_back)
    # after the shift about half the stream is new
    novel = sum(after[c] for c in p.held_back)
    assert novel == len(p.items[p.shift_at :]) // 2


def test_the_shift_comes_at_the_configured_fraction_of_the_stream() -> None:
    p = plan_demo(TRAIN, TEST, n_items=200, seed=0, shift_fraction=0.25)
    assert p.shift_at == 50


def test_feedback_only_teaches_known_classes_with_their_training_texts() -> None:
    p = plan()
    assert p.feedback
    assert {f.label for f in p.feedback} == set(p.known)
    train = dict(zip(TRAIN.texts, TRAIN.labels, strict=True))
    assert all(train[f.text] == f.label for f in p.feedback if f.text is not None)
    # a tenth of each class's 20 training texts
    assert Counter(f.label for f in p.feedback) == dict.fromkeys(p.known, 2)


def test_confirmations_name_items_streamed_before_the_shift_with_their_true_known_label() -> None:
    p = plan(n_items=400, seed=1)
    before = {item.id for item in p.items[: p.shift_at]}
    assert p.confirm
    for fb in p.confirm:
        assert fb.item_id in before
        assert fb.label == p.truth[fb.item_id]
        assert fb.label in p.known


def test_items_are_unique_and_the_truth_covers_every_item() -> None:
    p = plan()
    ids = [item.id for item in p.items]
    assert len(ids) == 200
    assert len(set(ids)) == len(ids)
    assert set(p.truth) == set(ids)
    test_labels = dict(zip(TEST.texts, TEST.labels, strict=True))
    assert all(p.truth[item.id] == test_labels[item.text] for item in p.items)


def test_the_same_seed_gives_the_same_plan() -> None:
    assert plan(seed=3) == plan(seed=3)


def test_another_seed_gives_another_plan() -> None:
    a, b = plan(seed=3), plan(seed=4)
    assert [i.id for i in a.items] != [i.id for i in b.items]


def test_a_stream_longer_than_the_test_set_keeps_the_rules() -> None:
    p = plan(n_items=1000)
    ids = [item.id for item in p.items]
    assert len(ids) == len(set(ids)) == len(TEST)
    assert {p.truth[i.id] for i in p.items[: p.shift_at]} <= set(p.known)
    assert {p.truth[i.id] for i in p.items[p.shift_at :]} >= set(p.held_back)


def test_two_classes_give_one_taught_and_one_held_back() -> None:
    small = dataset(10, "train", ["x", "y"])
    p = plan_demo(small, dataset(10, "test", ["x", "y"]), n_items=20, seed=0)
    assert len(p.known) == len(p.held_back) == 1


def test_a_dataset_with_one_class_is_rejected() -> None:
    one = dataset(10, "train", ["only"])
    with pytest.raises(SettingsError, match="two classes"):
        plan_demo(one, one, n_items=10)
