"""Prototype shift: per class, has the mean embedding of its recent items moved?"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from streamlabel.core.drift.base import (
    UNKNOWN_LABEL,
    DriftKind,
    DriftObservation,
    DriftSignal,
    Hysteresis,
    severity_for,
)


class _ClassTrack:
    """One class: streaming reference statistics, then a ring buffer of its last items.

    The reference keeps O(d) memory: the sum of its items, the sum of their squared norms
    and an unbiased estimate of ``trace(Σ²)`` from products of disjoint pair differences
    (``E[((x1 - x2)·(x3 - x4))²] = 4 trace(Σ²)``), which sets the effective degrees of
    freedom of the null.
    """

    def __init__(self, dim: int, window: int, patience: int, cooldown: int) -> None:
        self.hysteresis = Hysteresis(patience, cooldown)
        self.ring = np.zeros((window, dim), dtype=np.float32)
        self.start_reference()

    def start_reference(self) -> None:
        dim = self.ring.shape[1]
        self.ready = False
        self.ref_n = 0
        self.ref_sum = np.zeros(dim)
        self.ref_sq = 0.0
        self.pending: np.ndarray | None = None
        self.prev_diff: np.ndarray | None = None
        self.q_sum = 0.0
        self.q_n = 0
        self.mean = np.zeros(dim)
        self.trace = 0.0
        self.df = 1.0
        self.threshold = 1.0
        self.count = 0

    def add_reference(self, x32: np.ndarray) -> None:
        x = x32.astype(np.float64)
        self.ref_n += 1
        self.ref_sum += x
        self.ref_sq += float(x @ x)
        if self.pending is None:
            self.pending = x
            return
        diff = x - self.pending
        self.pending = None
        if self.prev_diff is not None:
            self.q_sum += float(diff @ self.prev_diff) ** 2 / 4.0
            self.q_n += 1
        self.prev_diff = diff

    def finish_reference(self, z: float) -> None:
        n, dim = self.ref_n, self.ring.shape[1]
        self.mean = self.ref_sum / n
        self.trace = max((self.ref_sq - n * float(self.mean @ self.mean)) / (n - 1), 1e-12)
        tr2 = self.q_sum / self.q_n if self.q_n else 0.0
        self.df = float(np.clip(self.trace**2 / tr2, 1.0, dim)) if tr2 > 0.0 else float(dim)
        self.threshold = float(stats.chi2.isf(stats.norm.sf(z), self.df)) / self.df
        self.ready = True
        self.pending = self.prev_diff = None


class PrototypeShiftDetector:
    """Per-class test that the mean of the class's last items moved from its reference mean.

    For every class (items labelled ``"unknown"`` or flagged unknown are ignored) the
    reference is the class's first ``reference_size`` items; the test window is its last
    ``window`` items (at least ``min_items``), evaluated every ``stride`` items *of that
    class*. The statistic is the squared distance between the two means normalised by its
    null expectation ``trace(Σ_ref) (1/n_ref + 1/n_win)``, so it is about 1 when nothing
    moved. Under the null it is close to ``χ²_df / df`` with the effective degrees of
    freedom ``df = trace(Σ)² / trace(Σ²)`` estimated from the reference; the threshold is
    that distribution's upper quantile at the normal tail probability of ``z``, and the
    p-value its upper tail. Hysteresis and cooldown (in items of the class) are per class;
    each alert names the class that shifted.

    Memory: at most ``max_classes`` classes are tracked (later new labels are ignored and
    counted in ``n_untracked``), each with a ``window × d`` float32 ring buffer plus O(d):
    about 150 KB a class at d=384 with the defaults, so at most ~150 MB.

    Detection bound: ``ceil((window + patience * stride) / min_class_share)`` stream items
    (2400 with the defaults) after the mean of a class whose reference is complete moves by
    clearly more than its noise (a fully shifted window at several times the threshold),
    for a class making up at least ``min_class_share`` of the stream. In items of the class
    itself the bound is ``window + patience * stride`` (120).

    Args:
        reference_size: reference items per class.
        window: window items per class (ring buffer size).
        stride: class items between two evaluations of that class.
        min_items: class items needed in the window before the first evaluation.
        z: threshold as a standard-normal tail (z=5: false alarm ~3e-7 per evaluation).
        patience: consecutive evaluations over threshold needed to fire.
        cooldown: class items ignored after an alarm before re-referencing the class.
        max_classes: most classes tracked.
        min_class_share: the share of the stream the contract assumes for the shifted
            class; it only scales :attr:`detection_bound`.
        seed: unused (the test is deterministic); accepted for a uniform constructor.
    """

    kind: DriftKind = "prototype_shift"

    def __init__(
        self,
        *,
        reference_size: int = 200,
        window: int = 100,
        stride: int = 10,
        min_items: int = 50,
        z: float = 5.0,
        patience: int = 2,
        cooldown: int | None = None,
        max_classes: int = 1_000,
        min_class_share: float = 0.05,
        seed: int = 0,
    ) -> None:
        if reference_size < 4 or window < 1 or stride < 1 or not 1 <= min_items <= window:
            raise ValueError(
                "need reference_size >= 4, window >= 1, stride >= 1, 1 <= min_items <= window;"
                f" got {reference_size}, {window}, {stride}, {min_items}"
            )
        if not 0.0 < min_class_share <= 1.0 or max_classes < 1 or z <= 0.0:
            raise ValueError("need 0 < min_class_share <= 1, max_classes >= 1 and z > 0")
        self.reference_size = reference_size
        self.window = window
        self.stride = stride
        self.min_items = min_items
        self.z = z
        self.patience = patience
        self.cooldown = window if cooldown is None else cooldown
        self.max_classes = max_classes
        self.min_class_share = min_class_share
        self.seed = seed
        self.detection_bound: int = math.ceil((window + patience * stride) / min_class_share)
        Hysteresis(patience, self.cooldown)  # validates both
        self.n_seen: int = 0
        self.n_untracked: int = 0
        self._dim = -1
        self._tracks: dict[str, _ClassTrack] = {}

    @property
    def n_tracked(self) -> int:
        """Classes currently tracked."""
        return len(self._tracks)

    def reset(self) -> None:
        """Go back to the freshly constructed state."""
        self.n_seen = 0
        self.n_untracked = 0
        self._dim = -1
        self._tracks = {}

    def update(self, obs: DriftObservation) -> list[DriftSignal]:
        """Consume one batch; return the alerts it raised, ordered by ``at_item``."""
        n = len(obs)
        if n == 0:
            return []
        if self._dim < 0:
            self._dim = obs.dim
        elif obs.dim != self._dim:
            raise ValueError(f"expected vectors of dimension {self._dim}, got {obs.dim}")
        groups: dict[str, list[int]] = {}
        labels = obs.labels.tolist()
        unknown = obs.is_unknown.tolist()
        for i, (label, unk) in enumerate(zip(labels, unknown, strict=True)):
            key = str(label)
            if not unk and key != UNKNOWN_LABEL:
                groups.setdefault(key, []).append(i)
        signals: list[DriftSignal] = []
        for label, rows in groups.items():
            track = self._tracks.get(label)
            if track is None:
                if len(self._tracks) >= self.max_classes:
                    self.n_untracked += len(rows)
                    continue
                track = _ClassTrack(self._dim, self.window, self.patience, self.cooldown)
                self._tracks[label] = track
            idx = np.asarray(rows)
            signals.extend(self._update_class(label, track, obs.vectors[idx], idx + self.n_seen))
        self.n_seen += n
        signals.sort(key=lambda s: s.at_item)
        return signals

    def _update_class(
        self, label: str, track: _ClassTrack, X: np.ndarray, at: np.ndarray
    ) -> list[DriftSignal]:
        signals: list[DriftSignal] = []
        pos, k = 0, len(X)
        while pos < k:
            pos += track.hysteresis.skip(k - pos)
            if pos >= k:
                break
            if not track.ready:
                while pos < k and track.ref_n < self.reference_size:
                    track.add_reference(X[pos])
                    pos += 1
                if track.ref_n == self.reference_size:
                    track.finish_reference(self.z)
                continue
            if track.count < self.min_items:
                target = self.min_items
            else:
                target = track.count + self.stride - (track.count - self.min_items) % self.stride
            take = min(k - pos, target - track.count)
            slots = (track.count + np.arange(take)) % self.window
            track.ring[slots] = X[pos : pos + take]
            track.count += take
            pos += take
            if track.count < target:
                continue
            n_win = min(track.count, self.window)
            win_mean = track.ring[:n_win].mean(axis=0, dtype=np.float64)
            diff = win_mean - track.mean
            scale = track.trace * (1.0 / self.reference_size + 1.0 / n_win)
            stat = float(diff @ diff) / scale
            if track.hysteresis.observe(stat > track.threshold):
                signals.append(self._signal(label, track, stat, n_win, int(at[pos - 1])))
                track.start_reference()
        return signals

    def _signal(
        self, label: str, track: _ClassTrack, stat: float, n_win: int, at_item: int
    ) -> DriftSignal:
        p = float(stats.chi2.sf(stat * track.df, track.df))
        return DriftSignal(
            kind=self.kind,
            statistic=stat,
            threshold=track.threshold,
            p_value=p,
            window=n_win,
            reference=self.reference_size,
            at_item=at_item,
            severity=severity_for(stat, track.threshold),
            affected_classes=(label,),
            detail=(
                f"The prototype of class {label!r} moved: normalised squared shift {stat:.3g} "
                f"> {track.threshold:.3g} (p={p:.3g}) between its last {n_win} items and its "
                f"{self.reference_size}-item reference."
            ),
        )
