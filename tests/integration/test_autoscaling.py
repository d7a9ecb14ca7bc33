"""Lag-driven scaling on a real deployment: a backlog adds a worker, an empty
topic removes it again, and every item is labelled across both changes."""

from __future__ import annotations

import time

import pytest

from streamlabel.kafka.client import LabelCollector, produce_items
from streamlabel.runtime.scaling import LagScaler
from streamlabel.runtime.supervisor import Runtime
from streamlabel.schemas import Item

pytestmark = pytest.mark.integration


def test_a_backlog_adds_a_worker_and_an_empty_topic_removes_it(
    make_runtime_settings, local_ray, tmp_path, so_test
):
    settings = make_runtime_settings(
        tmp_path / "state",
        supervisor={"workers": 1},
        worker={"batch_size": 16},
        scaling={
            "enabled": True, "min_workers": 1, "max_workers": 2, "target_lag_per_worker": 100,
            "scale_up_after_s": 0, "scale_down_after_s": 3, "scale_cooldown_s": 0,
        },
        discovery={"run_every": 100000},
    )  # fmt: skip
    # a backlog that outlasts a second worker's start-up (~5 s) at one worker's pace
    items = [Item(id=f"a-{i}", text=t) for i, t in enumerate(so_test.texts[:4000])]
    with Runtime(settings) as rt:
        scaler = LagScaler(rt)
        assert scaler.policy.max_workers == 2
        collector = LabelCollector(rt.settings.kafka)
        produce_items(rt.settings.kafka, items)
        ids = {i.id for i in items}
        seen_counts: list[int] = []
        seen_names: set[str] = set()
        deadline = time.monotonic() + 300
        while not ids <= collector.first.keys():
            rt.check()
            p = rt.progress()
            scaler.step(p.lag)
            seen_counts.append(len(rt.workers))
            seen_names.update(slot.name for slot in rt.workers)
            collector.poll()
            assert time.monotonic() < deadline, f"{len(ids - collector.first.keys())} unlabelled"
            time.sleep(0.5)
        assert max(seen_counts) == 2, "the backlog did not add a worker"
        assert scaler.events >= 1
        deadline = time.monotonic() + 120
        while rt.worker_count() > 1:  # lag 0 for scale_down_after_s: one worker goes
            rt.check()
            scaler.step(rt.progress().lag)
            assert time.monotonic() < deadline, "the idle worker was not removed"
            time.sleep(0.5)
        assert [s.name for s in rt.workers] == ["worker-0"]  # the newest one went
        assert seen_names == {"worker-0", "worker-1"}
        assert all(s.restarts == 0 for s in rt.workers)
        collector.drain(quiet_s=2.0)
        assert ids <= collector.first.keys()
        collector.close()
