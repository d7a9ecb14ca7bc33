"""Novel-class discovery: buffer the unknowns, cluster them, accept real new classes.

A run clusters the buffered unknowns in the store's metric space (no number of
classes given) and judges every cluster:

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
  member overlap), so one lucky clump does not become a class.

An accepted cluster gets a stable id derived from the item that anchored it
when first seen, a readable name from its members' keywords, and the list of
its buffered items, which the caller relabels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamlabel.core.clustering import ClusteringStrategy, HDBSCANClustering
from streamlabel.core.embedder import l2_normalize
from streamlabel.core.naming import class_keywords, name_from_keywords
from streamlabel.core.store import PrototypeStore
from streamlabel.schemas import ClassEvent


@dataclass(frozen=True)
class DiscoveryConfig:
    """Knobs of discovery (see the module docstring)."""

    buffer_capacity: int = 5000
    min_cohesion_ratio: float = 0.6
    min_cohesion: float = 0.2
    separation_quantile: float = 0.5
    persistence: int = 2
    match_overlap: float = 0.5
    n_keywords: int = 3
    clustering: ClusteringStrategy = field(default_factory=HDBSCANClustering)


class UnknownBuffer:
    """A bounded FIFO of unknown items (oldest evicted first), keyed by item id.

    Example:
        >>> buf = UnknownBuffer(capacity=2, dim=2)
        >>> buf.add(["a", "b", "c"], np.eye(3, 2, dtype=np.float32), ["x", "y", "z"])
        >>> buf.ids
        ['b', 'c']
    """

    def __init__(self, capacity: int, dim: int) -> None:
        self.capacity = capacity
        self.dim = dim
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._revisions: list[int] = []
        self._vectors = np.zeros((0, dim), np.float32)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        """Buffered item ids, oldest first."""
        return list(self._ids)

    @property
    def vectors(self) -> np.ndarray:
        """Raw embeddings ``(n, dim)``, aligned with :attr:`ids` (read-only view)."""
        v = self._vectors.view()
        v.flags.writeable = False
        return v

    @property
    def texts(self) -> list[str]:
        """Texts aligned with :attr:`ids` ("" when an item had none)."""
        return list(self._texts)

    def get(self, item_id: str) -> tuple[np.ndarray, str, int] | None:
        """The vector, text and revision of a buffered item (None when absent)."""
        try:
            i = self._ids.index(item_id)
        except ValueError:
            return None
        return self._vectors[i].copy(), self._texts[i], self._revisions[i]

    def revision(self, i: int) -> int:
        """Label revision of the item at position ``i``."""
        return self._revisions[i]

    def add(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        texts: Sequence[str | None],
        revisions: Sequence[int] | None = None,
    ) -> None:
        """Appends items (a buffered id is replaced), evicting the oldest beyond capacity."""
        if not len(ids):
            return
        revs = list(revisions) if revisions is not None else [0] * len(ids)
        last = {item_id: i for i, item_id in enumerate(ids)}  # a repeated id: keep the last
        rows = sorted(last.values())
        if set(last) & set(self._ids):
            self.remove(set(last))
        self._ids.extend(ids[i] for i in rows)
        self._texts.extend(texts[i] or "" for i in rows)
        self._revisions.extend(revs[i] for i in rows)
        self._vectors = np.concatenate([self._vectors, np.asarray(vectors, np.float32)[rows]])
        extra = len(self._ids) - self.capacity
        if extra > 0:
            del self._ids[:extra], self._texts[:extra], self._revisions[:extra]
            self._vectors = self._vectors[extra:]

    def copy(self) -> UnknownBuffer:
        """An independent copy (a background discovery run works on one)."""
        twin = UnknownBuffer(self.capacity, self.dim)
        twin._ids, twin._texts = list(self._ids), list(self._texts)
        twin._revisions = list(self._revisions)
        twin._vectors = self._vectors.copy()
        return twin

    def state(self) -> dict[str, Any]:
        """Plain data for a snapshot (vectors as float32 bytes)."""
        return {
            "ids": list(self._ids),
            "texts": list(self._texts),
            "revisions": list(self._revisions),
            "vectors": np.ascontiguousarray(self._vectors, np.float32).tobytes(),
        }

    def load(self, state: dict[str, Any]) -> None:
        """Replaces the content with a :meth:`state` (capacity and dim unchanged)."""
        vectors = np.frombuffer(state["vectors"], np.float32).reshape(-1, self.dim).copy()
        ids = list(state["ids"])
        if not len(ids) == len(state["texts"]) == len(state["revisions"]) == len(vectors):
            raise ValueError("buffer state has misaligned fields")
        self._ids, self._texts = ids, list(state["texts"])
        self._revisions = [int(r) for r in state["revisions"]]
        self._vectors = vectors
        extra = len(self._ids) - self.capacity
        if extra > 0:
            del self._ids[:extra], self._texts[:extra], self._revisions[:extra]
            self._vectors = self._vectors[extra:]

    def remove(self, ids: set[str] | Sequence[str]) -> None:
        """Drops the given ids (absent ones are ignored)."""
        gone = set(ids)
        keep = [i for i, x in enumerate(self._ids) if x not in gone]
        self._ids = [self._ids[i] for i in keep]
        self._texts = [self._texts[i] for i in keep]
        self._revisions = [self._revisions[i] for i in keep]
        self._vectors = self._vectors[keep]


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


class Discoverer:
    """Runs discovery over an :class:`UnknownBuffer` against a :class:`PrototypeStore`."""

    def __init__(self, config: DiscoveryConfig | None = None) -> None:
        self.config = config or DiscoveryConfig()
        self._candidates: list[_Candidate] = []
        self._runs = 0

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
        }

    def load(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state`."""
        runs = int(state["runs"])
        candidates = [
            _Candidate(str(c["id"]), set(c["members"]), int(c["sightings"]))
            for c in state["candidates"]
        ]
        self._runs, self._candidates = runs, candidates  # all or nothing

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
        n_clusters = int(labels.max()) + 1 if len(labels) else 0
        min_cohesion = self._min_cohesion(store)
        ids = buffer.ids
        texts = buffer.texts
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
        return DiscoveryReport(self._runs, n_clusters, tuple(findings), rejected)

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
        anchor = ordered_ids[int(np.argmax(zm @ centre))]
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
