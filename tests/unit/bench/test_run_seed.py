"""The open-world protocol on a tiny synthetic dataset with the hash embedder."""

from __future__ import annotations

import numpy as np

from streamlabel.bench.data import LabelledTexts
from streamlabel.bench.openworld import run_seed
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
