"""Integration fixtures: the real embedding model (bundled MiniLM), loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="session")
def embedder():
    from streamlabel.core.embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(device="cpu")


@pytest.fixture(scope="session")
def small_train() -> Path:
    return DATA / "stackoverflow_small_train.tsv"


@pytest.fixture(scope="session")
def small_test() -> Path:
    return DATA / "stackoverflow_small_test.tsv"
