"""The drain token of an endpoint: who may ``POST /drain``.

Loopback alone does not say who is asking: any local user or process may
reach it. Each endpoint draws a random token at start-up and writes it to
``drain-<port>.token`` in a directory that only its user can read
(:func:`drain_token_dir`); ``POST /drain`` must carry it as
``Authorization: Bearer <token>``, and ``streamlabel drain`` (same host, same
user: in a pod, the ``preStop`` hook in the actor's container) reads it there.

Example:
    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> path = write_drain_token("s3cret", 9466, d)
    >>> read_drain_token(9466, d), oct(path.stat().st_mode & 0o777), read_drain_token(9467, d)
    ('s3cret', '0o600', None)
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

import structlog

__all__ = ["drain_token_dir", "drain_token_path", "read_drain_token", "write_drain_token"]

log = structlog.get_logger(__name__)


def drain_token_dir() -> Path:
    """Where endpoints keep their drain tokens: one directory per user in the temporary
    directory (in a pod, the ``/tmp`` volume its actor and its ``preStop`` hook share),
    readable by that user only."""
    return Path(tempfile.gettempdir()) / f"streamlabel-{os.getuid()}"


def drain_token_path(port: int, directory: Path | None = None) -> Path:
    """The drain token file of the endpoint on ``port`` of this host."""
    return (directory or drain_token_dir()) / f"drain-{port}.token"


def read_drain_token(port: int, directory: Path | None = None) -> str | None:
    """The drain token of the endpoint on ``port`` of this host (None: there is none, or
    it is not readable by this user)."""
    try:
        return drain_token_path(port, directory).read_text().strip() or None
    except OSError:
        return None


def write_drain_token(token: str, port: int, directory: Path | None) -> Path | None:
    """Writes ``token`` for ``port``, readable by this user only (replacing a stale one).

    Returns:
        Its path; None (logged) when the directory is unsafe or unwritable: the
        endpoint then refuses every drain.
    """
    directory = directory or drain_token_dir()
    path = drain_token_path(port, directory)
    try:
        _private_dir(directory)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".drain-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(token)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        log.error(
            "drain_token_unwritable",
            path=str(path),
            error=str(exc),
            hint="POST /drain is refused: streamlabel drain cannot stop this process",
        )
        return None
    return path


def _private_dir(path: Path) -> None:
    """Creates ``path`` (mode 0700) or checks it: a directory of this user, not a link,
    that nobody else may read.

    Raises:
        PermissionError: it is a link, not a directory, or another user's.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise PermissionError(f"{str(path)!r} is not a directory of this user")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
