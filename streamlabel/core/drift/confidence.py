"""Confidence drift: a one-sided z-test that the window's mean score fell below the reference."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from streamlabel.core.drift.base import DriftKind, DriftObservation, Evaluation, WindowedDetector

MIN_STD = 1e-6


class ConfidenceDropDetector(WindowedDetector):
    """One-sided z-test of a drop in the mean best-class score.

    With ``μ_ref`` and ``σ_ref`` the mean and standard deviation of the reference scores
    (all items, unknowns included) and ``μ_win`` the mean of the last ``window`` scores, the
    statistic is ``z = (μ_ref - μ_win) / (σ_ref · sqrt(1/window + 1/reference_size))``; the
    ``1/reference_size`` term accounts for the reference mean being an estimate. Threshold:
    ``z`` (the constructor argument); p-value: the standard normal upper tail of the
    statistic. Rising confidence never fires.

    Detection bound: ``window + patience * stride`` items (400 with the defaults) after the
    mean score drops by at least ``1.5 · z · σ_ref · sqrt(1/window + 1/reference_size)``
    (about 0.1 for a score spread of 0.2; the contract suite drops it by ~0.15).

    Args:
        reference_size: items in the reference.
        window: items in the test window (a multiple of ``stride``).
        stride: items between two evaluations.
        z: threshold on the z statistic.
        patience: consecutive evaluations over threshold needed to fire.
        cooldown: items ignored after an alarm before re-referencing (default ``window``).
        seed: unused (the test is deterministic); accepted for a uniform constructor.
    """

    kind: DriftKind = "confidence"

    def __init__(
        self,
        *,
        reference_size: int = 1000,
        window: int = 300,
        stride: int = 50,
        z: float = 5.0,
        patience: int = 2,
        cooldown: int | None = None,
        seed: int = 0,
    ) -> None:
        if z <= 0.0:
            raise ValueError(f"z must be > 0, got {z}")
        self.z = z
        super().__init__(
            reference_size=reference_size,
            window=window,
            stride=stride,
            patience=patience,
            cooldown=window if cooldown is None else cooldown,
            seed=seed,
        )

    def _clear(self) -> None:
        self._ref_mean = 0.0
        self._ref_std = MIN_STD
        self._chunk_sums = np.zeros(self.window // self.stride)

    def _set_reference(self, ref: DriftObservation) -> None:
        scores = ref.scores.astype(np.float64)
        self._ref_mean = float(scores.mean())
        self._ref_std = max(float(scores.std(ddof=1)), MIN_STD)

    def _push(self, chunk: DriftObservation, index: int) -> None:
        self._chunk_sums[index % len(self._chunk_sums)] = float(
            chunk.scores.astype(np.float64).sum()
        )

    def _evaluate(self) -> Evaluation:
        mean = float(self._chunk_sums.sum()) / self.window
        scale = self._ref_std * math.sqrt(1.0 / self.window + 1.0 / self.reference_size)
        stat = (self._ref_mean - mean) / scale
        p = float(stats.norm.sf(stat))
        return Evaluation(
            statistic=stat,
            threshold=self.z,
            p_value=p,
            affected_classes=(),
            detail=(
                f"Mean best-class score fell from {self._ref_mean:.3f} to {mean:.3f} over the "
                f"last {self.window} items (z={stat:.3g} > {self.z:.3g}, p={p:.3g})."
            ),
        )
