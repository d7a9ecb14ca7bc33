"""A small vector world for the prototype store's tests: class centres and a store."""

from __future__ import annotations

import numpy as np

from streamlabel.core.embedder import l2_normalize
from streamlabel.core.store import PrototypeStore, StoreConfig
from streamlabel.testing import ManualClock

DIM = 32


class Blobs:
    """Orthonormal class centres and a seeded generator of vectors around them."""

    def __init__(self, n_centres: int = 6, dim: int = DIM, spread: float = 0.6, seed: int = 0):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((dim, n_centres)))
        self.centres = q.T.astype(np.float32)
        self.dim = dim
        self.spread = spread
        self.rng = rng

    def around(self, c: int, n: int) -> np.ndarray:
        noise = self.rng.standard_normal((n, self.dim)) * self.spread / np.sqrt(self.dim)
        return l2_normalize(self.centres[c] + noise)


def make_store(config: StoreConfig | None = None, dim: int = DIM) -> PrototypeStore:
    """An empty store on a fixed clock."""
    return PrototypeStore(dim, config, clock=ManualClock(1_000.0))
