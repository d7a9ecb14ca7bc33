"""The prototype store's knobs: one frozen record, validated by the pipeline's settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoreConfig:
    """Knobs of the prototype store (validated by the pipeline's settings).

    Attributes:
        max_sub_prototypes: extra prototypes per class for multi-modal classes (0 = mean only).
        exemplar_capacity: examples kept per class (reservoir).
        exemplar_text_chars: characters kept of each exemplar's text (for names and
            examples): bounds a class event (64 exemplars of 500 characters and 384
            dimensions: about 230 KB) under Kafka's 1 MB record limit.
        threshold_quantile: quantile of member similarities used as open-set threshold.
        threshold_offset: subtracted from every calibrated threshold (more lenient when > 0).
        default_threshold: threshold when no class can be calibrated.
        min_calibration_examples: examples a class needs to calibrate its own threshold.
        metric_shrinkage: shrinkage of the within-class scatter toward the identity.
        metric_min_examples: labelled examples needed before the metric is learned.
        calibration_folds: folds for cross-fitted thresholds of labelled classes (1 = in-sample).
        discovered_threshold_cap: a discovered class's threshold is at most this quantile of
            the labelled classes' thresholds (``None`` = its own calibration only).
        raw_threshold_quantile: an item must also reach this quantile of the class's
            members' cosine to the class mean in the raw embedding space (catches
            off-domain items the learned metric would accept; ``None`` = off).
        metric_refit_exact_below: while the labelled exemplars number at most this, the
            metric is refitted on every change of its inputs (see
            :mod:`streamlabel.core.metric_fit` for the schedule above it).
        metric_refit_share: above that, the metric is refitted once its inputs changed
            by this share of the labelled exemplars at the last refit...
        metric_refit_every: ...or at least every this many store versions (more:
            the number of labelled classes, rounded up to a power of two).
        top_k: candidate classes reported per item.
        approximate_above: prototypes above which the index is approximate (IVF,
            see :mod:`streamlabel.core.index`); ``None`` = always exact.
        nprobe: inverted lists an approximate index scans per query.
        seed: seed of every random choice (reservoirs, sub-prototype clustering).
        max_classes: most classes the store holds, retired and merged ones included
            (``None`` = no cap); creating one more raises ``StoreError``. The
            default, 10,000, is about 1.2 GB of RAM in every replica and 1 GB per
            full snapshot at 384 dimensions and 64 exemplars a class, and a
            metric refit of several seconds (a class event stays ~1 ms): a store past it is a
            runaway (say, a label per item) rather than a taxonomy.
    """

    max_sub_prototypes: int = 0
    exemplar_capacity: int = 64
    exemplar_text_chars: int = 500
    threshold_quantile: float = 0.1
    threshold_offset: float = 0.0
    default_threshold: float = 0.3
    min_calibration_examples: int = 8
    metric_shrinkage: float = 0.3
    metric_min_examples: int = 20
    calibration_folds: int = 2
    discovered_threshold_cap: float | None = 0.5
    raw_threshold_quantile: float | None = 0.02
    metric_refit_exact_below: int = 2_000
    metric_refit_share: float = 0.1
    metric_refit_every: int = 64
    top_k: int = 5
    approximate_above: int | None = None
    nprobe: int = 16
    metric_pseudo_labels: bool = False
    seed: int = 0
    max_classes: int | None = 10_000
