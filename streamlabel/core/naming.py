"""Readable names for discovered classes: class-based TF-IDF keywords of member texts.

Each cluster's texts form one document; a term scores high when it is frequent
in the cluster and rare across all clusters and the background (the rest of
the unknown buffer): ``tf(t, c) * log(1 + A / f(t))`` with ``A`` the average
number of words per document and ``f(t)`` the term's total frequency (the
c-TF-IDF of BERTopic).

Example:
    >>> docs = [["plot a matrix in matlab", "matlab figure legend"],
    ...         ["oracle sql join", "oracle index slow"]]
    >>> class_keywords(docs, n=2)
    [('matlab', 'figure'), ('oracle', 'index')]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOKEN_PATTERN = r"(?u)\b[a-zA-Z][a-zA-Z0-9+#]*"

# Words that carry no topic in questions and requests, on top of sklearn's English list.
# fmt: off
FILLER_WORDS = frozenset({
    "does", "doesn", "don", "didn", "isn", "using", "use", "used", "way", "ways", "best",
    "simple", "get", "getting", "make", "making", "work", "working", "works", "possible",
    "want", "need", "new", "like", "just", "good", "better", "vs", "multiple", "specific",
    "different", "help", "problem", "issue", "question", "example", "thing", "things", "set",
    "setting",
})
# fmt: on


def class_keywords(
    clusters: Sequence[Sequence[str]],
    *,
    background: Sequence[str] = (),
    n: int = 3,
) -> list[tuple[str, ...]]:
    """The ``n`` most distinctive keywords of each cluster of texts (ties broken alphabetically).

    Args:
        clusters: texts of each cluster.
        background: other texts, counted as one more document so common words score low.
        n: keywords per cluster.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    docs = [" ".join(c) for c in clusters]
    if background:
        docs.append(" ".join(background))
    if not any(d.strip() for d in docs):
        return [() for _ in clusters]
    stop = sorted(ENGLISH_STOP_WORDS | FILLER_WORDS)
    vec = CountVectorizer(token_pattern=TOKEN_PATTERN, stop_words=stop, lowercase=True)
    try:
        counts = vec.fit_transform(docs).toarray().astype(np.float64)
    except ValueError:  # only stop words
        return [() for _ in clusters]
    vocab = np.asarray(vec.get_feature_names_out())
    words_per_doc = counts.sum(axis=1, keepdims=True)
    tf = counts / np.maximum(words_per_doc, 1.0)
    avg_words = float(words_per_doc.mean())
    idf = np.log1p(avg_words / np.maximum(counts.sum(axis=0), 1.0))
    scores = tf * idf
    out: list[tuple[str, ...]] = []
    for row in scores[: len(clusters)]:
        order = np.lexsort((vocab, -row))
        out.append(tuple(str(vocab[i]) for i in order[:n] if row[i] > 0))
    return out


def name_from_keywords(keywords: Sequence[str], fallback: str) -> str:
    """A readable class name: keywords joined by ``-`` (``fallback`` when there are none)."""
    return "-".join(keywords) if keywords else fallback


def typical_texts(exemplars: np.ndarray, texts: Sequence[str], n: int = 3) -> list[str]:
    """The texts of the ``n`` examples closest to their mean direction, most typical first.

    What a person should see of a class: its reservoir is a uniform sample, so
    its first texts may be its least typical members. Empty texts are skipped.

    Example:
        >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.95, 0.05]])
        >>> typical_texts(x, ["a", "odd", "b", "c"], n=2)
        ['a', 'c']
    """
    x = np.asarray(exemplars, dtype=np.float32)
    keep = [i for i, t in enumerate(texts[: len(x)]) if t]
    if not keep:
        return []
    rows = x[keep]
    centre = rows.mean(axis=0)
    order = np.argsort(
        -(rows @ (centre / max(float(np.linalg.norm(centre)), 1e-12))), kind="stable"
    )
    return [texts[keep[i]] for i in order[:n]]
