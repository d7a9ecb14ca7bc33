"""Where the model runs: the ``auto`` embedder mode, and torch threads per local embedder."""

from __future__ import annotations

import os

import pytest

from streamlabel.workers.embedding import default_threads, resolve_embedder_mode


@pytest.mark.parametrize(
    ("gpus", "expected"), [(0.0, "local"), (0.5, "actor"), (1.0, "actor"), (8.0, "actor")]
)
def test_auto_runs_one_shared_actor_when_the_cluster_has_a_gpu(gpus: float, expected: str) -> None:
    assert resolve_embedder_mode("auto", gpus) == expected


@pytest.mark.parametrize("mode", ["local", "actor"])
@pytest.mark.parametrize("gpus", [0.0, 4.0])
def test_an_explicit_mode_is_kept_whatever_the_cluster_has(mode: str, gpus: float) -> None:
    assert resolve_embedder_mode(mode, gpus) == mode


@pytest.mark.parametrize(
    ("cores", "workers", "expected"),
    [(16, 4, 4), (16, 3, 5), (8, 1, 8), (2, 8, 1), (4, 0, 4), (None, 2, 1)],
    ids=[
        "even",
        "rounded-down",
        "one-worker",
        "more-workers-than-cores",
        "zero-workers",
        "unknown",
    ],
)
def test_default_threads_share_the_cores_among_the_workers(
    monkeypatch: pytest.MonkeyPatch, cores: int | None, workers: int, expected: int
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert default_threads(workers) == expected


def test_default_threads_is_at_least_one_on_this_machine() -> None:
    assert 1 <= default_threads(1) == max(1, os.cpu_count() or 1)
