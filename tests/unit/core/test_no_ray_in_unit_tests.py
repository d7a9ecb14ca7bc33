"""The unit-test guard (tests/unit/conftest.py): the pure core never needs Ray."""

from __future__ import annotations

import pytest


def test_ray_init_raises_inside_unit_tests() -> None:
    """Starting Ray from a unit test fails at once instead of starting a cluster."""
    import ray

    with pytest.raises(RuntimeError, match="must not start Ray"):
        ray.init()
