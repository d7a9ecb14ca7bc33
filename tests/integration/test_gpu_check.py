"""scripts/gpu-check.sh runs end to end in its dry mode (CPU, the embedder actor), so the
first session with a GPU finds a script that works (issue 18)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_check_script_runs_the_throughput_bench_in_dry_mode(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLABEL_")}
    env.pop("RAY_ADDRESS", None)
    env["VENV"] = sys.prefix  # the environment running the tests (make's .venv in CI)
    proc = subprocess.run(
        ["bash", "scripts/gpu-check.sh", "--dry-run", "--items", "120", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "throughput.json").read_text())
    assert result["items"] == 120
    assert result["workers"] == 2
    assert result["e2e_items_per_s"] > 0
    assert result["latency"]["samples"] > 0
    assert "gpu-check:" in proc.stdout
