"""Settings: pydantic-settings models, validated once at start-up.

Environment variables use the prefix ``STREAMLABEL_`` and ``__`` for nesting,
e.g. ``STREAMLABEL_STORE__THRESHOLD_QUANTILE=0.1``. :func:`load_settings` turns
any validation failure into a :class:`~streamlabel.errors.SettingsError` whose
message names the setting.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamlabel.core.clustering import HDBSCANClustering
from streamlabel.core.discovery import DiscoveryConfig
from streamlabel.core.store import StoreConfig
from streamlabel.errors import SettingsError

# Every default lives once, in the core; the settings only validate and name them.
_DISCOVERY = DiscoveryConfig()
_HDBSCAN = HDBSCANClustering()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSettings(_Section):
    """The embedding model."""

    path: str | None = Field(default=None, description="Local model dir; None = bundled MiniLM.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(default=64, ge=1, le=4096)
    max_seq_length: int = Field(default=128, ge=8, le=8192)


class StoreSettings(_Section):
    """The prototype store and open-set calibration (see :class:`StoreConfig`)."""

    max_sub_prototypes: int = Field(default=0, ge=0, le=64)
    exemplar_capacity: int = Field(default=64, ge=2, le=4096)
    threshold_quantile: float = Field(default=0.1, gt=0.0, lt=0.5)
    threshold_offset: float = Field(default=0.0, ge=-1.0, le=1.0)
    default_threshold: float = Field(default=0.3, ge=-1.0, le=1.0)
    min_calibration_examples: int = Field(default=8, ge=1)
    metric_shrinkage: float = Field(default=0.3, ge=0.0, le=1.0)
    metric_min_examples: int = Field(default=20, ge=2)
    calibration_folds: int = Field(default=2, ge=1, le=10)
    discovered_threshold_cap: float | None = Field(default=0.5, ge=0.0, le=1.0)
    raw_threshold_quantile: float | None = Field(default=0.02, gt=0.0, lt=0.5)
    top_k: int = Field(default=5, ge=1, le=100)
    use_gpu: bool = Field(default=True, description="Use a FAISS GPU index when available.")
    approximate_above: int | None = Field(
        default=None,
        ge=1,
        description="Prototypes above which the FAISS index is approximate (IVF-flat); "
        "None = always exact. Measure its agreement with the exact index on your data "
        "first (streamlabel bench scale): on uniform synthetic classes it needs a large "
        "nprobe.",
    )
    nprobe: int = Field(
        default=16, ge=1, le=65_536, description="Inverted lists an approximate index scans."
    )
    metric_pseudo_labels: bool = Field(
        default=False,
        description="Discovered classes' examples join the labelled ones in fitting the metric.",
    )

    def to_config(self, seed: int) -> StoreConfig:
        """The core's config."""
        return StoreConfig(
            max_sub_prototypes=self.max_sub_prototypes,
            exemplar_capacity=self.exemplar_capacity,
            threshold_quantile=self.threshold_quantile,
            threshold_offset=self.threshold_offset,
            default_threshold=self.default_threshold,
            min_calibration_examples=self.min_calibration_examples,
            metric_shrinkage=self.metric_shrinkage,
            metric_min_examples=self.metric_min_examples,
            calibration_folds=self.calibration_folds,
            discovered_threshold_cap=self.discovered_threshold_cap,
            raw_threshold_quantile=self.raw_threshold_quantile,
            top_k=self.top_k,
            approximate_above=self.approximate_above,
            nprobe=self.nprobe,
            metric_pseudo_labels=self.metric_pseudo_labels,
            seed=seed,
        )


class DiscoverySettings(_Section):
    """Novel-class discovery (see :class:`DiscoveryConfig`)."""

    enabled: bool = True
    buffer_capacity: int = Field(default=_DISCOVERY.buffer_capacity, ge=10)
    run_every: int = Field(default=250, ge=1, description="New unknowns between runs.")
    min_cluster_size: int = Field(default=_HDBSCAN.min_cluster_size, ge=2)
    min_samples: int | None = Field(default=_HDBSCAN.min_samples, ge=1)
    n_components: int = Field(default=_HDBSCAN.n_components, ge=0)
    selection: Literal["eom", "leaf"] = _HDBSCAN.selection
    min_cohesion_ratio: float = Field(default=_DISCOVERY.min_cohesion_ratio, ge=0.0, le=2.0)
    min_cohesion: float = Field(default=_DISCOVERY.min_cohesion, ge=-1.0, le=1.0)
    separation_quantile: float = Field(default=_DISCOVERY.separation_quantile, ge=0.0, le=1.0)
    persistence: int = Field(default=_DISCOVERY.persistence, ge=1)
    match_overlap: float = Field(default=_DISCOVERY.match_overlap, gt=0.0, le=1.0)
    n_keywords: int = Field(default=_DISCOVERY.n_keywords, ge=1, le=20)
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
            merge_quantile=self.merge_quantile,
            clustering=HDBSCANClustering(
                min_cluster_size=self.min_cluster_size,
                min_samples=self.min_samples,
                n_components=self.n_components,
                selection=self.selection,
                seed=seed,
            ),
        )


class DriftSettings(_Section):
    """Drift detection."""

    enabled: bool = True


class LimitSettings(_Section):
    """Input limits; larger inputs are dead-lettered."""

    max_message_bytes: int = Field(default=1_000_000, ge=1024)
    max_text_chars: int = Field(default=20_000, ge=1)
    max_item_cache: int = Field(
        default=20_000, ge=0, description="Recent items kept for feedback by id."
    )


class EngineSettings(BaseSettings):
    """Everything the Engine needs; env vars ``STREAMLABEL_<SECTION>__<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMLABEL_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    seed: int = 0
    model: ModelSettings = ModelSettings()
    store: StoreSettings = StoreSettings()
    discovery: DiscoverySettings = DiscoverySettings()
    drift: DriftSettings = DriftSettings()
    limits: LimitSettings = LimitSettings()


def load_settings(**overrides: Any) -> EngineSettings:
    """Builds settings from env vars plus ``overrides``.

    Raises:
        SettingsError: naming every invalid setting, e.g. ``store.threshold_quantile``.
    """
    try:
        return EngineSettings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


_SECRET_WORDS = ("password", "secret", "token")


def _redact(value: Any, name: str = "") -> Any:
    """The value with secrets masked (a field whose name says it holds one)."""
    if any(w in name.lower() for w in _SECRET_WORDS) and value is not None:
        return "**********"
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    return value


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every invalid setting (``kafka.partitions: ...``), secrets masked."""
    problems = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        shown = _redact(e.get("input"), str(e["loc"][-1]) if e["loc"] else "")
        problems.append(f"{loc or '<settings>'}: {e['msg']} (got {shown!r})")
    return "invalid settings: " + "; ".join(problems)
