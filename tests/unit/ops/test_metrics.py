"""Prometheus metrics of the actors and the driver (``ops.metrics``), read back
through the text parser Prometheus' own client ships.

* worker, learner and driver families expose their stats' counters and gauges,
  the labelled ones (dead letters by reason, lag by topic and partition, classes
  by status, alerts by kind, restarts by slot) one series per key;
* ``observe_batch`` fills per-stage and per-batch histograms; a stage outside
  ``STAGES`` gets its own series;
* every ``streamlabel_*`` sample carries ``actor``.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamlabel.ops import metrics as metrics_module
from streamlabel.ops.metrics import (
    STAGES,
    ActorMetrics,
    driver_families,
    learner_families,
    worker_families,
)
from streamlabel.workers.stats import LearnerStats, WorkerStats

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(m: ActorMetrics) -> Samples:
    """Every sample of the exposition: ``{(name, sorted labels): value}``."""
    out: Samples = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


# ------------------------------------------------------------------- worker
@pytest.fixture
def worker_stats() -> dict[str, Any]:
    s = WorkerStats(
        worker_id="worker-3",
        items=120,
        labels=100,
        unknowns=15,
        dead_letters=5,
        dead_letter_reasons={"decode": 3, "embed_failed": 2},
        batches=8,
        commits=7,
        commit_failures=1,
        rebalances=2,
        fenced_batches=1,
        publish_retries=4,
        observations_dropped=6,
        class_events_applied=9,
        partition_resets=3,
        store_version=11,
        classes=4,
        classes_by_status={"known": 3, "discovered": 1, "retired": 2},
        assigned=["sl.items:0", "sl.items:2"],
        lag={"sl.items:0": 17, "sl.items:2": 0},
        running=True,
    )
    return s.as_dict()


def test_worker_counters_come_from_the_stats(worker_stats: dict[str, Any]) -> None:
    got = scrape(ActorMetrics("worker-3", lambda: worker_stats, worker_families))
    a = "worker-3"
    expected = {
        "streamlabel_items_consumed_total": 120,
        "streamlabel_items_labelled_total": 100,
        "streamlabel_items_unknown_total": 15,
        "streamlabel_batches_total": 8,
        "streamlabel_commits_total": 7,
        "streamlabel_commit_failures_total": 1,
        "streamlabel_rebalances_total": 2,
        "streamlabel_fenced_batches_total": 1,
        "streamlabel_publish_retries_total": 4,
        "streamlabel_observations_dropped_total": 6,
        "streamlabel_class_events_applied_total": 9,
        "streamlabel_partition_resets_total": 3,
    }
    assert {name: value(got, name, actor=a) for name in expected} == expected
    assert value(got, "streamlabel_assigned_partitions", actor=a) == 2
    assert value(got, "streamlabel_store_version", actor=a) == 11
    assert value(got, "streamlabel_up", actor=a) == 1


def test_worker_dead_letters_one_series_per_reason(worker_stats: dict[str, Any]) -> None:
    got = scrape(ActorMetrics("worker-3", lambda: worker_stats, worker_families))
    assert series(got, "streamlabel_dead_letters_total") == {
        (("actor", "worker-3"), ("reason", "decode")): 3,
        (("actor", "worker-3"), ("reason", "embed_failed")): 2,
    }


def test_worker_lag_is_split_into_topic_and_partition(worker_stats: dict[str, Any]) -> None:
    got = scrape(ActorMetrics("worker-3", lambda: worker_stats, worker_families))
    assert series(got, "streamlabel_consumer_lag") == {
        (("actor", "worker-3"), ("partition", "0"), ("topic", "sl.items")): 17,
        (("actor", "worker-3"), ("partition", "2"), ("topic", "sl.items")): 0,
    }


def test_the_partition_is_what_follows_the_last_colon() -> None:
    """Kafka topic names cannot hold ':' but a prefix is free text in settings: the
    partition is always the last field, the topic everything before it."""
    stats = {"lag": {"odd:prefix.items:7": 3}}
    got = scrape(ActorMetrics("w", lambda: stats, worker_families))
    assert series(got, "streamlabel_consumer_lag") == {
        (("actor", "w"), ("partition", "7"), ("topic", "odd:prefix.items")): 3
    }


def test_worker_classes_by_status(worker_stats: dict[str, Any]) -> None:
    got = scrape(ActorMetrics("worker-3", lambda: worker_stats, worker_families))
    assert series(got, "streamlabel_classes") == {
        (("actor", "worker-3"), ("status", "discovered")): 1,
        (("actor", "worker-3"), ("status", "known")): 3,
        (("actor", "worker-3"), ("status", "retired")): 2,
    }


def test_empty_stats_give_zeros_and_no_labelled_series() -> None:
    got = scrape(ActorMetrics("worker-0", dict, worker_families))
    assert value(got, "streamlabel_items_consumed_total", actor="worker-0") == 0
    assert value(got, "streamlabel_up", actor="worker-0") == 0
    assert series(got, "streamlabel_dead_letters_total") == {}
    assert series(got, "streamlabel_consumer_lag") == {}


def test_every_exported_stats_key_exists_in_the_stats_dataclasses() -> None:
    """A misspelt key would export a counter stuck at 0."""
    worker = {f.name for f in fields(WorkerStats)}
    learner = {f.name for f in fields(LearnerStats)}
    assert [k for _, k, _ in metrics_module._WORKER_COUNTERS if k not in worker] == []
    assert [k for _, k, _ in metrics_module._LEARNER_COUNTERS if k not in learner] == []
    for key in ("dead_letter_reasons", "lag", "assigned", "classes_by_status", "running"):
        assert key in worker
    for key in ("alerts_by_kind", "buffered", "lag", "classes_by_status", "running"):
        assert key in learner


def test_the_stats_are_read_at_each_scrape() -> None:
    stats: dict[str, Any] = {"items": 1}
    m = ActorMetrics("worker-0", lambda: stats, worker_families)
    assert value(scrape(m), "streamlabel_items_consumed_total", actor="worker-0") == 1
    stats["items"] = 9
    assert value(scrape(m), "streamlabel_items_consumed_total", actor="worker-0") == 9


# ------------------------------------------------------------------ learner
def test_learner_families() -> None:
    s = LearnerStats(
        feedback=30,
        unknowns=12,
        observed=400,
        class_events=6,
        revisions=5,
        discovery_runs=2,
        discovered=3,
        snapshots=4,
        dead_letters=1,
        broker_resets=1,
        alerts=3,
        alerts_by_kind={"mean_shift": 2, "broker_reset": 1},
        buffered=12,
        lag=250,
        store_version=19,
        classes_by_status={"known": 5, "discovered": 3},
        running=True,
    ).as_dict()
    got = scrape(ActorMetrics("learner", lambda: s, learner_families))
    expected = {
        "streamlabel_feedback_total": 30,
        "streamlabel_unknowns_absorbed_total": 12,
        "streamlabel_observed_total": 400,
        "streamlabel_class_events_total": 6,
        "streamlabel_revisions_total": 5,
        "streamlabel_discovery_runs_total": 2,
        "streamlabel_discovered_classes_total": 3,
        "streamlabel_snapshots_total": 4,
        "streamlabel_learner_dead_letters_total": 1,
        "streamlabel_broker_resets_total": 1,
        "streamlabel_unknowns_buffered": 12,
        "streamlabel_learner_lag": 250,
        "streamlabel_store_version": 19,
        "streamlabel_up": 1,
    }
    assert {name: value(got, name, actor="learner") for name in expected} == expected
    assert series(got, "streamlabel_alerts_total") == {
        (("actor", "learner"), ("kind", "broker_reset")): 1,
        (("actor", "learner"), ("kind", "mean_shift")): 2,
    }
    assert series(got, "streamlabel_classes") == {
        (("actor", "learner"), ("status", "discovered")): 3,
        (("actor", "learner"), ("status", "known")): 5,
    }


# ------------------------------------------------------------------- driver
def test_driver_families() -> None:
    state = {
        "workers": 3,
        "workers_desired": 4,
        "lag": 12345,
        "restarts": {"learner": 1, "worker-0": 0, "worker-2": 3},
        "scale_events": 2,
        "broker_resets": 1,
    }
    got = scrape(ActorMetrics("driver", lambda: state, driver_families))
    expected = {
        "streamlabel_workers": 3,
        "streamlabel_workers_desired": 4,
        "streamlabel_group_lag": 12345,
        "streamlabel_scale_events_total": 2,
        "streamlabel_deployment_broker_resets_total": 1,
    }
    assert {name: value(got, name, actor="driver") for name in expected} == expected
    assert series(got, "streamlabel_actor_restarts_total") == {
        (("actor", "driver"), ("slot", "learner")): 1,
        (("actor", "driver"), ("slot", "worker-0")): 0,
        (("actor", "driver"), ("slot", "worker-2")): 3,
    }


def test_driver_families_report_hung_and_exhausted_slots() -> None:
    state = {
        "hung": {"learner": 0, "worker-0": 2},
        "exhausted": {"learner": 0, "worker-0": 1},
        "degraded": 1,
    }
    got = scrape(ActorMetrics("driver", lambda: state, driver_families))
    assert series(got, "streamlabel_actor_hung_total") == {
        (("actor", "driver"), ("slot", "learner")): 0,
        (("actor", "driver"), ("slot", "worker-0")): 2,
    }
    assert series(got, "streamlabel_slot_exhausted") == {
        (("actor", "driver"), ("slot", "learner")): 0,
        (("actor", "driver"), ("slot", "worker-0")): 1,
    }
    assert value(got, "streamlabel_degraded", actor="driver") == 1


def test_the_driver_before_its_first_reading_exports_zeros() -> None:
    got = scrape(ActorMetrics("driver", dict, driver_families))
    assert value(got, "streamlabel_workers", actor="driver") == 0
    assert series(got, "streamlabel_actor_restarts_total") == {}


# --------------------------------------------------------------- histograms
def test_every_stage_has_an_empty_histogram_before_any_batch() -> None:
    got = scrape(ActorMetrics("worker-0", dict, worker_families))
    counts = series(got, "streamlabel_stage_seconds_count")
    assert counts == {(("actor", "worker-0"), ("stage", st)): 0 for st in STAGES}
    assert STAGES == (
        "poll", "decode", "embed", "classify", "encode", "publish", "commit", "observe",
    )  # fmt: skip
    assert value(got, "streamlabel_batch_seconds_count", actor="worker-0") == 0


def test_observe_batch_fills_count_and_sum_per_stage_and_for_the_batch() -> None:
    m = ActorMetrics("worker-0", dict, worker_families)
    m.observe_batch({"poll": 0.5, "embed": 0.25, "commit": 0.125}, 1.0)
    m.observe_batch({"embed": 0.75, "commit": 0.375}, 2.0)
    m.observe_batch({"embed": 0.001}, None)  # no whole-batch time: the batch histogram skips it
    got = scrape(m)

    def stage(suffix: str, st: str) -> float:
        return value(got, f"streamlabel_stage_seconds_{suffix}", actor="worker-0", stage=st)

    assert (stage("count", "poll"), stage("sum", "poll")) == (1, 0.5)
    assert (stage("count", "embed"), stage("sum", "embed")) == (3, pytest.approx(1.001))
    assert (stage("count", "commit"), stage("sum", "commit")) == (2, 0.5)
    assert stage("count", "decode") == 0
    assert value(got, "streamlabel_batch_seconds_count", actor="worker-0") == 2
    assert value(got, "streamlabel_batch_seconds_sum", actor="worker-0") == 3.0
    # buckets are cumulative: 0.125 and 0.375 are <= 0.5, both <= 1
    assert value(got, "streamlabel_stage_seconds_bucket", actor="worker-0", stage="commit",
                 le="0.25") == 1  # fmt: skip
    assert value(got, "streamlabel_stage_seconds_bucket", actor="worker-0", stage="commit",
                 le="0.5") == 2  # fmt: skip
    assert value(got, "streamlabel_stage_seconds_bucket", actor="worker-0", stage="commit",
                 le="+Inf") == 2  # fmt: skip


def test_an_unknown_stage_gets_its_own_series() -> None:
    m = ActorMetrics("worker-0", dict, worker_families)
    m.observe_batch({"rerank": 0.2}, 0.2)
    m.observe_batch({"rerank": 0.3}, 0.3)
    got = scrape(m)
    assert value(got, "streamlabel_stage_seconds_count", actor="worker-0", stage="rerank") == 2
    assert value(got, "streamlabel_stage_seconds_sum", actor="worker-0", stage="rerank") == 0.5
    stages = {dict(k)["stage"] for k in series(got, "streamlabel_stage_seconds_count")}
    assert stages == {*STAGES, "rerank"}


# -------------------------------------------------------------- the label
@pytest.mark.parametrize(
    ("actor", "families"),
    [("worker-5", worker_families), ("learner", learner_families), ("driver", driver_families)],
)
def test_every_streamlabel_sample_carries_the_actor_label(actor: str, families: Any) -> None:
    full = {
        "dead_letter_reasons": {"decode": 1},
        "lag": {"sl.items:0": 3} if families is worker_families else 3,
        "classes_by_status": {"known": 1},
        "alerts_by_kind": {"mean_shift": 1},
        "restarts": {"worker-0": 1},
    }
    m = ActorMetrics(actor, lambda: full, families)
    m.observe_batch({"embed": 0.1, "custom": 0.1}, 0.2)
    got = scrape(m)
    ours = [(name, dict(labels)) for name, labels in got if name.startswith("streamlabel_")]
    assert len(ours) > 20
    assert [(n, lab) for n, lab in ours if lab.get("actor") != actor] == []
    assert any(name.startswith("process_") for name, _ in got)  # the process collector


def test_two_registries_in_one_process_do_not_clash() -> None:
    """Each actor has its own registry: the driver and an in-process worker coexist."""
    a = ActorMetrics("worker-0", lambda: {"items": 1}, worker_families)
    b = ActorMetrics("worker-1", lambda: {"items": 2}, worker_families)
    a.observe_batch({"embed": 0.1}, 0.1)
    assert value(scrape(a), "streamlabel_items_consumed_total", actor="worker-0") == 1
    got_b = scrape(b)
    assert value(got_b, "streamlabel_items_consumed_total", actor="worker-1") == 2
    assert value(got_b, "streamlabel_stage_seconds_count", actor="worker-1", stage="embed") == 0
