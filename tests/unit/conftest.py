"""Guards for unit tests: nothing under ``tests/unit`` may start Ray.

Like Ray Serve's ``tests/unit/conftest.py``: unit tests exercise the pure core
and the in-package fakes, so a call to ``ray.init`` there is a bug in the test
(or in the code under test) and fails loudly instead of starting a cluster.
"""

from __future__ import annotations

import importlib.util
from typing import NoReturn

import pytest


def _refuse_ray_init(*args: object, **kwargs: object) -> NoReturn:
    raise RuntimeError("unit tests must not start Ray; use an integration test for that")


@pytest.fixture(autouse=True)
def _forbid_ray_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes ``ray.init`` raise for the duration of every unit test (when Ray is installed)."""
    if importlib.util.find_spec("ray") is None:
        return
    import ray  # imported lazily: only paid once, and only where Ray is installed

    monkeypatch.setattr(ray, "init", _refuse_ray_init)
