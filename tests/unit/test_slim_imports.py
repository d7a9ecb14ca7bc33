"""The slim install: the client side of streamlabel imports none of the worker stack.

A producer or a downstream consumer installs ``pip install streamlabel``
without torch, Ray, FAISS, scikit-learn or SciPy. Each check runs in a fresh
interpreter with those packages blocked (``sys.modules[name] = None`` makes
any ``import name`` raise ``ImportError``), so a module-level import of one of
them anywhere on the import chain fails the test with its traceback.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

HEAVY = (
    "torch",
    "ray",
    "faiss",
    "sklearn",
    "scipy",
    "sentence_transformers",
    "transformers",
    "hdbscan",
)
SLIM_MODULES = (
    "streamlabel",
    "streamlabel.schemas",
    "streamlabel.settings",
    "streamlabel.kafka.client",
    "streamlabel.kafka.control",
)


def _run_blocked(body: str) -> subprocess.CompletedProcess[str]:
    """Runs ``body`` in a new interpreter in which every heavy package is unimportable."""
    script = (
        f"import sys\nfor name in {HEAVY!r}:\n    sys.modules[name] = None\n"
        + textwrap.dedent(body)
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )


def test_blocking_a_package_makes_its_import_fail() -> None:
    """The harness itself: a blocked package cannot be imported (else nothing is proved)."""
    proc = _run_blocked("import faiss\n")
    assert proc.returncode != 0
    assert "halted; None in sys.modules" in proc.stderr


@pytest.mark.parametrize("module", SLIM_MODULES)
def test_slim_module_imports_without_the_worker_stack(module: str) -> None:
    """Each client-side module imports with torch, Ray, FAISS, sklearn and SciPy blocked."""
    proc = _run_blocked(f"import {module}\n")
    assert proc.returncode == 0, proc.stderr


def test_settings_load_and_the_client_builds_records_without_the_worker_stack() -> None:
    """Loading settings and encoding items (what a producer does before sending) stays slim."""
    proc = _run_blocked(
        """
        from streamlabel.kafka.topics import Topics
        from streamlabel.schemas import Item, decode, encode
        from streamlabel.settings import load_runtime_settings, load_settings
        from streamlabel.settings.kafka import KafkaSettings

        load_settings()
        load_runtime_settings()
        topics = Topics.of(KafkaSettings(bootstrap_servers="127.0.0.1:9092"))
        item = Item(id="a", text="hello")
        assert decode(encode(item), Item) == item
        print(topics.items)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "sl.items"


def test_the_lazy_exports_of_the_package_do_not_load_until_asked_for() -> None:
    """``import streamlabel`` leaves the classifier (and its engine) unimported until used."""
    proc = _run_blocked(
        """
        import streamlabel

        assert "OpenWorldClassifier" in streamlabel.__all__
        assert "Client" in streamlabel.__all__
        assert "streamlabel.pipeline.classifier" not in sys.modules
        assert "streamlabel.pipeline.engine" not in sys.modules
        """
    )
    assert proc.returncode == 0, proc.stderr


def test_the_package_exports_the_classifier_and_the_client_on_first_use() -> None:
    """``from streamlabel import OpenWorldClassifier, Client`` gives the real classes."""
    import streamlabel
    from streamlabel import Client, OpenWorldClassifier
    from streamlabel.kafka import control
    from streamlabel.pipeline import classifier

    assert OpenWorldClassifier is classifier.OpenWorldClassifier
    assert Client is control.Client
    assert {"Client", "OpenWorldClassifier"} <= set(dir(streamlabel))
    with pytest.raises(AttributeError, match="no attribute 'Classifier'"):
        _ = streamlabel.Classifier  # type: ignore[attr-defined]
