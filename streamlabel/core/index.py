"""A FAISS inner-product index over unit vectors, on a GPU when faiss has GPU support.

Prototype counts are small (classes × (1 + sub-prototypes)), so an exact flat
index is both the fastest to rebuild after every store change and exact.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np


def gpu_available() -> bool:
    """True when the installed faiss was built with GPU support and sees a GPU."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return bool(get_num_gpus and get_num_gpus() > 0)


class VectorIndex:
    """Exact maximum-inner-product search.

    Args:
        dim: vector dimension.
        use_gpu: move the index to GPU 0 when :func:`gpu_available`; otherwise ignored.
    """

    def __init__(self, dim: int, *, use_gpu: bool = False) -> None:
        self.dim = dim
        index: Any = faiss.IndexFlatIP(dim)
        self.on_gpu = bool(use_gpu and gpu_available())
        if self.on_gpu:
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        self._index = index

    @property
    def size(self) -> int:
        """Vectors in the index."""
        return int(self._index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        """Adds ``(n, dim)`` vectors; their row numbers continue from :attr:`size`."""
        self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows per query: similarities ``(n, k)`` and row ids (-1 = none)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        sims, ids = self._index.search(q, k)
        return sims, ids
