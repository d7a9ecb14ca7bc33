"""Integration fixtures: the real embedding model (bundled MiniLM), loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# a local Ray listens on 127.0.0.1 only (read when ray is imported)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="session")
def embedder():
    from streamlabel.core.embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(device="cpu")


@pytest.fixture(scope="session")
def embedder_fp32():
    """The model in float32 whatever the CPU (``auto`` picks bf16 on one that has it)."""
    from streamlabel.core.embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def small_train() -> Path:
    return DATA / "stackoverflow_small_train.tsv"


@pytest.fixture(scope="session")
def small_test() -> Path:
    return DATA / "stackoverflow_small_test.tsv"


@pytest.fixture(scope="session")
def so_test():
    """The StackOverflow test split (6,000 titles, 20 classes)."""
    from streamlabel.datasets import read_tsv

    return read_tsv(DATA.parent.parent / "data" / "stackoverflow" / "test.tsv")


@pytest.fixture(scope="session")
def broker():
    """A real tansu broker on 127.0.0.1, one per test session."""
    from streamlabel.kafka.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray on 127.0.0.1 without dashboard, one per test session."""
    import ray

    from streamlabel.runtime.ray_env import init_ray
    from streamlabel.settings.runtime import load_runtime_settings

    started = init_ray(load_runtime_settings(ray={"num_cpus": 4}))
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def make_runtime_settings(broker):
    """Factory: runtime settings on the session broker with a fresh topic prefix and group."""
    import uuid

    from streamlabel.settings.runtime import load_runtime_settings

    def make(state_dir, **overrides):
        run = uuid.uuid4().hex[:8]
        kafka = {
            "bootstrap_servers": broker.bootstrap_servers,
            "topic_prefix": f"t{run}.",
            "group_id": f"g{run}",
            **overrides.pop("kafka", {}),
        }
        learner = {"state_dir": str(state_dir), **overrides.pop("learner", {})}
        logging = {"level": "warning", **overrides.pop("logging", {})}
        return load_runtime_settings(kafka=kafka, learner=learner, logging=logging, **overrides)

    return make


@pytest.fixture
def runtime_settings(make_runtime_settings, tmp_path):
    """Factory: like ``make_runtime_settings``, with the test's own state directory."""
    return lambda **overrides: make_runtime_settings(tmp_path / "state", **overrides)
