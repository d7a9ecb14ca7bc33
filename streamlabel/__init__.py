"""streamlabel: open-world, continual classification of event streams.

The package itself is slim: importing it (or :mod:`streamlabel.schemas`,
:mod:`streamlabel.settings`, the Kafka client) loads no torch, Ray or FAISS, so
``pip install streamlabel`` (no extras) serves producers and consumers. The two
entry points of the Python API are imported on first use (PEP 562):

* :class:`OpenWorldClassifier` — the classifier in-process (needs the
  ``worker`` extra: the model, FAISS, scikit-learn);
* :class:`Client` — produce items and feedback, send commands, read labels
  from a deployment's broker.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from streamlabel.errors import (
    DecodeError,
    EmbeddingError,
    SettingsError,
    SnapshotError,
    StoreError,
    StreamlabelError,
)

if TYPE_CHECKING:
    from streamlabel.kafka.control import Client
    from streamlabel.pipeline.classifier import OpenWorldClassifier

try:
    __version__ = version("streamlabel")  # the installed distribution's, one source
except PackageNotFoundError:  # pragma: no cover - running from a tree never installed
    __version__ = "0+unknown"

_LAZY = {
    "Client": "streamlabel.kafka.control",
    "OpenWorldClassifier": "streamlabel.pipeline.classifier",
}

__all__ = [
    "Client",
    "DecodeError",
    "EmbeddingError",
    "OpenWorldClassifier",
    "SettingsError",
    "SnapshotError",
    "StoreError",
    "StreamlabelError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Imports :class:`OpenWorldClassifier` and :class:`Client` when first asked for.

    Raises:
        ModuleNotFoundError: the name needs a package of the worker stack that this
            (slim) install lacks; the message says which extra brings it.
    """
    path = _LAZY.get(name)
    if path is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = import_module(path)
    except ModuleNotFoundError as exc:
        if not exc.name or exc.name.partition(".")[0] == __name__:
            raise
        raise ModuleNotFoundError(
            f"streamlabel.{name} needs {exc.name!r}, which the worker stack brings: "
            "pip install 'streamlabel[worker]'",
            name=exc.name,
        ) from exc
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
