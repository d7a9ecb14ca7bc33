"""Drift detectors over the labelled stream (pure numpy, deterministic given a seed).

Every detector follows :class:`DriftDetector`: ``update(batch) -> signals``, ``reset()``,
``n_seen`` and ``detection_bound``, the contract checked by the drift contract suite:
no alert on a stationary stream, and exactly one alert, within ``detection_bound`` items,
after a shift of the kind it targets. Bounds with the default parameters:

======================  ===================  =====  ==========================================
detector                kind                 bound  targeted shift
======================  ===================  =====  ==========================================
EmbeddingMMDDetector    embedding              550  embedding distribution moves (MMD²)
UnknownRateDetector     unknown_rate           300  unknown rate jumps by ≥ 0.3 (either way)
LabelMixDetector        label_mix              700  class frequencies change markedly (chi²)
PrototypeShiftDetector  prototype_shift       2400  one class's mean moves (class share ≥ 5%;
                                                    120 items of that class)
ConfidenceDropDetector  confidence             400  mean best-class score drops (~0.1 or more)
======================  ===================  =====  ==========================================

Bounds count items after the shift and assume the detector's reference was complete then.
"""

from streamlabel.core.drift.base import (
    DriftDetector,
    DriftKind,
    DriftObservation,
    DriftSignal,
    Hysteresis,
    Severity,
)
from streamlabel.core.drift.confidence import ConfidenceDropDetector
from streamlabel.core.drift.label_mix import LabelMixDetector
from streamlabel.core.drift.mmd import EmbeddingMMDDetector
from streamlabel.core.drift.page_hinkley import PageHinkley, UnknownRateDetector
from streamlabel.core.drift.prototype_shift import PrototypeShiftDetector


def default_detectors(seed: int = 0) -> list[DriftDetector]:
    """One detector of each kind, with default parameters."""
    return [
        EmbeddingMMDDetector(seed=seed),
        UnknownRateDetector(seed=seed),
        LabelMixDetector(seed=seed),
        PrototypeShiftDetector(seed=seed),
        ConfidenceDropDetector(seed=seed),
    ]


__all__ = [
    "ConfidenceDropDetector",
    "DriftDetector",
    "DriftKind",
    "DriftObservation",
    "DriftSignal",
    "EmbeddingMMDDetector",
    "Hysteresis",
    "LabelMixDetector",
    "PageHinkley",
    "PrototypeShiftDetector",
    "Severity",
    "UnknownRateDetector",
    "default_detectors",
]
