"""The open-world protocol on a tiny synthetic dataset with the hash embedder."""

from __future__ import annotations

import numpy as np

from streamlabel.bench.openworld import run_seed
from streamlabel.datasets import LabelledTexts
from streamlabel.pipeline import load_settings
from streamlabel.testing import HashEmbedder

TOPICS = {
    "python": "python list dict pandas numpy pip django flask generator decorator",
    "java": "java jvm spring maven gradle hibernate servlet jar classpath tomcat",
    "sql": "sql query join index table select postgres mysql transaction schema",
    "css": "css flexbox grid selector margin padding stylesheet font layout color",
}


def dataset(n: int, seed: int) -> LabelledTexts:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, words in TOPICS.items():
        for _ in range(n):
            texts.append(" ".join(rng.choice(words.split(), 6)))
            labels.append(label)
    return LabelledTexts(texts, labels)


def test_a_dead_lettered_test_item_is_scored_unknown_instead_of_crashing() -> None:
    embedder = HashEmbedder(dim=64)
    train, test = dataset(40, 0), dataset(10, 1)
    test.texts[0] = "python " * 30  # longer than the limit below: dead-lettered
    settings = load_settings(drift={"enabled": False}, limits={"max_text_chars": 100})
    result = run_seed(
        train, test, embedder.embed(train.texts), embedder.embed(test.texts),
        settings=settings, embedder=embedder, seed=0, known_ratio=0.75, labeled_ratio=0.25,
    )  # fmt: skip
    assert result.items == len(train) - 3 * 10 + len(test)
    assert result.novel_true == 1
    assert result.final["known_acc"] > 60  # chance is about 33%


def test_the_seed_result_says_where_the_score_goes_and_the_summary_reports_it() -> None:
    """Diagnostics count unknown and absorbed test items and what discovery did; the
    summary carries first and final metrics, both shares and one row per seed."""
    from streamlabel.bench.openworld import format_table, summarize

    embedder = HashEmbedder(dim=64)
    train, test = dataset(60, 0), dataset(15, 1)
    settings = load_settings(drift={"enabled": False}, discovery={"run_every": 20})
    result = run_seed(
        train, test, embedder.embed(train.texts), embedder.embed(test.texts),
        settings=settings, embedder=embedder, seed=0, known_ratio=0.75, labeled_ratio=0.25,
    )  # fmt: skip
    d = result.diagnostics
    assert d["runs"] >= 2  # runs during the stream plus the two at its end
    assert d["clusters"] <= d["proposed"]
    assert 0.0 <= d["unknown_known"] <= 100.0
    assert 0.0 <= d["absorbed"] <= 100.0
    summary = summarize([result], embed_seconds_per_item=0.001)
    assert summary["unknown"] == d["unknown"]
    assert summary["first_ari"] == round(result.first["ari"], 2)
    assert summary["seeds"][0]["absorbed"] == d["absorbed"]
    assert "unk%" in format_table([result], summary)


def test_diagnose_counts_unknowns_per_side_and_novel_items_taken_by_known_classes() -> None:
    from streamlabel.bench.openworld import diagnose

    truth = ["a", "a", "b", "n", "n", "n", "n"]
    pred = ["a", "unknown", "b", "unknown", "a", "b", "novel-1"]
    d = diagnose(truth, pred, {"a", "b"}, [])
    assert d["unknown"] == round(100 * 2 / 7, 2)
    assert d["unknown_known"] == round(100 / 3, 2)
    assert d["unknown_novel"] == 25.0
    assert d["absorbed"] == 50.0
