"""The learner's checkpoint: a snapshot file holding state, offsets and an outbox.

The outbox pattern. A learner step that produced records first writes a
snapshot holding the Engine's state, the ``feedback``/``unknowns`` offsets it
covers AND the records to publish (:meth:`Checkpoint.write`); then publishes
them, checks every delivery, and marks the outbox published
(:meth:`Checkpoint.mark_published`: a small marker file beside the snapshot
holding its sequence number). A restart reads the snapshot back
(:meth:`Checkpoint.restore`) and republishes its outbox when the marker names
an older snapshot: duplicates at worst, keyed and idempotent.

Files are replaced atomically and durably: written beside, fsynced, renamed,
the directory fsynced; the snapshot before stays as ``.prev``. A snapshot that
cannot be read, is not msgpack or has another format is not trusted:
:meth:`Checkpoint.restore` falls back to the previous one, then to nothing (the
learner rebuilds from the changelog and raises an alert), and says why in
:attr:`Checkpoint.skipped`. A lock file keeps a second learner off the same
state directory.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from streamlabel.errors import SnapshotError, StreamlabelError
from streamlabel.kafka.io import OutRecord
from streamlabel.kafka.protocols import Clock
from streamlabel.settings.runtime import RuntimeSettings

__all__ = [
    "SNAPSHOT_FORMAT",
    "Checkpoint",
    "Snapshot",
    "read_snapshot",
    "snapshot_path",
]

SNAPSHOT_FORMAT = 2
"""The snapshot file's format; another one is refused (:class:`SnapshotError`)."""


def snapshot_path(settings: RuntimeSettings) -> Path:
    """Where the learner of this deployment keeps its snapshot."""
    base = settings.learner.state_dir or os.path.join(tempfile.gettempdir(), "streamlabel")
    name = f"learner-{settings.kafka.topic_prefix}{settings.kafka.group_id}.snapshot"
    return Path(base) / name


def read_snapshot(path: Path) -> dict[str, Any] | None:
    """The snapshot at ``path`` as plain data (None when there is none).

    Raises:
        SnapshotError: the file exists but cannot be read, is corrupt, or has
            another format than :data:`SNAPSHOT_FORMAT`.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {str(path)!r}: {exc}") from exc
    try:
        snap: dict[str, Any] = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (msgpack.UnpackException, ValueError) as exc:
        raise SnapshotError(f"snapshot {str(path)!r} is corrupt: {exc}") from exc
    if not isinstance(snap, dict) or snap.get("format") != SNAPSHOT_FORMAT:
        found = snap.get("format") if isinstance(snap, dict) else type(snap).__name__
        raise SnapshotError(f"snapshot {str(path)!r} has format {found!r}")
    return snap


@dataclass(frozen=True)
class Snapshot:
    """A snapshot read back."""

    seq: int
    """Its sequence number (one per snapshot written)."""
    engine: dict[str, Any]
    """The Engine's state (``Engine.state()``)."""
    offsets: dict[str, int]
    """The next offset of each input partition it covers (``topic:partition``)."""
    broker_generation: int
    """The broker resets the learner had seen when it wrote it."""
    outbox: list[OutRecord]
    """The records it was written to publish."""


class Checkpoint:
    """The snapshot file of one learner, its outbox marker, and when to write again.

    Args:
        path: the snapshot file (:func:`snapshot_path`).
        every_s: a step without output writes a snapshot once this long passed
            since the last one (``learner.snapshot_every_s``)...
        every_records: ...or once it consumed this many records since
            (``learner.snapshot_every_records``).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        path: Path,
        *,
        every_s: float = float("inf"),
        every_records: int = 2**62,
        clock: Clock = time.monotonic,
    ) -> None:
        self.path = path
        self.seq = 0
        """The sequence number of the last snapshot written or restored."""
        self._every_s = every_s
        self._every_records = every_records
        self._clock = clock
        self._since = 0
        self._last = clock()
        self._lock: int | None = None
        self.skipped: list[str] = []
        """Why snapshots on disk were not used by the last :meth:`restore` (empty: none was
        skipped)."""

    @property
    def _marker(self) -> Path:
        return self.path.with_suffix(".published")

    @property
    def previous(self) -> Path:
        """The snapshot before the last one (the fallback when the last is unusable)."""
        return self.path.with_suffix(".prev")

    def lock(self) -> None:
        """Takes the state directory for this learner (until :meth:`unlock` or exit).

        Raises:
            StreamlabelError: another learner (process) holds it.
        """
        if self._lock is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        path = self.path.with_suffix(".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StreamlabelError(
                f"another learner holds {str(path)!r}: two learners must not write one store"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock = fd

    def unlock(self) -> None:
        """Releases the state directory."""
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the lock
            self._lock = None

    def restore(self) -> tuple[Snapshot | None, list[OutRecord]]:
        """The newest usable snapshot on disk, and its outbox when it was not marked published.

        An unusable snapshot (unreadable, corrupt, another format) is skipped for
        the one before it; :attr:`skipped` says why. None when there is none left.
        """
        self.skipped = []
        snap = None
        for path in (self.path, self.previous):
            try:
                snap = read_snapshot(path)
            except SnapshotError as exc:
                self.skipped.append(str(exc))
                continue
            if snap is not None:
                break
        if snap is None:
            return None, []
        restored = Snapshot(
            seq=int(snap["seq"]),
            engine=snap["engine"],
            offsets={str(k): int(v) for k, v in snap["offsets"].items()},
            broker_generation=int(snap.get("broker_generation", 0)),
            outbox=[
                (str(t), k, bytes(v), [(str(n), bytes(h)) for n, h in hs])
                for t, k, v, hs in snap["outbox"]
            ],
        )
        self.seq = restored.seq
        pending = restored.outbox if self.published_seq() != self.seq else []
        return restored, pending

    def write(
        self,
        engine_state: dict[str, Any],
        offsets: dict[str, int],
        broker_generation: int,
        outbox: list[OutRecord],
    ) -> int:
        """Writes the next snapshot (atomically, durably); returns its sequence number.

        Raises:
            OSError: it could not be written (a full disk): the snapshot on disk is
                the one before, untouched.
        """
        self.seq += 1
        snap = {
            "format": SNAPSHOT_FORMAT,
            "seq": self.seq,
            "engine": engine_state,
            "offsets": dict(offsets),
            "broker_generation": broker_generation,
            "outbox": [list(r) for r in outbox],
            "written_at": time.time(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        _write_durably(tmp, msgpack.packb(snap, use_bin_type=True))
        if self.path.exists():
            os.replace(self.path, self.previous)
        os.replace(tmp, self.path)
        _sync_dir(self.path.parent)
        self._since = 0
        self._last = self._clock()
        return self.seq

    def mark_published(self) -> None:
        """Records that the last snapshot's outbox is out (a restart need not resend it)."""
        tmp = self._marker.with_suffix(".tmp")
        _write_durably(tmp, str(self.seq).encode())
        os.replace(tmp, self._marker)

    def published_seq(self) -> int:
        """The sequence number whose outbox was marked published (-1: none)."""
        try:
            return int(self._marker.read_text())
        except (OSError, ValueError):
            return -1

    def count(self, records: int) -> None:
        """Counts records consumed since the last snapshot."""
        self._since += records

    def due(self) -> bool:
        """True when records were consumed since the last snapshot and enough of them,
        or enough time, passed."""
        if self._since == 0:
            return False
        return self._since >= self._every_records or self._clock() - self._last >= self._every_s


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
