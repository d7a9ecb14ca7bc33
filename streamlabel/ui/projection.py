"""The map: a 2-D principal-component projection of the class prototypes, some of
their exemplars and the recent unknown items (numpy only).

Vectors are L2-normalised (the store compares cosine similarities), centred,
and projected on their first two principal directions. Vectors of another
dimension than the class means (another model) are left out.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> pts = [MapInput("prototype", "a", "billing", None, rng.normal(size=8)),
    ...        MapInput("prototype", "b", "login", None, rng.normal(size=8)),
    ...        MapInput("unknown", "i1", "unknown", "my card?", rng.normal(size=8))]
    >>> m = project(pts)
    >>> len(m.points), sorted(m.counts.items())
    (3, [('exemplar', 0), ('prototype', 2), ('unknown', 1)])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["MapInput", "MapPoint", "ProjectedMap", "project"]

PointKind = Literal["prototype", "exemplar", "unknown"]
KINDS: tuple[PointKind, ...] = ("prototype", "exemplar", "unknown")


@dataclass(frozen=True)
class MapInput:
    """One vector to place: what it is, the class (or item) id, its label and text."""

    kind: PointKind
    ref: str
    label: str
    text: str | None
    vector: np.ndarray


@dataclass(frozen=True)
class MapPoint:
    """A placed point."""

    x: float
    y: float
    kind: PointKind
    ref: str
    label: str
    text: str | None


@dataclass
class ProjectedMap:
    """The projection: the points, and how much of the variance the two axes explain."""

    points: list[MapPoint] = field(default_factory=list)
    explained: tuple[float, float] = (0.0, 0.0)

    @property
    def counts(self) -> dict[str, int]:
        """Points of each kind."""
        out: dict[str, int] = dict.fromkeys(KINDS, 0)
        for p in self.points:
            out[p.kind] += 1
        return out

    def as_json(self) -> dict[str, Any]:
        """Column arrays for the browser (uPlot wants columns), with the counts."""
        pts = self.points
        return {
            "x": [round(p.x, 5) for p in pts],
            "y": [round(p.y, 5) for p in pts],
            "kind": [p.kind for p in pts],
            "ref": [p.ref for p in pts],
            "label": [p.label for p in pts],
            "text": [(p.text or "")[:200] for p in pts],
            "counts": self.counts,
            "explained": [round(v, 4) for v in self.explained],
        }


def project(inputs: Sequence[MapInput]) -> ProjectedMap:
    """Places every input of the prototypes' dimension on the plane of the first two
    principal components (one point: the origin; none: an empty map)."""
    dims = [len(i.vector) for i in inputs if i.kind == "prototype"] or [
        len(i.vector) for i in inputs
    ]
    if not dims:
        return ProjectedMap()
    dim = max(set(dims), key=dims.count)
    kept = [i for i in inputs if len(i.vector) == dim]
    X = np.asarray([i.vector for i in kept], dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    X = X / np.where(norms > 0, norms, 1.0)
    X = X - X.mean(axis=0)
    if len(kept) < 2 or not np.any(X):
        coords = np.zeros((len(kept), 2))
        explained = (0.0, 0.0)
    else:
        _, s, vt = np.linalg.svd(X, full_matrices=False)
        axes = vt[:2]
        coords = X @ axes.T
        if coords.shape[1] < 2:
            coords = np.hstack([coords, np.zeros((len(kept), 1))])
        var = s**2
        total = float(var.sum()) or 1.0
        explained = (float(var[0] / total), float(var[1] / total) if len(var) > 1 else 0.0)
    points = [
        MapPoint(float(x), float(y), i.kind, i.ref, i.label, i.text)
        for i, (x, y) in zip(kept, coords, strict=True)
    ]
    return ProjectedMap(points, explained)
