"""Novel-class discovery: buffer the unknowns, cluster them, accept real new classes.

A run re-clusters the whole buffer in the store's metric space (no number of
classes given), so items buffered in several runs join one class. The number
of new classes is estimated in two explicit steps, as DeepAligned/USNID do
with an upper bound: the clustering over-proposes many small dense clusters
(leaf selection of HDBSCAN), then :func:`merge_fragments` joins clusters whose
centres are closer than labelled classes ever are (:func:`separation_bar`).
Every remaining cluster is judged:

* **size** — the clustering's minimum cluster size;
* **cohesion** — mean member similarity to the cluster centre in the raw
  embedding space, at least ``min_cohesion_ratio`` × the median cohesion of the
  labelled classes (or ``min_cohesion`` when there are none);
* **separation** — the cluster centre is less similar to every existing class
  than a typical member of that class is (the ``separation_quantile`` of its
  members' similarities); a cluster that fails this is that class's rejected
  tail. A cluster whose centre a discovered class accepts is that class found
  again and extends it (a known class is never taught by unlabelled items);
* **persistence** — the cluster was seen in ``persistence`` runs (matched by
  member overlap). The default, 1, accepts a cluster at first sight: a stream
  that ends, or a class that shows up in one burst, still gets its class. Each
  run's candidates (ids included) are part of :meth:`Discoverer.state`, so a
  caller that checkpoints them before adopting keeps the ids through a crash.

An accepted cluster gets a stable id derived from the item that anchored it
when first seen, a readable name from its members' keywords, and the list of
its buffered items, which the caller relabels.

Then the residue **settles** (``DiscoveryReport.settled``): the members of a
rejected tail take the class that owns it (``settle_tails``), and an item no
cluster took in ``settle_after`` runs takes its nearest class when it reaches
the ``settle_quantile`` of that class's member similarities. A settled item
stays buffered with its label, so a later run can still make it part of a
new class; only what is far from everything stays ``unknown``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamlabel.core.buffer import UnknownBuffer
from streamlabel.core.clustering import ClusteringStrategy, HDBSCANClustering
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.fragments import merge_fragments, separation_bar
from streamlabel.core.naming import class_keywords, name_from_keywords
from streamlabel.core.store import PrototypeStore
from streamlabel.schemas import ClassEvent

__all__ = [
    "ClusterFinding",
    "Discoverer",
    "DiscoveryConfig",
    "DiscoveryReport",
    "UnknownBuffer",
    "adopt",
    "merge_fragments",
    "separation_bar",
]


@dataclass(frozen=True)
class DiscoveryConfig:
    """Knobs of discovery (see the module docstring)."""

    buffer_capacity: int = 5000
    min_cohesion_ratio: float = 0.6
    min_cohesion: float = 0.2
    separation_quantile: float = 0.5
    persistence: int = 1
    match_overlap: float = 0.5
    n_keywords: int = 3
    clustering: ClusteringStrategy = field(default_factory=HDBSCANClustering)
    settle_tails: bool = True
    settle_after: int = 2
    settle_quantile: float | None = 0.0
    settle_stretch: float = 0.5
    merge_quantile: float | None = 0.9


@dataclass(frozen=True)
class ClusterFinding:
    """A cluster a run accepted: a new class, or more members of a discovered one.

    Attributes:
        class_id: the new class's stable id, or the discovered class it extends.
        name: readable name (keywords joined).
        keywords: the distinctive keywords of its members.
        item_ids: buffered items in the cluster (to relabel).
        vectors: their raw embeddings.
        texts: their texts.
        extends: True when the cluster is an existing discovered class found again.
        cohesion: mean member similarity to the centre.
    """

    class_id: str
    name: str
    keywords: tuple[str, ...]
    item_ids: tuple[str, ...]
    vectors: np.ndarray
    texts: tuple[str, ...]
    extends: bool
    cohesion: float


def adopt(store: PrototypeStore, finding: ClusterFinding) -> ClassEvent:
    """Writes a finding into the store: a new provisional class, or more examples of one."""
    if finding.extends or finding.class_id in store.states():
        return store.extend(finding.class_id, finding.vectors, finding.texts, cause="discovery")
    return store.add_class(
        finding.class_id,
        finding.name,
        finding.vectors,
        finding.texts,
        status="provisional",
        origin="discovery",
        keywords=finding.keywords,
    )


@dataclass
class _Candidate:
    candidate_id: str
    members: set[str]
    sightings: int


@dataclass(frozen=True)
class DiscoveryReport:
    """What a run found: accepted clusters and the reasons others were rejected."""

    run: int
    clusters: int
    findings: tuple[ClusterFinding, ...]
    rejected: dict[str, int]
    settled: dict[str, str] = field(default_factory=dict)
    proposed: int = 0


class Discoverer:
    """Runs discovery over an :class:`UnknownBuffer` against a :class:`PrototypeStore`."""

    def __init__(self, config: DiscoveryConfig | None = None) -> None:
        self.config = config or DiscoveryConfig()
        self._candidates: list[_Candidate] = []
        self._runs = 0
        self._seen: dict[str, int] = {}

    @property
    def runs(self) -> int:
        """Discovery runs so far."""
        return self._runs

    def state(self) -> dict[str, Any]:
        """Plain data for a snapshot: the run count and the candidates awaiting persistence."""
        return {
            "runs": self._runs,
            "candidates": [
                {"id": c.candidate_id, "members": sorted(c.members), "sightings": c.sightings}
                for c in self._candidates
            ],
            "seen": dict(self._seen),
        }

    def load(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state`."""
        runs = int(state["runs"])
        candidates = [
            _Candidate(str(c["id"]), set(c["members"]), int(c["sightings"]))
            for c in state["candidates"]
        ]
        seen = {str(k): int(v) for k, v in dict(state.get("seen", {})).items()}
        self._runs, self._candidates, self._seen = runs, candidates, seen  # all or nothing

    def run(self, buffer: UnknownBuffer, store: PrototypeStore) -> DiscoveryReport:
        """Clusters the buffer and returns the clusters that pass every criterion."""
        self._runs += 1
        cfg = self.config
        rejected = {"cohesion": 0, "known_class": 0, "persistence": 0, "retired": 0}
        if len(buffer) == 0:
            return DiscoveryReport(self._runs, 0, (), rejected)
        raw = np.asarray(buffer.vectors, np.float32)
        z = store.transform(raw)
        labels = cfg.clustering.fit_predict(z)
        proposed = int(labels.max()) + 1 if len(labels) else 0
        labels = merge_fragments(labels, z, separation_bar(store, cfg.merge_quantile))
        n_clusters = int(labels.max()) + 1 if len(labels) else 0
        min_cohesion = self._min_cohesion(store)
        ids = buffer.ids
        texts = buffer.texts
        current = dict(zip(ids, buffer.labels, strict=True))
        self._seen = {i: self._seen.get(i, 0) + 1 for i in ids}
        settled: dict[str, str] = {}
        members_of = [np.flatnonzero(labels == c) for c in range(n_clusters)]
        keywords = class_keywords(
            [[texts[i] for i in m] for m in members_of],
            background=[texts[i] for i in np.flatnonzero(labels < 0)],
            n=cfg.n_keywords,
        )
        findings: list[ClusterFinding] = []
        seen_now: list[_Candidate] = []
        for c, members in enumerate(members_of):
            centre = l2_normalize(z[members].mean(axis=0))
            cohesion = _cohesion(raw[members])
            if cohesion < min_cohesion:
                rejected["cohesion"] += 1
                continue
            extends: str | None = None
            nearest = self._owner(store, raw[members])
            if nearest is not None:
                if store.get(nearest).origin != "discovery":
                    rejected["known_class"] += 1
                    if cfg.settle_tails:  # the class's rejected tail: its members are the class's
                        settled.update({ids[i]: nearest for i in members if current[ids[i]] == ""})
                    continue
                extends = nearest
            member_ids = {ids[i] for i in members}
            candidate = self._match(member_ids, z[members], centre, [ids[i] for i in members])
            seen_now.append(candidate)
            if extends is None and candidate.sightings < cfg.persistence:
                rejected["persistence"] += 1
                continue
            kw = keywords[c]
            class_id = extends or candidate.candidate_id
            previous = store.states().get(class_id)
            if previous is not None and previous.status == "retired":
                rejected["retired"] += 1  # an operator retired it: do not bring it back
                continue
            findings.append(
                ClusterFinding(
                    class_id=class_id,
                    name=name_from_keywords(kw, class_id),
                    keywords=kw,
                    item_ids=tuple(ids[i] for i in members),
                    vectors=raw[members].copy(),
                    texts=tuple(texts[i] for i in members),
                    extends=extends is not None,
                    cohesion=cohesion,
                )
            )
        # Candidates not seen in this run are forgotten: persistence means consecutive runs.
        self._candidates = seen_now
        taken = {i for f in findings for i in f.item_ids} | set(settled)
        taken |= {i for i, label in current.items() if label}  # settled before
        settled.update(self._settle(store, raw, ids, taken))
        return DiscoveryReport(
            self._runs, n_clusters, tuple(findings), rejected, settled, proposed=proposed
        )

    def _settle(
        self, store: PrototypeStore, raw: np.ndarray, ids: list[str], taken: set[str]
    ) -> dict[str, str]:
        """Items no cluster took in ``settle_after`` runs: the nearest class, when close enough.

        An item that stays unclustered run after run is not the seed of a new
        class; it is the unusual member of a class that exists. It takes its
        nearest class when its similarity reaches the ``settle_quantile`` of that
        class's members' similarities (a looser bar than the open-set threshold);
        anything farther stays ``unknown``.
        """
        q = self.config.settle_quantile
        rows = [
            r
            for r, i in enumerate(ids)
            if i not in taken and self._seen[i] >= self.config.settle_after
        ]
        if q is None or not rows or not store.active_ids():
            return {}
        verdict = store.classify(raw[rows])
        bars: dict[int, float] = {}
        out: dict[str, str] = {}
        for k, r in enumerate(rows):
            best = int(verdict.best[k])
            if best < 0:
                continue
            if best not in bars:
                cid = verdict.class_ids[best]
                member = store.member_score_quantile(cid, q)
                bar = float(verdict.thresholds[k])
                if member is not None and self.config.settle_stretch > 0:
                    median = store.member_score_quantile(cid, 0.5)
                    assert median is not None
                    member -= self.config.settle_stretch * max(0.0, median - member)
                bars[best] = bar if member is None else min(bar, member)
            if float(verdict.scores[k]) >= bars[best]:
                out[ids[r]] = verdict.class_ids[best]
        return out

    def _match(
        self, member_ids: set[str], zm: np.ndarray, centre: np.ndarray, ordered_ids: list[str]
    ) -> _Candidate:
        best: _Candidate | None = None
        best_overlap = 0.0
        for cand in self._candidates:
            inter = len(cand.members & member_ids)
            overlap = inter / max(1, min(len(cand.members), len(member_ids)))
            if overlap > best_overlap:
                best, best_overlap = cand, overlap
        if best is not None and best_overlap >= self.config.match_overlap:
            return _Candidate(best.candidate_id, member_ids, best.sightings + 1)
        anchor = ordered_ids[_anchor(zm, centre)]
        digest = hashlib.blake2b(anchor.encode(), digest_size=5).hexdigest()
        return _Candidate(f"novel-{digest}", member_ids, 1)

    def _owner(self, store: PrototypeStore, members_raw: np.ndarray) -> str | None:
        """The existing class the cluster is part of, if any.

        The centre of a class's rejected tail sits near the class centre, so it is
        as similar to the class as a typical member (the ``separation_quantile``
        of member similarities). A new class next to it has its own centre,
        clearly less similar than that. A discovered class owns a cluster whose
        centre it accepts.
        """
        verdict = store.classify(l2_normalize(members_raw.mean(axis=0))[None, :])
        best = int(verdict.best[0])
        if best < 0:
            return None
        nearest = verdict.class_ids[best]
        if store.get(nearest).origin == "discovery":
            # A discovered class's members are its dense core, so the typical-member
            # bar would split it; the class accepting the centre means "found again".
            return nearest if verdict.accepted[0] else None
        typical = store.member_score_quantile(nearest, self.config.separation_quantile)
        bar = float(verdict.thresholds[0]) if typical is None else typical
        return nearest if float(verdict.scores[0]) >= bar else None

    def _min_cohesion(self, store: PrototypeStore) -> float:
        cfg = self.config
        cohesions = []
        for cid in store.active_ids():
            state = store.get(cid)
            if state.origin != "feedback" or len(state.exemplars) < 2:
                continue
            cohesions.append(_cohesion(np.asarray(state.exemplars, np.float32)))
        if not cohesions:
            return cfg.min_cohesion
        return cfg.min_cohesion_ratio * float(np.median(cohesions))


def _cohesion(raw: np.ndarray) -> float:
    """Mean similarity of raw embeddings to their mean direction.

    Measured in the raw embedding space, not the metric space: the metric is
    centred on the labelled classes, and items far from all of them share that
    offset, which would make scattered noise look cohesive there.
    """
    return float((raw @ l2_normalize(raw.mean(axis=0))).mean())


def _anchor(zm: np.ndarray, centre: np.ndarray) -> int:
    """The member that names a new cluster: the oldest of its more central half.

    ``zm`` is in buffer order (oldest first). A learner restored from a snapshot
    reads the same unknowns again; a run on a buffer still missing the newest
    of them sees the same oldest members, so the class gets the id it had
    before the crash. (The single most central member moves with every item
    added.) Restricted to the central half, so a border item that another run
    leaves out does not name the class.

    Example:
        >>> zm = np.array([[1.0, 0.0], [0.6, 0.8], [0.9, 0.1], [1.0, 0.05]])
        >>> _anchor(zm, np.array([1.0, 0.0]))
        0
    """
    sims = zm @ centre
    return int(np.flatnonzero(sims >= np.median(sims))[0])
