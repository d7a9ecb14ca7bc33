"""Fixtures for Engine tests: a deterministic text world with known and held-back topics."""

from __future__ import annotations

import numpy as np
import pytest

from streamlabel.pipeline import Engine, load_settings
from streamlabel.testing import HashEmbedder, ManualClock

TOPICS = {
    "python": "python list dict pandas numpy pip django flask generator decorator",
    "java": "java jvm spring maven gradle hibernate servlet jar classpath tomcat",
    "sql": "sql query join index table select postgres mysql transaction schema",
    "css": "css flexbox grid selector margin padding stylesheet font layout color",
    "haskell": "haskell monad functor typeclass ghc cabal lazy fold pure lambda",
}
FILLER = [
    "how",
    "do",
    "i",
    "fix",
    "the",
    "problem",
    "with",
    "my",
    "code",
    "when",
    "it",
    "fails",
    "error",
    "help",
    "question",
]


def topic_texts(topic: str, n: int, seed: int) -> list[str]:
    """``n`` short texts mixing a topic's words with common filler words."""
    rng = np.random.default_rng(seed)
    words = TOPICS[topic].split()
    return [" ".join([*rng.choice(words, 6), *rng.choice(FILLER, 2)]) for _ in range(n)]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000.0)


@pytest.fixture
def make_engine(clock: ManualClock):
    """Builds an Engine on the hash embedder; keyword overrides go to the settings."""

    def build(**overrides: object) -> Engine:
        overrides.setdefault("drift", {"enabled": False})
        return Engine(load_settings(**overrides), HashEmbedder(dim=64), clock=clock)

    return build
