"""Fixtures for Engine tests: a deterministic text world with known and held-back topics."""

from __future__ import annotations

import pytest

from streamlabel.pipeline import Engine, load_settings
from streamlabel.testing import HashEmbedder, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000.0)


@pytest.fixture
def make_engine(clock: ManualClock):
    """Builds an Engine on the hash embedder; keyword overrides go to the settings."""

    def build(**overrides: object) -> Engine:
        overrides.setdefault("drift", {"enabled": False})
        return Engine(load_settings(**overrides), HashEmbedder(dim=64), clock=clock)

    return build
