"""The drift-detector contract and the machinery every detector shares.

A detector consumes the labelled stream as a sequence of :class:`DriftObservation`
batches and returns the :class:`DriftSignal` alerts each batch raised. Every detector:

1. builds a **reference** from the first items it sees,
2. evaluates a sliding **test window** every ``stride`` items,
3. fires only after ``patience`` consecutive evaluations over threshold, then ignores the
   next ``cooldown`` items and **re-references** on the items that follow (so one real
   shift gives one alert, and a later second shift can still be detected).

Evaluations happen at fixed item counts, never at batch boundaries, so a stream gives the
same signals whatever the batch sizes it is cut into.

Severity: every detector reports ``"critical"`` when its statistic is at least twice its
threshold and ``"warning"`` otherwise; ``"info"`` is reserved for consumers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

Severity = Literal["info", "warning", "critical"]
DriftKind = Literal["embedding", "unknown_rate", "label_mix", "prototype_shift", "confidence"]

UNKNOWN_LABEL = "unknown"
CRITICAL_FACTOR = 2.0


@dataclass(frozen=True, eq=False)
class DriftObservation:
    """One batch of the labelled stream as the detectors see it.

    Inputs are coerced on construction: ``vectors`` to 2-D float32, ``labels`` to a 1-D
    object array, ``is_unknown`` to bool and ``scores`` to float32.

    Attributes:
        vectors: ``(n, d)`` float32, L2-normalised embeddings.
        labels: ``(n,)`` object array of ``str``: the class id, or ``"unknown"``.
        is_unknown: ``(n,)`` bool.
        scores: ``(n,)`` float32, similarity of the item to its best class, in ``[-1, 1]``.
    """

    vectors: np.ndarray
    labels: np.ndarray
    is_unknown: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        vectors = np.asarray(self.vectors, dtype=np.float32)
        if vectors.ndim != 2:
            if vectors.size != 0:
                raise ValueError(f"vectors must be 2-D (n, d), got shape {vectors.shape}")
            vectors = vectors.reshape(0, 0)
        labels = np.asarray(self.labels, dtype=object).reshape(-1)
        is_unknown = np.asarray(self.is_unknown, dtype=bool).reshape(-1)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        n = vectors.shape[0]
        if not len(labels) == len(is_unknown) == len(scores) == n:
            raise ValueError(
                "vectors, labels, is_unknown and scores must have the same length, got "
                f"{n}, {len(labels)}, {len(is_unknown)}, {len(scores)}"
            )
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "is_unknown", is_unknown)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        """The embedding dimension (0 for an empty batch built without one)."""
        return int(self.vectors.shape[1])

    @classmethod
    def empty(cls, dim: int = 0) -> DriftObservation:
        """An empty batch of dimension ``dim``."""
        return cls(
            vectors=np.zeros((0, dim), dtype=np.float32),
            labels=np.zeros(0, dtype=object),
            is_unknown=np.zeros(0, dtype=bool),
            scores=np.zeros(0, dtype=np.float32),
        )

    def slice(self, start: int, stop: int) -> DriftObservation:
        """A copy of items ``start:stop`` (copied, so callers may reuse their buffers)."""
        return DriftObservation(
            vectors=self.vectors[start:stop].copy(),
            labels=self.labels[start:stop].copy(),
            is_unknown=self.is_unknown[start:stop].copy(),
            scores=self.scores[start:stop].copy(),
        )

    @classmethod
    def concat(cls, parts: list[DriftObservation]) -> DriftObservation:
        """The items of ``parts``, in order; empty parts are ignored."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(
            vectors=np.concatenate([p.vectors for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            is_unknown=np.concatenate([p.is_unknown for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
        )


@dataclass(frozen=True)
class DriftSignal:
    """One drift alert.

    Attributes:
        kind: which detector family raised it.
        statistic: the test statistic at the evaluation that fired.
        threshold: the value the statistic had to exceed.
        p_value: the p-value of that evaluation, or ``None`` when the test has none.
        window: items in the test window.
        reference: items in the reference.
        at_item: 0-based index (items seen by this detector) of the last item of the test
            window when the alarm fired, i.e. the last item of the (sub-)batch that fired.
        severity: ``"critical"`` when ``statistic >= 2 * threshold``, else ``"warning"``.
        affected_classes: the classes the shift concerns most (may be empty).
        detail: one readable sentence.
    """

    kind: DriftKind
    statistic: float
    threshold: float
    p_value: float | None
    window: int
    reference: int
    at_item: int
    severity: Severity
    affected_classes: tuple[str, ...]
    detail: str


@runtime_checkable
class DriftDetector(Protocol):
    """What the pipeline needs from a drift detector.

    Attributes:
        kind: the kind of drift it targets.
        detection_bound: the contract: after a shift this detector targets, an alert comes
            within this many items.
        n_seen: items seen so far.
    """

    kind: DriftKind
    detection_bound: int
    n_seen: int

    def update(self, obs: DriftObservation) -> list[DriftSignal]:
        """Consume one batch; return the alerts it raised, oldest first."""
        ...

    def reset(self) -> None:
        """Go back to the freshly constructed state (same seed)."""
        ...


def severity_for(statistic: float, threshold: float) -> Severity:
    """``"critical"`` when the statistic is at least twice the threshold, else ``"warning"``."""
    return "critical" if statistic >= CRITICAL_FACTOR * threshold else "warning"


@dataclass
class Hysteresis:
    """Patience before an alarm and cooldown after it.

    Attributes:
        patience: consecutive evaluations over threshold needed to fire.
        cooldown: items ignored after an alarm, before re-referencing starts.
        streak: current run of evaluations over threshold.
        quiet: items still to ignore.
    """

    patience: int = 2
    cooldown: int = 0
    streak: int = 0
    quiet: int = 0

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.cooldown < 0:
            raise ValueError(f"cooldown must be >= 0, got {self.cooldown}")

    def observe(self, over: bool) -> bool:
        """Record one evaluation; return True when it completes an alarm (cooldown starts)."""
        if not over:
            self.streak = 0
            return False
        self.streak += 1
        if self.streak < self.patience:
            return False
        self.streak = 0
        self.quiet = self.cooldown
        return True

    def skip(self, n: int) -> int:
        """How many of the next ``n`` items fall in the cooldown (and consume them)."""
        k = min(n, self.quiet)
        self.quiet -= k
        return k

    def reset(self) -> None:
        """Forget the streak and any cooldown."""
        self.streak = 0
        self.quiet = 0


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one evaluation of a test window against the reference."""

    statistic: float
    threshold: float
    p_value: float | None
    affected_classes: tuple[str, ...]
    detail: str


def check_window_params(reference_size: int, window: int, stride: int) -> None:
    """Raise ``ValueError`` unless the sizes are positive and ``window`` is a multiple of
    ``stride``."""
    if reference_size < 2 or window < 1 or stride < 1:
        raise ValueError(
            f"need reference_size >= 2, window >= 1, stride >= 1; got {reference_size}, "
            f"{window}, {stride}"
        )
    if window % stride:
        raise ValueError(f"window ({window}) must be a multiple of stride ({stride})")


class WindowedDetector(ABC):
    """Reference, sliding window, patience, cooldown and re-referencing, for one stream.

    Items are buffered into a reference of ``reference_size`` items, then into chunks of
    exactly ``stride`` items; once ``window`` items follow the reference, each new chunk
    triggers an evaluation of the last ``window`` items. Subclasses implement the test.

    The contract (:attr:`detection_bound` = ``window + patience * stride``): a shift that
    makes a fully shifted window exceed the threshold is reported within that many items,
    provided the reference was complete when the shift happened.
    """

    kind: DriftKind

    def __init__(
        self,
        *,
        reference_size: int,
        window: int,
        stride: int,
        patience: int,
        cooldown: int,
        seed: int,
    ) -> None:
        check_window_params(reference_size, window, stride)
        self.reference_size = reference_size
        self.window = window
        self.stride = stride
        self.patience = patience
        self.cooldown = cooldown
        self.seed = seed
        self.detection_bound: int = window + patience * stride
        self.n_seen: int = 0
        self._hysteresis = Hysteresis(patience, cooldown)
        self.reset()

    def reset(self) -> None:
        """Go back to the freshly constructed state (same seed)."""
        self.n_seen = 0
        self._rng = np.random.default_rng(self.seed)
        self._hysteresis = Hysteresis(self.patience, self.cooldown)
        self._parts: list[DriftObservation] = []
        self._parts_len = 0
        self._ref_ready = False
        self._chunks = 0
        self._clear()

    def update(self, obs: DriftObservation) -> list[DriftSignal]:
        """Consume one batch; return the alerts it raised, oldest first."""
        signals: list[DriftSignal] = []
        pos, n = 0, len(obs)
        while pos < n:
            skipped = self._hysteresis.skip(n - pos)
            pos += skipped
            self.n_seen += skipped
            if pos >= n:
                break
            target = self.stride if self._ref_ready else self.reference_size
            take = min(target - self._parts_len, n - pos)
            self._parts.append(obs.slice(pos, pos + take))
            self._parts_len += take
            pos += take
            self.n_seen += take
            if self._parts_len < target:
                continue
            block = DriftObservation.concat(self._parts)
            self._parts, self._parts_len = [], 0
            if not self._ref_ready:
                self._set_reference(block)
                self._ref_ready, self._chunks = True, 0
                continue
            self._push(block, self._chunks)
            self._chunks += 1
            if self._chunks * self.stride < self.window:
                continue
            ev = self._evaluate()
            if self._hysteresis.observe(ev.statistic > ev.threshold):
                signals.append(self._signal(ev))
                self._ref_ready = False
                self._clear()
        return signals

    def _signal(self, ev: Evaluation) -> DriftSignal:
        return DriftSignal(
            kind=self.kind,
            statistic=float(ev.statistic),
            threshold=float(ev.threshold),
            p_value=None if ev.p_value is None else float(ev.p_value),
            window=self.window,
            reference=self.reference_size,
            at_item=self.n_seen - 1,
            severity=severity_for(ev.statistic, ev.threshold),
            affected_classes=ev.affected_classes,
            detail=ev.detail,
        )

    @abstractmethod
    def _clear(self) -> None:
        """Drop the reference and the window (called on reset and after an alarm)."""

    @abstractmethod
    def _set_reference(self, ref: DriftObservation) -> None:
        """Build the reference from exactly ``reference_size`` items."""

    @abstractmethod
    def _push(self, chunk: DriftObservation, index: int) -> None:
        """Add the ``index``-th chunk (exactly ``stride`` items) after the reference."""

    @abstractmethod
    def _evaluate(self) -> Evaluation:
        """Test the last ``window`` items against the reference."""
