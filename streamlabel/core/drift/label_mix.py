"""Label-mix drift: a chi-square test of the window's label counts against the reference's."""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy import stats

from streamlabel.core.drift.base import DriftKind, DriftObservation, Evaluation, WindowedDetector

MIN_EXPECTED = 5.0
TOP_AFFECTED = 3


class LabelMixDetector(WindowedDetector):
    """Chi-square test that the label proportions of the window match the reference.

    Labels (``"unknown"`` included) whose expected count in the window, under the reference
    proportions, is below 5 are pooled into one "other" column, together with labels the
    reference never saw; if that column is itself too thin it is merged into the smallest
    kept label. The test is the chi-square test of homogeneity of the 2 × K table
    (reference counts, window counts): since the reference proportions are themselves
    estimated, a goodness-of-fit test against them would be anti-conservative by a factor
    ``1 + window / reference_size``. Statistic: chi²; threshold: the chi² critical value at
    ``alpha`` for K - 1 degrees of freedom; p-value from the chi² distribution.
    Affected classes: the (up to 3) labels whose share changed most, by absolute change.

    Detection bound: ``window + patience * stride`` items (700 with the defaults) after a
    marked change of the class frequencies (e.g. the frequency ranking reversed).

    Args:
        reference_size: items in the reference.
        window: items in the test window (a multiple of ``stride``).
        stride: items between two evaluations.
        alpha: significance level of one evaluation.
        patience: consecutive evaluations over threshold needed to fire.
        cooldown: items ignored after an alarm before re-referencing (default ``window``).
        seed: unused (the test is deterministic); accepted for a uniform constructor.
    """

    kind: DriftKind = "label_mix"

    def __init__(
        self,
        *,
        reference_size: int = 1000,
        window: int = 500,
        stride: int = 100,
        alpha: float = 1e-4,
        patience: int = 2,
        cooldown: int | None = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.alpha = alpha
        super().__init__(
            reference_size=reference_size,
            window=window,
            stride=stride,
            patience=patience,
            cooldown=window if cooldown is None else cooldown,
            seed=seed,
        )

    def _clear(self) -> None:
        self._ref_counts: dict[str, int] = {}
        self._kept: list[str] = []
        self._chunk_counts: list[Counter[str]] = [Counter() for _ in range(self._n_chunks)]
        self._win_counts: Counter[str] = Counter()

    @property
    def _n_chunks(self) -> int:
        return self.window // self.stride

    def _set_reference(self, ref: DriftObservation) -> None:
        counts = Counter(str(label) for label in ref.labels.tolist())
        self._ref_counts = dict(sorted(counts.items()))
        scale = self.window / self.reference_size
        self._kept = [lab for lab, c in self._ref_counts.items() if c * scale >= MIN_EXPECTED]

    def _push(self, chunk: DriftObservation, index: int) -> None:
        slot = index % self._n_chunks
        self._win_counts.subtract(self._chunk_counts[slot])
        counts = Counter(str(label) for label in chunk.labels.tolist())
        self._chunk_counts[slot] = counts
        self._win_counts.update(counts)
        self._win_counts = +self._win_counts  # drop labels that left the window

    def _table(self) -> np.ndarray:
        """The 2 × K table (reference row, window row) after pooling thin columns."""
        n_ref, n_win = self.reference_size, self.window
        ref = [self._ref_counts[lab] for lab in self._kept]
        win = [self._win_counts.get(lab, 0) for lab in self._kept]
        other_ref, other_win = n_ref - sum(ref), n_win - sum(win)
        if other_ref + other_win > 0:
            thin = (other_ref + other_win) * min(n_ref, n_win) / (n_ref + n_win) < MIN_EXPECTED
            if thin and ref:
                j = int(np.argmin(ref))
                ref[j] += other_ref
                win[j] += other_win
            else:
                ref.append(other_ref)
                win.append(other_win)
        return np.array([ref, win], dtype=np.float64)

    def _affected(self) -> tuple[str, ...]:
        n_ref, n_win = self.reference_size, self.window
        labels = sorted(set(self._ref_counts) | {k for k, v in self._win_counts.items() if v})
        change = [
            (abs(self._win_counts.get(lab, 0) / n_win - self._ref_counts.get(lab, 0) / n_ref), lab)
            for lab in labels
        ]
        change.sort(key=lambda t: (-t[0], t[1]))
        return tuple(lab for c, lab in change[:TOP_AFFECTED] if c > 0.0)

    def _evaluate(self) -> Evaluation:
        table = self._table()
        k = table.shape[1]
        if k < 2:
            stat, df, p = 0.0, 1, 1.0
        else:
            expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
            stat = float(((table - expected) ** 2 / expected).sum())
            df = k - 1
            p = float(stats.chi2.sf(stat, df))
        threshold = float(stats.chi2.isf(self.alpha, df))
        affected = self._affected()
        return Evaluation(
            statistic=stat,
            threshold=threshold,
            p_value=p,
            affected_classes=affected,
            detail=(
                f"Label mix changed: chi² {stat:.4g} > {threshold:.4g} ({df} df, p={p:.3g}) "
                f"over the last {self.window} items; largest share changes: "
                f"{', '.join(affected) or 'none'}."
            ),
        )
