"""A bounded, uniform sample of a class's examples (reservoir sampling, Algorithm R)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def reservoir_add(
    sample: np.ndarray,
    texts: Sequence[str],
    seen: int,
    new: np.ndarray,
    new_texts: Sequence[str],
    capacity: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[str]]:
    """Adds ``new`` rows to a uniform reservoir of at most ``capacity`` rows.

    Args:
        sample: current reservoir ``(k, d)``, ``k <= capacity``.
        texts: texts aligned with ``sample`` ("" where unknown).
        seen: how many examples the reservoir has been offered so far.
        new: rows to offer ``(n, d)``.
        new_texts: texts aligned with ``new``.
        capacity: maximum rows kept.
        rng: source of randomness (pass a seeded one for determinism).

    Returns:
        The new reservoir and its aligned texts (copies; inputs are not modified).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> s, t = reservoir_add(np.zeros((0, 2)), [], 0, np.eye(2), ["a", "b"], 3, rng)
        >>> s.shape, t
        ((2, 2), ['a', 'b'])
    """
    rows = list(np.asarray(sample, dtype=np.float32))
    out_texts = list(texts)
    for i, row in enumerate(np.asarray(new, dtype=np.float32)):
        seen += 1
        if len(rows) < capacity:
            rows.append(row)
            out_texts.append(new_texts[i])
            continue
        j = int(rng.integers(0, seen))
        if j < capacity:
            rows[j] = row
            out_texts[j] = new_texts[i]
    dim = int(np.asarray(new).shape[-1]) if len(new) else int(np.asarray(sample).shape[-1])
    arr = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    return arr, out_texts
