"""Waiting for a condition (the CLI, the benches, the chaos suite and the tests)."""

from __future__ import annotations

import time
from collections.abc import Callable

from streamlabel.errors import StreamlabelError

__all__ = ["wait_until"]


def wait_until(
    condition: Callable[[], object], timeout_s: float, what: str, *, interval_s: float = 0.2
) -> None:
    """Polls ``condition`` until it is truthy.

    Raises:
        StreamlabelError: ``timed out waiting for <what>`` after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise StreamlabelError(f"timed out waiting for {what}")
        time.sleep(interval_s)
