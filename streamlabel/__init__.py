"""streamlabel: open-world, continual classification of event streams."""

from streamlabel.errors import (
    DecodeError,
    EmbeddingError,
    SettingsError,
    SnapshotError,
    StoreError,
    StreamlabelError,
)

__version__ = "0.1.0"

__all__ = [
    "DecodeError",
    "EmbeddingError",
    "SettingsError",
    "SnapshotError",
    "StoreError",
    "StreamlabelError",
    "__version__",
]
