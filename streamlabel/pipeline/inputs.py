"""What the Engine consumes: raw messages with their source position."""

from __future__ import annotations

from dataclasses import dataclass

from streamlabel.schemas import SourceRef


@dataclass(frozen=True)
class RawRecord:
    """One consumed message: its raw bytes and where it came from.

    Attributes:
        value: the message value (``None`` for a tombstone, which is dead-lettered).
        source: topic, partition and offset it was read at.
        key: the message key, if any.
    """

    value: bytes | None
    source: SourceRef
    key: bytes | None = None
