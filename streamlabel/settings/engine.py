"""The Engine's settings: model, store, discovery, drift and limits.

Environment variables use the prefix ``STREAMLABEL_`` and ``__`` for nesting,
e.g. ``STREAMLABEL_STORE__THRESHOLD_QUANTILE=0.1``. :func:`load_settings` turns
any validation failure into a :class:`~streamlabel.errors.SettingsError` whose
message names the setting.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from streamlabel.core.clustering import HDBSCANClustering
from streamlabel.core.discovery import DiscoveryConfig
from streamlabel.core.store import StoreConfig
from streamlabel.settings.loader import Section, SettingsModel, load

# Every default lives once, in the core; the settings only validate and name them.
_DISCOVERY = DiscoveryConfig()
_HDBSCAN = HDBSCANClustering()
_STORE = StoreConfig()


class ModelSettings(Section):
    """The embedding model."""

    path: str | None = Field(default=None, description="Local model dir; None = bundled MiniLM.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where the model runs; auto = cuda when a GPU is visible."
    )
    batch_size: int = Field(
        default=32,
        ge=1,
        le=4096,
        description="Texts per forward pass of the model (a poll's texts are sorted by length "
        "and cut into such batches). 32 on CPU: one torch thread embeds 185 titles/s in polls "
        "of 256 and 164/s in polls of 64, against 168/s and 127/s with 64 (less padding); a "
        "two-thread call is the same at 32 and 64. A GPU wants larger batches (256).",
    )
    max_seq_length: int = Field(
        default=128, ge=8, le=8192, description="Tokens per text; longer texts are truncated."
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="The model's precision. auto = bf16 on a GPU and on a CPU that computes "
        "bf16 natively (AVX512-BF16 or AMX: 1.7x fp32's speed, cosine to fp32 >= 0.998), "
        "fp32 on other CPUs (where torch would emulate bf16).",
    )
    packing: bool = Field(
        default=True,
        description="On CPU, run a chunk of uneven lengths (a short poll) packed: its texts "
        "end to end in one sequence, no padding (8 titles: 3.0 ms each instead of 4.0). Used "
        "only for models whose packed and padded embeddings agree at load.",
    )

    lean_forward: bool = Field(
        default=True,
        description="On CPU, run a BERT encoder (the bundled MiniLM) as plain torch ops "
        "over its weights instead of transformers' forward, whose Python wrappers cost a "
        "quarter of a small batch (a title: 4.7 -> 3.5 ms). Used only for models whose "
        "embeddings agree with transformers' at load.",
    )

    def embedder_options(self) -> dict[str, Any]:
        """Keyword arguments of
        :class:`~streamlabel.core.embedder.SentenceTransformerEmbedder` (after the path)."""
        return {
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "max_seq_length": self.max_seq_length,
            "packing": self.packing,
            "lean": self.lean_forward,
        }


class StoreSettings(Section):
    """The prototype store and open-set calibration (see :class:`StoreConfig`)."""

    max_sub_prototypes: int = Field(
        default=_STORE.max_sub_prototypes,
        ge=0,
        le=64,
        description="Extra prototypes per class for multi-modal classes (0 = the mean only).",
    )
    exemplar_capacity: int = Field(
        default=_STORE.exemplar_capacity,
        ge=2,
        le=4096,
        description="Examples kept per class (a reservoir sample).",
    )
    exemplar_text_chars: int = Field(
        default=_STORE.exemplar_text_chars,
        ge=16,
        le=20_000,
        description="Characters kept of each exemplar's text (class names, examples); "
        "bounds the size of a class event.",
    )
    threshold_quantile: float = Field(
        default=_STORE.threshold_quantile,
        gt=0.0,
        lt=0.5,
        description="Quantile of a class's member similarities used as its open-set threshold.",
    )
    threshold_offset: float = Field(
        default=_STORE.threshold_offset,
        ge=-1.0,
        le=1.0,
        description="Subtracted from every calibrated threshold (> 0 accepts more items).",
    )
    default_threshold: float = Field(
        default=_STORE.default_threshold,
        ge=-1.0,
        le=1.0,
        description="The threshold of a class with too few examples to calibrate its own.",
    )
    min_calibration_examples: int = Field(
        default=_STORE.min_calibration_examples,
        ge=1,
        description="Examples a class needs before it calibrates its own threshold.",
    )
    metric_shrinkage: float = Field(
        default=_STORE.metric_shrinkage,
        ge=0.0,
        le=1.0,
        description="Shrinkage of the within-class scatter toward the identity (the metric).",
    )
    metric_min_examples: int = Field(
        default=_STORE.metric_min_examples,
        ge=2,
        description="Labelled examples needed before the metric is learned.",
    )
    metric_refit_exact_below: int = Field(
        default=_STORE.metric_refit_exact_below,
        ge=0,
        description="While the labelled exemplars number at most this, the metric is refitted "
        "on every change of its inputs (every replica then holds the metric of its states).",
    )
    metric_refit_share: float = Field(
        default=_STORE.metric_refit_share,
        gt=0.0,
        description="Above that, the metric is refitted once its inputs changed by this share "
        "of the labelled exemplars at the last refit (a refit derives every class again).",
    )
    metric_refit_every: int = Field(
        default=_STORE.metric_refit_every,
        ge=1,
        description="...or at least every this many store versions (or the number of labelled "
        "classes, rounded up to a power of two, when larger): a late replica converges then.",
    )
    calibration_folds: int = Field(
        default=_STORE.calibration_folds,
        ge=1,
        le=10,
        description="Folds for the cross-fitted thresholds of labelled classes (1 = in-sample).",
    )
    discovered_threshold_cap: float | None = Field(
        default=_STORE.discovered_threshold_cap,
        ge=0.0,
        le=1.0,
        description="A discovered class's threshold is at most this quantile of the labelled "
        "classes' thresholds (None = its own calibration only).",
    )
    raw_threshold_quantile: float | None = Field(
        default=_STORE.raw_threshold_quantile,
        gt=0.0,
        lt=0.5,
        description="An item must also reach this quantile of the class's members' cosine in "
        "the raw embedding space (catches off-domain items; None = off).",
    )
    top_k: int = Field(
        default=_STORE.top_k, ge=1, le=100, description="Candidate classes reported per item."
    )
    use_gpu: bool = Field(default=True, description="Use a FAISS GPU index when available.")
    approximate_above: int | None = Field(
        default=_STORE.approximate_above,
        ge=1,
        description="Prototypes above which the FAISS index is approximate (IVF-flat); "
        "None = always exact. Measure its agreement with the exact index on your data "
        "first (streamlabel bench scale): on uniform synthetic classes it needs a large "
        "nprobe.",
    )
    nprobe: int = Field(
        default=_STORE.nprobe,
        ge=1,
        le=65_536,
        description="Inverted lists an approximate index scans.",
    )
    metric_pseudo_labels: bool = Field(
        default=_STORE.metric_pseudo_labels,
        description="Discovered classes' examples join the labelled ones in fitting the metric.",
    )
    max_classes: int | None = Field(
        default=_STORE.max_classes,
        ge=1,
        description="Most classes the store holds, retired ones included (None = no cap). "
        "Feedback that would create one more is dead-lettered (reason 'rejected') and "
        "discovery skips its new classes. The default, 10,000, is about 1.2 GB of RAM per "
        "replica and 1 GB per snapshot at 384 dimensions and 64 exemplars a class.",
    )

    def to_config(self, seed: int) -> StoreConfig:
        """The core's config."""
        return StoreConfig(
            max_sub_prototypes=self.max_sub_prototypes,
            exemplar_capacity=self.exemplar_capacity,
            exemplar_text_chars=self.exemplar_text_chars,
            threshold_quantile=self.threshold_quantile,
            threshold_offset=self.threshold_offset,
            default_threshold=self.default_threshold,
            min_calibration_examples=self.min_calibration_examples,
            metric_shrinkage=self.metric_shrinkage,
            metric_min_examples=self.metric_min_examples,
            metric_refit_exact_below=self.metric_refit_exact_below,
            metric_refit_share=self.metric_refit_share,
            metric_refit_every=self.metric_refit_every,
            calibration_folds=self.calibration_folds,
            discovered_threshold_cap=self.discovered_threshold_cap,
            raw_threshold_quantile=self.raw_threshold_quantile,
            top_k=self.top_k,
            approximate_above=self.approximate_above,
            nprobe=self.nprobe,
            metric_pseudo_labels=self.metric_pseudo_labels,
            seed=seed,
            max_classes=self.max_classes,
        )


class DiscoverySettings(Section):
    """Novel-class discovery (see :class:`DiscoveryConfig`)."""

    enabled: bool = Field(default=True, description="Buffer unknowns and discover classes.")
    buffer_capacity: int = Field(
        default=_DISCOVERY.buffer_capacity,
        ge=10,
        description="Unknowns kept for discovery (the oldest leave first).",
    )
    run_every: int = Field(default=250, ge=1, description="New unknowns between runs.")
    min_cluster_size: int = Field(
        default=_HDBSCAN.min_cluster_size,
        ge=2,
        description="Smallest group of unknowns HDBSCAN calls a cluster.",
    )
    min_samples: int | None = Field(
        default=_HDBSCAN.min_samples,
        ge=1,
        description="HDBSCAN's density neighbourhood (None = min_cluster_size).",
    )
    n_components: int = Field(
        default=_HDBSCAN.n_components,
        ge=0,
        description="PCA dimensions the unknowns are clustered in (0 = no reduction).",
    )
    selection: Literal["eom", "leaf"] = Field(
        default=_HDBSCAN.selection,
        description="HDBSCAN cluster selection: leaf proposes many small dense clusters "
        "(fine-grained streams), eom fewer large ones.",
    )
    min_cohesion_ratio: float = Field(
        default=_DISCOVERY.min_cohesion_ratio,
        ge=0.0,
        le=2.0,
        description="A cluster needs this share of the labelled classes' median cohesion.",
    )
    min_cohesion: float = Field(
        default=_DISCOVERY.min_cohesion,
        ge=-1.0,
        le=1.0,
        description="A cluster's cohesion floor (mean cosine to its centre, raw space).",
    )
    separation_quantile: float = Field(
        default=_DISCOVERY.separation_quantile,
        ge=0.0,
        le=1.0,
        description="A cluster centre must be less similar to every class than this quantile "
        "of the class's member similarities (else it is that class's tail).",
    )
    persistence: int = Field(
        default=_DISCOVERY.persistence,
        ge=1,
        description="Consecutive runs a cluster must be seen in before it becomes a class.",
    )
    match_overlap: float = Field(
        default=_DISCOVERY.match_overlap,
        gt=0.0,
        le=1.0,
        description="Member overlap at which two runs' clusters are the same candidate.",
    )
    n_keywords: int = Field(
        default=_DISCOVERY.n_keywords,
        ge=1,
        le=20,
        description="Keywords in a discovered class's name.",
    )
    settle_tails: bool = Field(
        default=_DISCOVERY.settle_tails,
        description="Members of a cluster an existing labelled class owns take that class.",
    )
    settle_after: int = Field(
        default=_DISCOVERY.settle_after,
        ge=1,
        description="Runs an unknown stays unclustered before it settles.",
    )
    settle_quantile: float | None = Field(
        default=_DISCOVERY.settle_quantile,
        ge=0.0,
        lt=0.5,
        description="A settling item needs this quantile of its nearest class's member "
        "similarities (None = never settle unclustered items).",
    )
    settle_stretch: float = Field(
        default=_DISCOVERY.settle_stretch,
        ge=0.0,
        description="How far below its nearest class's least similar member a settling "
        "item may fall, as a share of that class's spread (median minus least member "
        "similarity).",
    )
    merge_quantile: float | None = Field(
        default=_DISCOVERY.merge_quantile,
        ge=0.0,
        le=1.0,
        description="Clusters whose centres are closer than this quantile of the labelled "
        "classes' nearest-neighbour similarities are one class (None = never merge).",
    )

    @model_validator(mode="after")
    def _cluster_fits_buffer(self) -> DiscoverySettings:
        if self.min_cluster_size > self.buffer_capacity:
            raise ValueError("min_cluster_size cannot exceed buffer_capacity")
        return self

    def to_config(self, seed: int) -> DiscoveryConfig:
        """The core's config."""
        return DiscoveryConfig(
            buffer_capacity=self.buffer_capacity,
            min_cohesion_ratio=self.min_cohesion_ratio,
            min_cohesion=self.min_cohesion,
            separation_quantile=self.separation_quantile,
            persistence=self.persistence,
            match_overlap=self.match_overlap,
            n_keywords=self.n_keywords,
            settle_tails=self.settle_tails,
            settle_after=self.settle_after,
            settle_quantile=self.settle_quantile,
            settle_stretch=self.settle_stretch,
            merge_quantile=self.merge_quantile,
            clustering=HDBSCANClustering(
                min_cluster_size=self.min_cluster_size,
                min_samples=self.min_samples,
                n_components=self.n_components,
                selection=self.selection,
                seed=seed,
            ),
        )


class DriftSettings(Section):
    """Drift detection."""

    enabled: bool = Field(
        default=True, description="Run the drift detectors on the learner and raise alerts."
    )
    incident_window: int = Field(
        default=1500,
        ge=1,
        description="Signals of the drift detectors at most this many items apart form one "
        "incident (one shift): the first signal opens it, each later one publishes an update "
        "under the same incident id (the alert's Kafka key); it closes once more items than "
        "this pass without a signal. Items are those the detectors see (worker.drift_sample of the "
        "stream). The signals of the one shift in `make demo` came 110 to 730 items apart (the "
        "learner reads the workers' partitions each at its own offset, so the unknown rate "
        "it sees can rise, fall and rise again).",
    )


class LimitSettings(Section):
    """Input limits; larger inputs are dead-lettered."""

    max_message_bytes: int = Field(
        default=1_000_000, ge=1024, description="Larger records are dead-lettered."
    )
    max_text_chars: int = Field(default=20_000, ge=1, description="Longer texts are dead-lettered.")
    max_item_cache: int = Field(
        default=20_000,
        ge=0,
        description="Recent items kept for feedback by id: the learner's cache holds the "
        "latest this many items the stream labelled (every worker's, every row).",
    )
    feedback_wait_s: float = Field(
        default=60.0,
        ge=0,
        description="How long feedback naming an item by id waits for the item when the "
        "learner has not seen it yet (its labelling is still on its way from a worker): it is "
        "applied as soon as the item arrives, and dead-lettered ``unresolvable`` only after "
        "this window. Feedback by id resolves for every item among the latest "
        "limits.max_item_cache labelled before it, and for every item labelled up to this "
        "long after it reached the learner. 0 dead-letters it at once.",
    )
    max_pending_feedback: int = Field(
        default=10_000,
        ge=0,
        description="Feedback records waiting for their item (limits.feedback_wait_s) at most; "
        "beyond it a new one is dead-lettered ``unresolvable`` at once.",
    )


class EngineSettings(SettingsModel):
    """Everything the Engine needs; env vars ``STREAMLABEL_<SECTION>__<NAME>``."""

    seed: int = Field(default=0, description="Seed of every random choice (replays repeat).")
    model: ModelSettings = ModelSettings()
    store: StoreSettings = StoreSettings()
    discovery: DiscoverySettings = DiscoverySettings()
    drift: DriftSettings = DriftSettings()
    limits: LimitSettings = LimitSettings()


def load_settings(**overrides: Any) -> EngineSettings:
    """Builds settings from env vars plus ``overrides`` (overrides win).

    Raises:
        SettingsError: naming every invalid setting, e.g. ``store.threshold_quantile``.
    """
    return load(EngineSettings, None, overrides)
