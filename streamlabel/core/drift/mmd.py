"""Embedding drift: a kernel two-sample test (MMD) of the recent window against a reference."""

from __future__ import annotations

import numpy as np

from streamlabel.core.drift.base import DriftKind, DriftObservation, Evaluation, WindowedDetector


def _sq_dists(X: np.ndarray, X_sq: np.ndarray, Yt: np.ndarray, Y_sq: np.ndarray) -> np.ndarray:
    """``||x - y||²`` between the rows of ``X`` and the columns of ``Yt``, in float32 (>= 0)."""
    D = X @ Yt
    D *= -2.0
    D += X_sq[:, None]
    D += Y_sq[None, :]
    return np.maximum(D, 0.0, out=D)


def _rbf(
    X: np.ndarray, X_sq: np.ndarray, Yt: np.ndarray, Y_sq: np.ndarray, gamma: float
) -> np.ndarray:
    """``exp(-gamma ||x - y||²)`` in float32, the embeddings' precision (callers sum in float64)."""
    K = _sq_dists(X, X_sq, Yt, Y_sq)
    K *= np.float32(-gamma)
    return np.exp(K, out=K)


def _sq_norms(X: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", X, X)


class EmbeddingMMDDetector(WindowedDetector):
    """Unbiased MMD² between the last ``window`` embeddings and a reference.

    The kernel is a Gaussian RBF ``k(x, y) = exp(-||x - y||² / (2 h²))`` whose bandwidth
    ``h`` is the median pairwise distance of the reference (median heuristic). The statistic
    is the *unbiased* estimate MMD²_u (diagonal terms excluded), so it is centred on 0 when
    nothing changed.

    Calibration, once per reference: ``n_permutations`` random pseudo-windows of ``window``
    items are drawn from the reference and each is compared (MMD²_u) with the rest of the
    reference; the threshold is the ``1 - alpha`` quantile of that null and the p-value of a
    test is ``(1 + #{null >= statistic}) / (1 + n_permutations)``. A pseudo-window is
    compared with ``reference_size - window`` items while the real test uses the whole
    reference, so this null is wider than the test's: the calibration is conservative.

    Cost: the reference-reference kernel sums are computed once; each stride computes only
    the kernel rows of its ``stride`` new items against the reference and the window
    (float32 kernels, float64 sums): about 0.3 s of one core for 10k items at d=384.

    Defaults: consecutive evaluations share 80% of their window, so they are strongly
    correlated and a patience of 2 barely filters noise; ``patience=6`` asks the excess to
    persist over a whole window's worth of evaluations (250 items). With ``alpha=0.002``
    (about the 2nd largest of 500 null draws) none of ~400 stationary 10k-item streams of
    the contract suite raised an alarm; the closest reached 0.83 of the threshold.

    Detection bound: ``window + patience * stride`` items (550 with the defaults) after a
    shift that makes a fully shifted window exceed the threshold, e.g. every class centre
    moved by 0.15-0.3 of its norm towards a common direction (3-9× the threshold).

    Args:
        reference_size: items in the reference (must exceed ``window + 1``).
        window: items in the test window (a multiple of ``stride``).
        stride: items between two evaluations.
        alpha: target false-alarm rate of one evaluation.
        n_permutations: pseudo-windows drawn to calibrate the threshold.
        patience: consecutive evaluations over threshold needed to fire.
        cooldown: items ignored after an alarm before re-referencing (default ``window``).
        seed: seeds the pseudo-window draws.
    """

    kind: DriftKind = "embedding"

    def __init__(
        self,
        *,
        reference_size: int = 500,
        window: int = 250,
        stride: int = 50,
        alpha: float = 0.002,
        n_permutations: int = 500,
        patience: int = 6,
        cooldown: int | None = None,
        seed: int = 0,
    ) -> None:
        if reference_size < window + 2:
            raise ValueError(
                f"reference_size ({reference_size}) must be at least window + 2 ({window + 2})"
            )
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if n_permutations < 1:
            raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
        self.alpha = alpha
        self.n_permutations = n_permutations
        super().__init__(
            reference_size=reference_size,
            window=window,
            stride=stride,
            patience=patience,
            cooldown=window if cooldown is None else cooldown,
            seed=seed,
        )

    def _clear(self) -> None:
        self._dim = -1
        self._n_ref = 0
        self._Rt = np.zeros((0, 0), dtype=np.float32)  # reference, transposed (d, n)
        self._R_sq = np.zeros(0, dtype=np.float32)
        self._gamma = 1.0
        self._term_rr = 0.0
        self._null = np.zeros(0)
        self._threshold = 0.0
        self._Wt = np.zeros((0, 0), dtype=np.float32)  # window ring buffer, transposed (d, m)
        self._W_sq = np.zeros(0, dtype=np.float32)
        self._ref_sums = np.zeros(0)  # per window item: sum of its kernel with the reference
        self._K_ww = np.zeros((0, 0), dtype=np.float32)

    def _set_reference(self, ref: DriftObservation) -> None:
        R = ref.vectors
        n, m = len(R), self.window
        self._dim, self._n_ref = R.shape[1], n
        self._Rt = np.ascontiguousarray(R.T)
        self._R_sq = _sq_norms(R)
        D = _sq_dists(R, self._R_sq, self._Rt, self._R_sq)
        med = float(np.median(D[np.triu_indices(n, k=1)]))
        self._gamma = 1.0 / (2.0 * med) if med > 0.0 else 1.0
        K0 = _rbf(R, self._R_sq, self._Rt, self._R_sq, self._gamma).astype(np.float64)
        np.fill_diagonal(K0, 0.0)
        row = K0.sum(axis=1)
        total = float(row.sum())
        self._term_rr = total / (n * (n - 1))
        # Null: random pseudo-windows P (m items) against the rest Q (q items).
        q = n - m
        A = np.zeros((self.n_permutations, n))
        for i in range(self.n_permutations):
            A[i, self._rng.choice(n, size=m, replace=False)] = 1.0
        s_pp = np.einsum("pi,ip->p", A, K0 @ A.T)
        s_p_all = A @ row
        s_pq = s_p_all - s_pp
        s_qq = total - 2.0 * s_p_all + s_pp
        self._null = np.sort(s_pp / (m * (m - 1)) + s_qq / (q * (q - 1)) - 2.0 * s_pq / (m * q))
        self._threshold = max(float(np.quantile(self._null, 1.0 - self.alpha)), 1e-12)
        self._Wt = np.zeros((self._dim, m), dtype=np.float32)
        self._W_sq = np.zeros(m, dtype=np.float32)
        self._ref_sums = np.zeros(m)
        self._K_ww = np.zeros((m, m), dtype=np.float32)

    def _push(self, chunk: DriftObservation, index: int) -> None:
        X = chunk.vectors
        if X.shape[1] != self._dim:
            raise ValueError(f"expected vectors of dimension {self._dim}, got {X.shape[1]}")
        slot = (index % (self.window // self.stride)) * self.stride
        rows = slice(slot, slot + self.stride)
        X_sq = _sq_norms(X)
        self._Wt[:, rows] = X.T
        self._W_sq[rows] = X_sq
        K_xr = _rbf(X, X_sq, self._Rt, self._R_sq, self._gamma)
        self._ref_sums[rows] = K_xr.sum(axis=1, dtype=np.float64)
        K_xw = _rbf(X, X_sq, self._Wt, self._W_sq, self._gamma)
        self._K_ww[rows, :] = K_xw
        self._K_ww[:, rows] = K_xw.T

    def _evaluate(self) -> Evaluation:
        n, m = self._n_ref, self.window
        s_ww = float(self._K_ww.sum(dtype=np.float64)) - float(
            np.trace(self._K_ww, dtype=np.float64)
        )
        stat = self._term_rr + s_ww / (m * (m - 1)) - 2.0 * float(self._ref_sums.sum()) / (n * m)
        p = (1.0 + float(np.count_nonzero(self._null >= stat))) / (1.0 + len(self._null))
        return Evaluation(
            statistic=stat,
            threshold=self._threshold,
            p_value=p,
            affected_classes=(),
            detail=(
                f"Embedding distribution moved: MMD² {stat:.4g} exceeds {self._threshold:.4g} "
                f"(p={p:.3g}) between the last {m} items and a {n}-item reference."
            ),
        )
