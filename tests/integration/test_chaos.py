"""``streamlabel chaos``, the quick subset: a real deployment (tansu, local Ray,
MiniLM) through kill -9 of workers and of the learner, poison input, a model
stall, deterministic replay, bad settings and a broker restart. Nothing may be
lost; the JSON report is the CLI's last line.

The chaos run starts its own broker and Ray, so it runs as a subprocess (the
session's Ray of the other integration tests is not shared).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streamlabel.chaos.runner import QUICK

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "streamlabel.cli", "chaos", "--scenarios", ",".join(QUICK),
        "--cycles", "1", "--items", "200", "--dataset", str(ROOT / "data" / "stackoverflow"),
        "--json",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env, cwd=ROOT)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert last.startswith("{"), f"no JSON report (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    data: dict[str, Any] = json.loads(last)
    data["exit_code"] = proc.returncode
    return data


def _scenario(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["scenarios"] if s["name"] == name)


def test_report_shape_and_nothing_lost(report: dict[str, Any]) -> None:
    names = [s["name"] for s in report["scenarios"]]
    assert names == [n if n != "settings" else "settings_validation" for n in QUICK]
    for s in report["scenarios"]:
        assert {"name", "inputs", "lost", "duplicates", "unexpected", "passed"} <= s.keys()
        assert s["passed"], s
        assert s["lost"] == 0
        assert s["unexpected"] == 0
    assert report["lost_total"] == 0
    assert report["passed"] is True
    assert report["exit_code"] == 0


def test_every_worker_fault_point_fired(report: dict[str, Any]) -> None:
    kill = _scenario(report, "worker_kill")
    assert kill["details"]["kills"] == {
        "after_embed": 1, "after_produce": 1, "after_flush": 1, "anywhere": 1,
    }  # fmt: skip
    assert kill["inputs"] == 4 * 200
    # a fault re-delivers at most the batch in flight on each worker whose partitions moved
    d = kill["details"]
    assert d["faults"] == 4
    assert d["max_duplicates_per_fault"] <= d["max_per_fault_bound"] < 200


def test_learner_recovers_at_every_point(report: dict[str, Any]) -> None:
    crash = _scenario(report, "learner_crash")["details"]
    assert set(crash["crashes"]) == {
        "feedback_applied", "discovery_adopted", "after_snapshot", "after_publish",
    }  # fmt: skip
    for point, result in crash["crashes"].items():
        assert result["restored_from"] == "snapshot", point
        assert result["ok"], (point, result)
    # feedback applied before the crash is replayed once, not twice
    assert crash["crashes"]["feedback_applied"]["count_after"] == 5
    assert crash["replicas_converged"] is True
    assert crash["changelog_classes_not_in_store"] == []


def test_poison_lands_in_the_dlq_with_reasons(report: dict[str, Any]) -> None:
    poison = _scenario(report, "poison")
    assert poison["inputs"] == 3 * 200 + 9  # 9 kinds of poison, NaN from the model included
    rates = poison["details"]["items_per_s"]
    assert rates["after"] > 0  # the stream goes on after the poison
    assert {"not_msgpack", "schema_version", "oversized", "bad_vector", "embedding"} <= set(
        poison["details"]["dlq_reasons"]
    )


def test_stalled_worker_is_fenced_without_a_commit_storm(report: dict[str, Any]) -> None:
    stall = _scenario(report, "stall")["details"]
    assert stall["fenced_batches"] >= 1
    assert stall["commit_failures"] <= 2


def test_replay_is_deterministic_and_matches_live(report: dict[str, Any]) -> None:
    replay = _scenario(report, "deterministic_replay")["details"]
    assert replay["identical_twice"] is True
    assert replay["compared_with_live"] > 0
    assert replay["differ_from_live"] == []


def test_bad_settings_fail_at_start_naming_the_setting(report: dict[str, Any]) -> None:
    cases = _scenario(report, "settings_validation")["details"]["cases"]
    assert set(cases) == {
        "wrong_bootstrap",
        "unknown_model_path",
        "bad_threshold",
        "bad_partitions",
    }
    for name, case in cases.items():
        assert case["exit_code"] == 2, (name, case)
        assert case["names_setting"], (name, case)
        assert case["committed_offsets"] == {}, name


def test_broker_restart_is_detected_and_labelling_resumes(report: dict[str, Any]) -> None:
    broker = _scenario(report, "broker_restart")
    assert broker["lost"] == 0
    assert broker["inputs"] == 200
    d = broker["details"]
    assert d["broker_reset_alerts"] >= 1
    assert d["replicas_converged"] is True
    assert d["classes_missing_from_new_changelog"] == []
