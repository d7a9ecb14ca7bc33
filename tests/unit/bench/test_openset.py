"""The open-set benchmark: its scores and its protocol on a tiny synthetic dataset."""

from __future__ import annotations

import numpy as np
from test_run_seed import dataset

from streamlabel.bench.openset import known_classes, open_set_scores, run_openset_seed
from streamlabel.pipeline import load_settings
from streamlabel.testing import HashEmbedder


def test_open_set_scores_treat_unknown_and_unseen_classes_as_one_open_class() -> None:
    truth = ["a", "a", "b", "x", "y"]
    pred = ["a", "b", "b", "unknown", "a"]
    s = open_set_scores(truth, pred, {"a", "b"})
    assert s["acc"] == 60.0
    # per class F1: a 0.5, b 0.667, open 0.667
    assert s["open_f1"] == 66.67
    assert s["known_f1"] == round(100 * (0.5 + 2 / 3) / 2, 2)
    assert s["f1"] == round(100 * (0.5 + 2 / 3 + 2 / 3) / 3, 2)


def test_a_perfect_open_set_classifier_scores_100_everywhere() -> None:
    s = open_set_scores(["a", "x"], ["a", "unknown"], {"a"})
    assert s == {"acc": 100.0, "f1": 100.0, "open_f1": 100.0, "known_f1": 100.0}


def test_known_classes_depend_on_the_seed_only() -> None:
    labels = [c for c in "abcdefgh" for _ in range(3)]
    assert known_classes(labels, 0.75, 0) == known_classes(list(reversed(labels)), 0.75, 0)
    assert len(known_classes(labels, 0.75, 1)) == 6


def test_the_protocol_detects_the_held_out_class_as_open() -> None:
    """Every training item of the known classes is taught; the held-out topic's test
    items mostly come out unknown and the known ones mostly right."""
    embedder = HashEmbedder(dim=64)
    train, test = dataset(40, 0), dataset(15, 1)
    result = run_openset_seed(
        train, test, embedder.embed(train.texts), embedder.embed(test.texts),
        settings=load_settings(), embedder=embedder, seed=0, known_ratio=0.75,
    )  # fmt: skip
    assert result["known_classes"] == 3
    assert result["open_items"] == 15
    assert result["acc"] > 70.0
    assert result["open_f1"] > 50.0
    assert np.isfinite(result["f1"])
