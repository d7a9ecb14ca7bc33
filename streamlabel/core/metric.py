"""The learned metric: whitening by the labelled classes' within-class scatter.

A frozen sentence embedder puts texts of one class in a cloud whose spread is
dominated by directions that do not separate classes (phrasing, length,
shared vocabulary). The labelled feedback tells us those directions: the
pooled within-class covariance ``Sw`` of the labelled examples. Mapping
``x -> normalize(Sw^{-1/2} (x - c))`` shrinks them and stretches the
directions that separate classes, for the known classes and, because the
nuisance directions are shared, for classes not seen yet. This is the classic
whitening / LDA idea without the projection to ``C - 1`` dimensions (which would
discard exactly the directions novel classes live in).

``Sw`` is shrunk toward a multiple of the identity (Ledoit–Wolf-style fixed
shrinkage) so a handful of examples cannot produce a degenerate transform.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(50, 8)) * [5, 1, 1, 1, 1, 1, 1, 1] + [0, 3, 0, 0, 0, 0, 0, 0]
    >>> b = rng.normal(size=(50, 8)) * [5, 1, 1, 1, 1, 1, 1, 1] - [0, 3, 0, 0, 0, 0, 0, 0]
    >>> m = Metric.fit([a, b], shrinkage=0.1)
    >>> m.apply(a).shape
    (50, 8)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamlabel.core.embedder import l2_normalize


@dataclass(frozen=True, eq=False)
class Metric:
    """An affine map followed by L2 normalisation; identity when nothing is learned.

    Attributes:
        center: subtracted before the transform, shape ``(d,)``.
        transform: right-multiplied, shape ``(d, d)``.
        n_examples: labelled examples it was fitted on (0 for the identity).
    """

    center: np.ndarray
    transform: np.ndarray
    n_examples: int = 0

    @classmethod
    def identity(cls, dim: int) -> Metric:
        """The metric that only re-normalises (plain cosine similarity)."""
        return cls(np.zeros(dim, np.float32), np.eye(dim, dtype=np.float32), 0)

    @property
    def is_identity(self) -> bool:
        """True when nothing was learned."""
        return self.n_examples == 0

    @classmethod
    def fit(
        cls, groups: Sequence[np.ndarray], *, shrinkage: float = 0.3, min_examples: int = 20
    ) -> Metric:
        """Fits the whitening transform on groups of examples, one group per class.

        Args:
            groups: ``(n_i, d)`` arrays of unit vectors; groups with fewer than 2 rows
                carry no within-class information and are ignored.
            shrinkage: weight of the identity target in ``(1-s) Sw + s (tr(Sw)/d) I``.
            min_examples: below this many usable examples the identity is returned.
        """
        if not groups:
            raise ValueError("Metric.fit needs at least one group")
        dim = int(np.asarray(groups[0]).shape[1])
        usable = [np.asarray(g, dtype=np.float64) for g in groups if len(g) >= 2]
        n = sum(len(g) for g in usable)
        if n < min_examples or len(usable) < 2:
            return cls.identity(dim)
        centered = np.concatenate([g - g.mean(axis=0) for g in usable])
        sw = centered.T @ centered / max(n - len(usable), 1)
        target = np.trace(sw) / dim
        if target <= 1e-12:  # every class is a single repeated point: nothing to learn
            return cls.identity(dim)
        sw = (1.0 - shrinkage) * sw + shrinkage * target * np.eye(dim)
        evals, evecs = np.linalg.eigh(sw)
        evals = np.maximum(evals, 1e-12)
        # Scale so the transform keeps unit-norm inputs at about unit norm; cosine
        # similarity is scale-free, this only keeps numbers readable.
        inv_sqrt = (evecs / np.sqrt(evals / target)) @ evecs.T
        center = np.concatenate(usable).mean(axis=0)
        return cls(center.astype(np.float32), inv_sqrt.astype(np.float32), n)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Maps raw unit vectors ``(n, d)`` (or one ``(d,)``) into the metric space (unit norm)."""
        x = np.asarray(x, dtype=np.float32)
        if self.is_identity:
            return l2_normalize(x)
        return l2_normalize((x - self.center) @ self.transform)

    def apply_rows(self, x: np.ndarray) -> np.ndarray:
        """:meth:`apply` computed so that a row's result does not depend on its batch.

        The product is taken in float64 and rounded to float32 once, so a
        prototype or exemplar maps to the same float32 vector whether it is
        transformed alone (one class event) or among every row of the store (a
        refit): replicas that batch differently hold identical rows.
        """
        x = np.asarray(x, dtype=np.float32)
        if self.is_identity:
            return l2_normalize(x)
        y = (x.astype(np.float64) - self.center) @ self.transform.astype(np.float64)
        norms = np.linalg.norm(y, axis=-1, keepdims=True)
        out = np.divide(y, norms, out=np.zeros_like(y), where=norms > 0)
        return out.astype(np.float32)

    def to_plain(self) -> dict[str, Any]:
        """Plain data (float32 bytes), for a snapshot; :meth:`from_plain` reads it back."""
        return {
            "dim": int(self.center.shape[0]),
            "center": np.ascontiguousarray(self.center, np.float32).tobytes(),
            "transform": np.ascontiguousarray(self.transform, np.float32).tobytes(),
            "n_examples": int(self.n_examples),
        }

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> Metric:
        """The metric :meth:`to_plain` wrote.

        Raises:
            ValueError: the content is inconsistent.
        """
        dim = int(plain["dim"])
        center = np.frombuffer(plain["center"], np.float32).copy()
        transform = np.frombuffer(plain["transform"], np.float32).copy()
        if dim <= 0 or center.shape != (dim,) or transform.size != dim * dim:
            raise ValueError(f"a metric of dimension {dim} has inconsistent arrays")
        return cls(center, transform.reshape(dim, dim), int(plain["n_examples"]))
