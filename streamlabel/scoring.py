"""Clustering metrics for open-world evaluation (Hungarian ACC, NMI, ARI)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def hungarian_accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Accuracy under the best one-to-one mapping of predicted clusters to true classes.

    Every distinct predicted label is one cluster (so all ``unknown`` items form
    one cluster); clusters left unmatched count as wrong.

    Example:
        >>> hungarian_accuracy(["a", "a", "b", "b"], ["x", "x", "y", "x"])
        0.75
    """
    if not len(y_true):
        return 0.0
    t_ids, t = np.unique(np.asarray(y_true, dtype=object), return_inverse=True)
    p_ids, p = np.unique(np.asarray(y_pred, dtype=object), return_inverse=True)
    counts = np.zeros((len(p_ids), len(t_ids)), np.int64)
    np.add.at(counts, (p, t), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(y_true))


def open_world_scores(
    y_true: Sequence[str], y_pred: Sequence[str], known: set[str]
) -> dict[str, float]:
    """ACC/NMI/ARI over all items, known-class accuracy, novel-class (Hungarian) accuracy.

    Returns percentages in 0–100. Known accuracy counts an item right only when it
    gets exactly its class; novel accuracy is Hungarian ACC over novel-class items.
    """
    yt = np.asarray(y_true, dtype=object)
    yp = np.asarray(y_pred, dtype=object)
    is_known = np.array([y in known for y in yt], bool)
    known_acc = float((yp[is_known] == yt[is_known]).mean()) if is_known.any() else 0.0
    novel_acc = hungarian_accuracy(list(yt[~is_known]), list(yp[~is_known]))
    return {
        "acc": 100 * hungarian_accuracy(list(yt), list(yp)),
        "nmi": 100 * float(normalized_mutual_info_score(yt, yp)),
        "ari": 100 * float(adjusted_rand_score(yt, yp)),
        "known_acc": 100 * known_acc,
        "novel_acc": 100 * novel_acc,
    }
