"""`streamlabel bench openworld` end to end: the real model, the Engine, the scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

METRICS = ("acc", "nmi", "ari", "known_acc", "novel_acc")
KEYS = {
    *METRICS, *(f"first_{m}" for m in METRICS), "novel_found", "novel_true",
    "unknown", "absorbed", "items", "items_per_s", "seeds",
}  # fmt: skip


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("streamlabel")
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=600, check=False
    )


def test_bench_prints_the_table_and_a_json_summary_with_sane_scores(small_train, small_test):
    proc = run_cli(
        "bench", "openworld", "--train", str(small_train), "--test", str(small_test),
        "--seeds", "0,1", "--labeled-ratio", "0.3", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "== engine mode"
    assert lines[1].split()[:4] == ["seed", "ACC", "NMI", "ARI"]
    summary = json.loads(lines[-1])
    assert set(summary) == KEYS
    # 20 classes, 75% known: 5 held back; 800 train - 30% of 15 known classes' items + 300 test.
    assert summary["novel_true"] == 5
    assert summary["items"] == 800 - 15 * 12 + 300
    # Far above chance (about 5-10% for 20 classes) even on 40 titles a class.
    assert summary["known_acc"] >= 60
    assert summary["acc"] >= 50
    assert summary["nmi"] >= 50
    assert summary["novel_found"] >= 1
    # Revisions from discovery improve on the first labels, never the reverse.
    assert summary["acc"] >= summary["first_acc"]
    assert summary["items_per_s"] > 0
    assert "discovered novel-" in proc.stderr
    assert 0.0 <= summary["unknown"] <= 100.0
    seeds = summary["seeds"]
    assert [s["seed"] for s in seeds] == [0, 1]
    assert all(s["runs"] >= 2 for s in seeds)  # engine mode reports what discovery did
    assert round(sum(s["unknown"] for s in seeds) / 2, 2) == summary["unknown"]


def test_kafka_mode_runs_the_same_protocol_through_broker_and_ray(small_train, small_test):
    """Feedback, items and labels through tansu + Ray actors: same JSON keys, sane scores."""
    proc = run_cli(
        "bench", "openworld", "--train", str(small_train), "--test", str(small_test),
        "--seeds", "0", "--labeled-ratio", "0.3", "--mode", "kafka", "--workers", "1", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "== kafka mode"
    summary = json.loads(lines[-1])
    assert set(summary) == KEYS
    assert summary["items"] == 800 - 15 * 12 + 300
    assert summary["known_acc"] >= 60
    assert summary["acc"] >= 50
    assert "0 duplicate firsts" in proc.stderr


def test_bench_with_a_missing_file_exits_non_zero_naming_it(small_test, tmp_path):
    missing = tmp_path / "absent.tsv"
    proc = run_cli("bench", "openworld", "--train", str(missing), "--test", str(small_test))
    assert proc.returncode == 2
    assert "absent.tsv" in proc.stderr


def test_bench_rejects_a_bad_ratio_at_start_up(small_train, small_test):
    proc = run_cli(
        "bench", "openworld", "--train", str(small_train), "--test", str(small_test),
        "--known-ratio", "1.5",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--known-ratio" in proc.stderr


def test_bench_with_an_invalid_setting_fails_at_start_up_naming_it(small_train, small_test):
    import os

    env = {**os.environ, "STREAMLABEL_STORE__THRESHOLD_QUANTILE": "0.9"}
    script = Path(sys.executable).with_name("streamlabel")
    proc = subprocess.run(
        [str(script), "bench", "openworld", "--train", str(small_train), "--test", str(small_test)],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "store.threshold_quantile" in proc.stderr
    assert "embedding" not in proc.stderr  # failed before any work
