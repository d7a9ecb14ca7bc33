"""streamlabel: open-world, continual classification of event streams."""

from importlib.metadata import PackageNotFoundError, version

from streamlabel.errors import (
    DecodeError,
    EmbeddingError,
    SettingsError,
    SnapshotError,
    StoreError,
    StreamlabelError,
)

try:
    __version__ = version("streamlabel")  # the installed distribution's, one source
except PackageNotFoundError:  # pragma: no cover - running from a tree never installed
    __version__ = "0+unknown"

__all__ = [
    "DecodeError",
    "EmbeddingError",
    "SettingsError",
    "SnapshotError",
    "StoreError",
    "StreamlabelError",
    "__version__",
]
