"""A deterministic text world for the Engine's tests: known and held-back topics.

Imported by name (``from topic_world import ...``): a module called ``conftest``
is ambiguous once another test folder has one.
"""

from __future__ import annotations

import numpy as np

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
