"""The exception hierarchy: one root, small specific subclasses.

Every error streamlabel raises on purpose derives from :class:`StreamlabelError`,
so callers can catch the whole family at a boundary (a worker's poll loop, the
CLI) and route it (dead-letter topic, exit code) without catching bugs.
"""

from __future__ import annotations


class StreamlabelError(Exception):
    """Root of every error streamlabel raises on purpose."""


class SettingsError(StreamlabelError):
    """A setting is invalid; the message names the setting."""


class DecodeError(StreamlabelError):
    """A wire record could not be decoded.

    Attributes:
        reason: a short machine-readable reason (``not_msgpack``, ``not_json``,
            ``bad_envelope``, ``schema_version``, ``wrong_type``, ``invalid``, ``empty``,
            ``oversized``).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class EmbeddingError(StreamlabelError):
    """The embedding model failed on an input."""


class ModelUnavailableError(StreamlabelError):
    """The model fails on every input, a known-good one included (a broken device, a
    lost embedder actor): the inputs are not at fault, so none is dead-lettered."""


class StoreError(StreamlabelError):
    """An operation on the prototype store is invalid (unknown class, bad dimension...)."""


class SnapshotError(StoreError):
    """A store snapshot could not be restored."""


class BrokerError(StreamlabelError):
    """The Kafka broker cannot be reached, started, or refused an operation."""


class PublishError(BrokerError):
    """Records could not be delivered; their input offsets must not be committed."""


class ChangelogError(StreamlabelError):
    """The ``classes`` changelog cannot be read or holds a record no replica can apply."""
