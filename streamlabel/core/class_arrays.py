"""A class's vectors as arrays: unpacked from its state, updated, packed back.

A :class:`~streamlabel.schemas.ClassState` carries its mean as a tuple and its
sub-prototypes and exemplar reservoir as read-only float32
:class:`~streamlabel.schemas.Rows` (what the changelog and snapshots
hold); the store keeps the same vectors as numpy arrays beside it, the matrices
shared with the state rather than copied. This module converts between
the two and computes a class's new vectors: absorbing a batch of examples
(count-weighted mean, reservoir, sub-prototypes), pooling two classes for a
merge and taking items out of one for a split. Every random choice is seeded
by ``(seed, class id, count)``, so replicas and reruns make the same choices.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamlabel.core.embedder import l2_normalize
from streamlabel.core.reservoir import reservoir_add
from streamlabel.core.store_config import StoreConfig
from streamlabel.errors import StoreError
from streamlabel.schemas import ClassState, Rows, to_array

_SAME = 1e-5
"""Squared distance under which a vector is a reservoir row (float32 round-off)."""


@dataclass(eq=False)
class ClassArrays:
    """The vectors of one class (rows of the store's dimension).

    Attributes:
        mean: count-weighted mean of every example taught (None before any).
        subs: extra prototypes of a multi-modal class, ``(p, dim)``.
        exemplars: the bounded reservoir of examples, ``(m, dim)`` (read-only: the state's).
        exemplar_texts: the text of each exemplar (aligned with ``exemplars``).
    """

    mean: np.ndarray | None
    subs: np.ndarray
    exemplars: np.ndarray
    exemplar_texts: list[str] = field(default_factory=list)


def empty_arrays(dim: int) -> ClassArrays:
    """The arrays of a class with no examples yet."""
    return ClassArrays(None, _empty(dim), _empty(dim))


def arrays_of(state: ClassState, dim: int) -> ClassArrays:
    """Unpacks a class state's vectors (the matrices are the state's read-only arrays).

    Raises:
        StoreError: a vector's dimension is not ``dim``.
    """
    mean = None if state.mean is None else to_array(state.mean)
    subs = to_array(state.sub_prototypes, dim)
    ex = to_array(state.exemplars, dim)
    for name, arr in (("mean", mean), ("sub_prototypes", subs), ("exemplars", ex)):
        if arr is not None and arr.shape[-1] != dim:
            raise StoreError(
                f"class {state.class_id!r}: {name} has dimension {arr.shape[-1]}, "
                f"the store has {dim}"
            )
    texts = list(state.exemplar_texts) + [""] * (len(ex) - len(state.exemplar_texts))
    return ClassArrays(mean, subs, ex, texts[: len(ex)])


def check_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Examples to teach a class as a finite float32 ``(n, dim)`` array (one row may be 1-D).

    Raises:
        StoreError: wrong shape, NaN or infinity.
    """
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != dim:
        raise StoreError(f"expected vectors of shape (n, {dim}), got {x.shape}")
    if not np.isfinite(x).all():
        raise StoreError("vectors contain NaN or infinity")
    return x


def with_arrays(state: ClassState, arrays: ClassArrays, **update: Any) -> ClassState:
    """Packs arrays (and any other ``update``) into a copy of ``state`` (not validated)."""
    return state.model_copy(
        update={
            "mean": None if arrays.mean is None else tuple(arrays.mean.astype(np.float32).tolist()),
            "sub_prototypes": Rows(arrays.subs),
            "exemplars": Rows(arrays.exemplars),
            "exemplar_texts": tuple(arrays.exemplar_texts),
            **update,
        }
    )


def absorb(
    state: ClassState,
    arrays: ClassArrays,
    vectors: np.ndarray,
    texts: list[str],
    *,
    config: StoreConfig,
    dim: int,
) -> ClassState:
    """The state of a class after it is taught ``vectors`` (with their ``texts``).

    The mean stays the count-weighted mean of every example, the reservoir keeps
    a uniform sample of at most ``exemplar_capacity`` of them (their texts cut to
    ``exemplar_text_chars``), and the sub-prototypes are refitted on the reservoir.
    """
    n = len(vectors)
    total = state.count + n
    if n == 0:
        return state
    batch_mean = vectors.mean(axis=0)
    mean = (
        batch_mean
        if arrays.mean is None or state.count == 0
        else (arrays.mean * state.count + batch_mean * n) / total
    )
    rng = class_rng(config.seed, state.class_id, state.count)
    exemplars, ex_texts = reservoir_add(
        arrays.exemplars,
        arrays.exemplar_texts,
        state.count,
        vectors,
        [t[: config.exemplar_text_chars] for t in texts],
        config.exemplar_capacity,
        rng,
    )
    subs = sub_prototypes(exemplars, state.class_id, total, config=config, dim=dim)
    return with_arrays(state, ClassArrays(mean, subs, exemplars, ex_texts), count=total)


def pooled(
    source: ClassState,
    src: ClassArrays,
    target: ClassState,
    tgt: ClassArrays,
    *,
    config: StoreConfig,
    dim: int,
) -> ClassArrays:
    """The arrays of ``target`` after it absorbs ``source`` (a merge).

    The mean is the count-weighted mean of both; the exemplars a seeded sample
    of both reservoirs (at most ``exemplar_capacity``), in their pooled order.
    """
    total = source.count + target.count
    mean = None
    if src.mean is not None and tgt.mean is not None and total:
        mean = (src.mean * source.count + tgt.mean * target.count) / total
    pooled_rows = np.concatenate([tgt.exemplars, src.exemplars])
    pooled_texts = tgt.exemplar_texts + src.exemplar_texts
    rng = class_rng(config.seed, target.class_id, total)
    keep = np.sort(rng.permutation(len(pooled_rows))[: config.exemplar_capacity])
    exemplars = pooled_rows[keep]
    subs = sub_prototypes(exemplars, target.class_id, total, config=config, dim=dim)
    return ClassArrays(mean, subs, exemplars, [pooled_texts[i] for i in keep])


def without(
    state: ClassState,
    arrays: ClassArrays,
    vectors: np.ndarray,
    *,
    config: StoreConfig,
    dim: int,
) -> ClassState:
    """The state of a class after the items ``vectors`` leave it (a split).

    Only the items that were examples of the class leave its mean, each exactly:
    ``mean' = (count * mean - sum) / (count - n)``. An item is one when a row
    of the reservoir equals its vector (the row leaves the reservoir too).
    While the reservoir holds every example (``count`` at most its capacity)
    the other items were never examples (labelled by classification alone)
    and change nothing. Once it is only a sample they cannot be told apart:
    they are taken as examples, at most as many as the examples outside the
    reservoir, their average standing in for the ones taken (an estimate).
    The reservoir stays a uniform sample of the remaining examples, smaller
    until new ones refill it; the sub-prototypes are refitted on it.

    Raises:
        StoreError: the class would be left without an example.
    """
    vectors = check_vectors(vectors, dim)
    matched, rows = _matching_rows(arrays.exemplars, vectors)
    keep = np.setdiff1d(np.arange(len(arrays.exemplars)), rows)
    unmatched = vectors[~matched]
    outside = max(state.count - len(arrays.exemplars), 0)  # examples not in the reservoir
    taken = min(len(unmatched), outside)
    removed = len(rows) + taken
    if removed == 0:
        return state
    count = state.count - removed
    if count <= 0 or arrays.mean is None:
        raise StoreError(f"class {state.class_id!r} would be left without an example")
    total = arrays.mean.astype(np.float64) * state.count - vectors[matched].sum(axis=0)
    if taken:
        total -= unmatched.mean(axis=0) * taken
    exemplars = arrays.exemplars[keep]
    texts = [arrays.exemplar_texts[i] for i in keep]
    subs = sub_prototypes(exemplars, state.class_id, count, config=config, dim=dim)
    mean = (total / count).astype(np.float32)
    return with_arrays(state, ClassArrays(mean, subs, exemplars, texts), count=count)


def _matching_rows(exemplars: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs each vector with an equal reservoir row (each row used once).

    Returns:
        the mask of the vectors paired, and the rows they took.
    """
    matched = np.zeros(len(vectors), bool)
    if not len(exemplars):
        return matched, np.zeros(0, np.int64)
    sq = (exemplars**2).sum(axis=1)[:, None] + (vectors**2).sum(axis=1)[None, :]
    close = sq - 2.0 * exemplars @ vectors.T <= _SAME  # float32 round-off of equal rows
    taken: dict[int, None] = {}  # ordered set
    for j in range(len(vectors)):
        free = [i for i in np.flatnonzero(close[:, j]).tolist() if i not in taken]
        if free:
            taken[free[0]] = None
            matched[j] = True
    return matched, np.asarray(list(taken), np.int64)


def sub_prototypes(
    exemplars: np.ndarray, class_id: str, count: int, *, config: StoreConfig, dim: int
) -> np.ndarray:
    """Up to ``max_sub_prototypes`` k-means centres of a class's exemplars (unit rows).

    An empty ``(0, dim)`` array when sub-prototypes are off or the class has
    fewer than four exemplars per centre.
    """
    p = config.max_sub_prototypes
    if p <= 0 or len(exemplars) < 4 * p:
        return _empty(dim)
    from sklearn.cluster import KMeans

    seed = int(class_rng(config.seed, class_id, count).integers(0, 2**31 - 1))
    km = KMeans(n_clusters=p, n_init=1, random_state=seed).fit(exemplars)
    return l2_normalize(km.cluster_centers_.astype(np.float32))


def class_rng(seed: int, class_id: str, count: int) -> np.random.Generator:
    """The random generator of a class at a given count (the same on every replica)."""
    digest = hashlib.blake2b(f"{seed}:{class_id}:{count}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _empty(dim: int) -> np.ndarray:
    return np.zeros((0, dim), np.float32)
