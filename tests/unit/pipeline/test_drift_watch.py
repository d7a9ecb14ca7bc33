"""Drift alert ids (``DriftWatch``, ``drift_alert``).

* one watcher fed the same stream twice gives the same alerts, same ids;
* without an incarnation (an Engine, a replay) the ids are those of earlier
  releases: ``<kind>-blake2b(seed:kind:at_item)``;
* two incarnations (a learner before and after a restart, which counts
  ``at_item`` from 0 again) raise the same alerts under different ids, so a
  consumer that deduplicates by id keeps both.
"""

from __future__ import annotations

import hashlib

import numpy as np

from streamlabel.pipeline import load_settings
from streamlabel.pipeline.curator import Curator
from streamlabel.pipeline.drift import DriftWatch
from streamlabel.pipeline.output import Observed
from streamlabel.schemas import UNKNOWN, DriftAlert
from streamlabel.testing import HashEmbedder, ManualClock

SEED = 7
DIM = 16


def stream(batches: int = 24, size: int = 50) -> list[Observed]:
    """A stream labelled ``a`` with high scores, then all unknown from the middle on."""
    rng = np.random.default_rng(0)
    out = []
    for b in range(batches):
        unknown = b >= batches // 2
        vectors = rng.normal(size=(size, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        out.append(
            Observed(
                item_ids=[f"i{b}-{i}" for i in range(size)],
                vectors=vectors,
                texts=[None] * size,
                labels=[UNKNOWN if unknown else "a"] * size,
                revisions=[0] * size,
                scores=np.full(size, 0.1 if unknown else 0.9, np.float32),
                is_unknown=np.full(size, unknown),
            )
        )
    return out


def watch_all(incarnation: str = "") -> list[DriftAlert]:
    watch = DriftWatch(enabled=True, seed=SEED, clock=ManualClock(0.0), incarnation=incarnation)
    return [a for observed in stream() for a in watch.watch(observed, store_version=1)]


def test_the_stream_raises_alerts() -> None:
    """The fixture stream fires (else the other tests prove nothing)."""
    assert watch_all()


def test_one_incarnation_gives_the_same_ids_for_the_same_stream() -> None:
    first, second = watch_all("run-1"), watch_all("run-1")
    assert [a.alert_id for a in first] == [a.alert_id for a in second]


def test_without_an_incarnation_the_ids_are_those_of_earlier_releases() -> None:
    for a in watch_all():
        digest = hashlib.blake2b(f"{SEED}:{a.kind}:{a.at_item}".encode(), digest_size=6)
        assert a.alert_id == f"{a.kind}-{digest.hexdigest()}"


def test_two_incarnations_give_the_same_alerts_under_different_ids() -> None:
    before, after = watch_all("run-1"), watch_all("run-2")
    assert [(a.kind, a.at_item) for a in before] == [(a.kind, a.at_item) for a in after]
    assert not {a.alert_id for a in before} & {a.alert_id for a in after}
    assert not {a.alert_id for a in watch_all()} & {a.alert_id for a in before}


def test_the_curator_passes_its_incarnation_to_its_drift_watch() -> None:
    settings = load_settings()
    clock = ManualClock(0.0)
    assert Curator(settings, HashEmbedder(), clock=clock).drift.incarnation == ""
    curator = Curator(settings, HashEmbedder(), clock=clock, incarnation="1a2b")
    assert curator.drift.incarnation == "1a2b"
