"""``pip install streamlabel`` with no extras: a slim client that works against a real broker.

Slow — a minute or two, almost all of it pip: a module fixture creates a fresh
venv and installs the project into it without extras, from the package index
pip is configured with (this machine's mirrors; PyPI elsewhere). Then the slim
venv's python produces items to, and reads labels back from, a tansu broker
started on 127.0.0.1 by the main venv (the session ``broker`` fixture).

The project is installed from a copy of what its wheel is built from
(``pyproject.toml``, the README and license files, ``streamlabel/``), as the
Dockerfile does: pip builds a local directory in place, and a ``build/`` left in
the checkout would go stale.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from streamlabel.kafka.client import TopicReader
from streamlabel.kafka.publisher import Publisher
from streamlabel.kafka.topics import Topics, ensure_topics
from streamlabel.schemas import Item, LabelRecord, encode
from streamlabel.settings.kafka import KafkaSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORKER_STACK = (
    "torch",
    "ray",
    "faiss-cpu",
    "faiss-gpu",
    "scikit-learn",
    "scipy",
    "sentence-transformers",
    "transformers",
)
"""Distributions the slim install must not bring (the ``worker`` extra does)."""


def _clean_env() -> dict[str, str]:
    """This environment without the main venv and without streamlabel settings."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    return {
        k: v for k, v in os.environ.items() if k not in drop and not k.startswith("STREAMLABEL_")
    }


@pytest.fixture(scope="module")
def slim_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv holding ``pip install streamlabel`` (no extras)."""
    base = tmp_path_factory.mktemp("slim")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "NOTICE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "streamlabel", src / "streamlabel", ignore=shutil.ignore_patterns("__pycache__")
    )
    venv = base / "venv"
    env = _clean_env()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=300)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(src)],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    return python


def _run(python: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-c", textwrap.dedent(script), *args],
        capture_output=True, text=True, env=_clean_env(), timeout=300, check=False, cwd="/",
    )  # fmt: skip


def test_the_slim_install_has_no_worker_stack_and_imports_the_client(slim_python: Path) -> None:
    proc = _run(
        slim_python,
        """
        import importlib.metadata as md, json, sys
        import streamlabel.kafka.client, streamlabel.kafka.control, streamlabel.schemas
        import streamlabel.settings
        from streamlabel import Client
        try:
            from streamlabel import OpenWorldClassifier
            hint = None
        except ImportError as exc:
            hint = str(exc)
        names = sorted({d.metadata["Name"].lower().replace("_", "-") for d in md.distributions()})
        print(json.dumps({"dists": names, "file": streamlabel.__file__, "hint": hint}))
        """,
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert not set(WORKER_STACK) & set(found["dists"]), found["dists"]
    assert {"streamlabel", "kafka-python", "pydantic", "msgpack"} <= set(found["dists"])
    assert str(slim_python.parents[1]) in found["file"]  # the venv's copy, not this checkout
    assert "streamlabel[worker]" in found["hint"]  # the classifier says what it needs


def test_the_slim_client_produces_items_and_reads_labels_from_a_real_broker(
    slim_python: Path, broker
) -> None:
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"slim{uuid.uuid4().hex[:8]}."
    )
    topics = Topics.of(settings)
    ensure_topics(settings, topics)
    labels = {
        f"a{i}": LabelRecord(
            item_id=f"a{i}", label=f"c{i % 2}", class_name=f"class {i % 2}", score=0.9,
            margin=0.2, is_unknown=False, store_version=3, model_id="m", emitted_at=1.0,
        )
        for i in range(3)
    }  # fmt: skip
    publisher = Publisher(settings, topics)
    try:
        for record in labels.values():
            publisher.send(topics.labels, record.item_id.encode(), encode(record))
        publisher.flush()
    finally:
        publisher.close()

    proc = _run(
        slim_python,
        """
        import json, sys, time
        from streamlabel.kafka.client import LabelCollector, TopicReader, produce_items
        from streamlabel.schemas import Item
        from streamlabel.settings.kafka import KafkaSettings

        settings = KafkaSettings(bootstrap_servers=sys.argv[1], topic_prefix=sys.argv[2])
        sent = produce_items(settings, [Item(id=f"s{i}", text=f"slim item {i}") for i in range(20)])
        collector = LabelCollector(settings)
        complete = collector.wait_for({"a0", "a1", "a2"}, timeout_s=60)
        collector.close()
        reader = TopicReader(settings, "items")
        items, deadline = {}, time.monotonic() + 60
        while len(items) < sent and time.monotonic() < deadline:
            items.update((r.id, r.text) for r in reader.records())
        reader.close()
        loaded = {m.split(".")[0] for m in sys.modules}
        heavy = {"torch", "ray", "faiss", "sklearn", "scipy"} & loaded
        print(json.dumps({
            "sent": sent, "complete": complete, "items": items, "heavy": sorted(heavy),
            "labels": {k: [r.label, r.class_name] for k, r in collector.final.items()},
        }))
        """,
        broker.bootstrap_servers,
        settings.topic_prefix,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["sent"] == 20
    assert out["complete"]
    assert out["labels"] == {k: [r.label, r.class_name] for k, r in labels.items()}
    assert out["items"] == {f"s{i}": f"slim item {i}" for i in range(20)}
    assert out["heavy"] == []

    # what the slim venv produced decodes here, in the full install, as items
    reader = TopicReader(settings, "items")
    try:
        seen: dict[str, Item] = {}
        for _ in range(50):
            seen.update((r.id, r) for r in reader.records(timeout_ms=500) if isinstance(r, Item))
            if len(seen) == 20:
                break
    finally:
        reader.close()
    assert sorted(seen) == sorted(f"s{i}" for i in range(20))
