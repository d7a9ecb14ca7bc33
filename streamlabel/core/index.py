"""A FAISS inner-product index over unit vectors, on a GPU when faiss has GPU support.

Most stores hold a few prototypes per class for tens to thousands of classes:
an exact flat index is then both the fastest to rebuild after every store
change and exact, and it is the default. Past tens of thousands of classes a
flat scan costs as much as the model (a batch of 256 against 100k prototypes
is about 20 GFLOP: 1.9 s on 2 cores). ``store.approximate_above`` then switches
to an inverted-file index (IVF-flat): ``4 * sqrt(rows)`` k-means lists,
``nprobe`` of them scanned per query. It is opt-in because its recall depends
on the data. On uniform synthetic classes (30k, the worst case for IVF) it
agreed with the exact index on 85% of items at ``nprobe`` 16, 96% at 64 and
99.8% at 256 (a third of the lists); clustered real embeddings do better. Its
training is single-threaded on a fixed sample with a fixed seed, so every
replica that compiles the same store builds the same index and gives the same
labels (a label must be explainable and replayable).

A class event rewrites only that class's rows in place (:meth:`VectorIndex.set_rows`,
:meth:`VectorIndex.truncate`): the flat index's memory directly, the IVF index
through its id map (each row moves to the list of its new nearest centroid;
the centroids are retrained only when the store rebuilds the index, after a
metric refit). A GPU index cannot be written in place: it is rebuilt by its
owner when it changed (:attr:`VectorIndex.updatable` is False).

faiss is imported where an index is built, not with this module, so the
settings and the Kafka client (which import the core's defaults) stay free of
it in a slim install.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["VectorIndex", "gpu_available"]

_TRAIN_PER_LIST = 40  # k-means sample: FAISS warns below 39 points per centroid
_SEED = 1234


def gpu_available() -> bool:
    """True when the installed faiss was built with GPU support and sees a GPU."""
    import faiss

    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return bool(get_num_gpus and get_num_gpus() > 0)


class VectorIndex:
    """Maximum-inner-product search, exact or (over large sets) approximate.

    Args:
        dim: vector dimension.
        use_gpu: move the index to GPU 0 when :func:`gpu_available`; otherwise ignored.
    """

    def __init__(self, dim: int, *, use_gpu: bool = False) -> None:
        import faiss

        self.dim = dim
        self.use_gpu = bool(use_gpu and gpu_available())
        self.approximate = False
        self._index: Any = self._placed(faiss.IndexFlatIP(dim))

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        use_gpu: bool = False,
        approximate_above: int | None = None,
        nprobe: int = 16,
    ) -> VectorIndex:
        """An index over ``vectors``: exact, or IVF-flat when there are more than
        ``approximate_above`` of them (``None`` = always exact)."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        index = cls(x.shape[1], use_gpu=use_gpu)
        if approximate_above is not None and len(x) > approximate_above:
            index._index = index._placed(_train_ivf(x, nprobe))
            index.approximate = True
        index.add(x)
        return index

    @property
    def updatable(self) -> bool:
        """True when rows can be rewritten in place (not on a GPU)."""
        return not self.use_gpu

    def _placed(self, index: Any) -> Any:
        if self.use_gpu:
            import faiss

            return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        return index

    @property
    def size(self) -> int:
        """Vectors in the index."""
        return int(self._index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        """Adds ``(n, dim)`` vectors; their row numbers continue from :attr:`size`."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.approximate:
            self._index.add_with_ids(x, np.arange(self.size, self.size + len(x), dtype=np.int64))
        else:
            self._index.add(x)

    def set_rows(self, start: int, vectors: np.ndarray) -> None:
        """Overwrites rows ``start .. start + len(vectors) - 1`` (all below :attr:`size`).

        Raises:
            ValueError: the rows are not in the index, or the index is on a GPU.
        """
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if start < 0 or start + len(x) > self.size or not self.updatable:
            raise ValueError(f"cannot rewrite rows {start}..{start + len(x)} of {self.size}")
        if not len(x):
            return
        if self.approximate:
            ids = np.arange(start, start + len(x), dtype=np.int64)
            self._remove(ids)
            self._index.add_with_ids(x, ids)
            return
        import faiss

        data = faiss.rev_swig_ptr(self._index.get_xb(), self.size * self.dim)
        data.reshape(self.size, self.dim)[start : start + len(x)] = x

    def truncate(self, size: int) -> None:
        """Keeps the first ``size`` rows."""
        if size >= self.size:
            return
        if not self.updatable:
            raise ValueError("a GPU index cannot be truncated in place")
        if self.approximate:
            self._remove(np.arange(size, self.size, dtype=np.int64))
            return
        import faiss

        self._index.remove_ids(faiss.IDSelectorRange(size, self.size))

    def _remove(self, ids: np.ndarray) -> None:
        import faiss

        self._index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows per query: similarities ``(n, k)`` and row ids (-1 = none)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        sims, ids = self._index.search(q, k)
        return sims, ids


def _train_ivf(x: np.ndarray, nprobe: int) -> Any:
    """An empty IVF-flat index, trained on an evenly spaced sample of ``x``."""
    import faiss

    nlist = max(1, min(len(x) // _TRAIN_PER_LIST, int(4 * math.sqrt(len(x)))))
    step = max(1, len(x) // (nlist * _TRAIN_PER_LIST))
    sample = np.ascontiguousarray(x[::step][: nlist * _TRAIN_PER_LIST])
    quantizer = faiss.IndexFlatIP(x.shape[1])
    ivf = faiss.IndexIVFFlat(quantizer, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = _SEED
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # the same centroids in every replica
    try:
        ivf.train(sample)
    finally:
        faiss.omp_set_num_threads(threads)
    ivf.nprobe = min(nprobe, nlist)
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # by id
    return ivf
