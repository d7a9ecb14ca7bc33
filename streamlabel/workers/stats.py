"""The counters the actors report (``stats()``, the metrics endpoint) and the
learner's class list.

Both are written by the actor's loop thread only and read by others (Ray
calls, scrapes): the loop replaces a mapping rather than mutating one a
reader may be copying.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from streamlabel.core.naming import typical_texts
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import ClassState, to_array

__all__ = ["ClassView", "LearnerStats", "WorkerStats", "count_classes"]


@dataclass
class WorkerStats:
    """Counters of one stream worker (what the supervisor shows and tests check)."""

    worker_id: str
    items: int = 0
    labels: int = 0
    unknowns: int = 0
    dead_letters: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    commits: int = 0
    commit_failures: int = 0
    recommits: int = 0
    rebalances: int = 0
    last_rebalance_s: float = 0.0
    publish_retries: int = 0
    fenced_batches: int = 0
    rebalanced_batches: int = 0
    partition_resets: int = 0
    broker_resets: int = 0
    observations_dropped: int = 0
    class_events_applied: int = 0
    store_version: int = 0
    classes: int = 0
    classes_by_status: dict[str, int] = field(default_factory=dict)
    assigned: list[str] = field(default_factory=list)
    lag: dict[str, int] = field(default_factory=dict)
    last_batch_ms: float = 0.0
    batch_size: int = 0
    busy_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0
    rss_bytes: int = 0
    running: bool = False
    drained: bool = False
    metrics_url: str = ""
    node_id: str = ""

    def count_batch(
        self, out: EngineOutput, records: int, stage_s: dict[str, float], busy_s: float
    ) -> None:
        """Counts a committed batch of ``records`` input records and what it produced."""
        for stage, seconds in stage_s.items():
            if stage != "poll":
                self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds
        self.items += records
        self.labels += len(out.labels)
        self.unknowns += len(out.unknowns)
        self.dead_letters += len(out.dead_letters)
        for d in out.dead_letters:
            self.dead_letter_reasons[d.reason] = self.dead_letter_reasons.get(d.reason, 0) + 1
        self.batches += 1
        self.last_batch_ms = busy_s * 1e3
        self.busy_s += busy_s

    def as_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


@dataclass
class LearnerStats:
    """Counters of the learner (updated after each step's records are published)."""

    feedback: int = 0
    unknowns: int = 0
    observed: int = 0
    observations_dropped: int = 0
    class_events: int = 0
    revisions: int = 0
    alerts: int = 0
    """Alert records: each drift signal (an incident's opening or update), each broker reset."""
    incidents: int = 0
    """Alerts that opened an incident (one drift shift, one broker reset)."""
    alerts_by_kind: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    commands: int = 0
    """Commands answered (applied, rejected, or a repeated id answered again)."""
    discovery_runs: int = 0
    discovered: int = 0
    snapshots: int = 0
    snapshot_failures: int = 0
    """Snapshots that could not be written (a full disk): published, not committed."""
    snapshots_skipped: int = 0
    """Unusable snapshots skipped at start-up (fell back to an older one or the changelog)."""
    restored_from: str = ""
    republished: int = 0
    reconciled: int = 0
    broker_resets: int = 0
    store_version: int = 0
    classes: int = 0
    classes_by_status: dict[str, int] = field(default_factory=dict)
    buffered: int = 0
    lag: int = 0
    stage_s: dict[str, float] = field(default_factory=dict)
    """Seconds spent: ``drift`` (detectors on observed items), ``discovery`` (background
    runs, wall time), ``adopt`` (applying a run's result)."""
    last_discovery: dict[str, float] = field(default_factory=dict)
    """The last run: ``buffered`` unknowns it clustered, ``seconds`` it took."""
    rss_bytes: int = 0
    running: bool = False
    drained: bool = False
    metrics_url: str = ""
    node_id: str = ""

    def add_stage(self, stage: str, seconds: float) -> None:
        """Adds ``seconds`` to a stage's time."""
        stages = dict(self.stage_s)  # replaced, not mutated: a scrape may be copying it
        stages[stage] = stages.get(stage, 0.0) + seconds
        self.stage_s = stages

    def as_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


class ClassView:
    """The learner's classes as plain rows (id, name, status, origin, count,
    updated version, keywords, three typical example texts)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._examples: dict[str, tuple[int, list[str]]] = {}  # class id -> (version, texts)

    def refresh(self, states: Iterable[ClassState]) -> None:
        """Rebuilds the rows from the store's class states."""
        self.rows = [
            {
                "class_id": st.class_id,
                "name": st.name,
                "status": st.status,
                "origin": st.origin,
                "count": st.count,
                "updated_version": st.updated_version,
                "keywords": list(st.keywords),
                "examples": self._typical(st),
            }
            for st in states
        ]

    def _typical(self, state: ClassState) -> list[str]:
        """A class's three most typical example texts, recomputed when the class changes."""
        cached = self._examples.get(state.class_id)
        if cached is None or cached[0] != state.updated_version:
            exemplars = to_array(state.exemplars, len(state.mean or ()))
            texts = typical_texts(exemplars, state.exemplar_texts)
            cached = self._examples[state.class_id] = (state.updated_version, texts)
        return cached[1]


def count_classes(stats: WorkerStats | LearnerStats, version: int, states: Iterable[Any]) -> None:
    """Sets a store's version, its predictable classes and its classes per status
    (``known``, ``provisional``, ``retired``...) on an actor's stats."""
    counts: dict[str, int] = {}
    for st in states:
        counts[st.status] = counts.get(st.status, 0) + 1
    stats.store_version = version
    stats.classes = sum(n for status, n in counts.items() if status != "retired")
    stats.classes_by_status = counts
