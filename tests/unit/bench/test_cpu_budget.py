"""The CPU budget of a benchmark phase: process groups and their shares."""

from __future__ import annotations

import subprocess
import sys

from streamlabel.bench.cpu_budget import CpuBudget, group_of


def test_processes_are_grouped_by_the_title_ray_or_the_broker_gives_them() -> None:
    assert group_of("ray::StreamWorker.run", "python") == "stream workers"
    assert group_of("ray::Learner.run", "python") == "learner"
    assert group_of("/usr/bin/tansu broker", "tansu") == "broker"
    assert group_of("/x/raylet --node", "raylet") == "ray"
    assert group_of("ray::IDLE", "python") == "ray"
    assert group_of("bash -c x", "bash") == "other"


def test_a_busy_child_process_shows_in_the_budget() -> None:
    """A child that spins for ~0.5 s of CPU is counted (as 'other'), and shares add up."""
    budget = CpuBudget()
    budget.start()
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"
    child = subprocess.Popen(
        [sys.executable, "-c", spin + "print('spun', flush=True)\ntime.sleep(2)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "spun"  # still alive: its CPU is counted
    out = budget.stop()
    child.wait()
    assert out["other"]["cpu_s"] >= 0.4
    assert out["total"]["cpu_s"] >= out["other"]["cpu_s"]
    assert 0 < out["total"]["share"] <= 1.0
