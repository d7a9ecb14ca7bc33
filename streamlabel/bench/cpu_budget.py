"""Where the machine's CPU went during a benchmark phase, by process group.

``bench throughput`` reports it for the end-to-end backlog (issue 18: "the
bench states the CPU budget each part had"): CPU seconds of the stream workers,
the learner, the embedded broker, Ray's own processes and the bench's driver
(producer, reader, supervisor), each as a share of the phase's wall time times
the machine's cores. Processes are found from the bench's process down (the
broker and a local Ray are its descendants); an actor is recognised by the
process title Ray gives it (``ray::StreamWorker...``).

Example:
    >>> group_of("ray::StreamWorker.run", "python")
    'stream workers'
    >>> group_of("tansu", "tansu")
    'broker'
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = ["CpuBudget", "group_of"]

_GROUPS = (
    ("StreamWorker", "stream workers"),
    ("Learner", "learner"),
    ("EmbedderActor", "embedder actor"),
    ("tansu", "broker"),
    ("raylet", "ray"),
    ("gcs_server", "ray"),
    ("ray::", "ray"),
    ("dashboard", "ray"),
    ("log_monitor", "ray"),
)


def group_of(title: str, name: str) -> str:
    """The group a process belongs to, from its title (command line) and name."""
    for needle, group in _GROUPS:
        if needle in title or needle in name:
            return group
    return "other"


@dataclass
class CpuBudget:
    """CPU seconds per group between :meth:`start` and :meth:`stop`."""

    started_at: float = 0.0
    _start: dict[int, tuple[str, float]] | None = None

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._start = _cpu_by_pid()

    def stop(self) -> dict[str, dict[str, float]]:
        """``{group: {"cpu_s", "share"}}``, share of wall × cores; ``total`` included."""
        wall = time.monotonic() - self.started_at
        end = _cpu_by_pid()
        start = self._start or {}
        spent: dict[str, float] = {}
        for pid, (group, cpu) in end.items():
            spent[group] = spent.get(group, 0.0) + cpu - start.get(pid, (group, 0.0))[1]
        budget = wall * (os.cpu_count() or 1)

        def entry(seconds: float) -> dict[str, float]:
            share = round(seconds / budget, 3) if budget else 0.0
            return {"cpu_s": round(seconds, 2), "share": share}

        out = {g: entry(s) for g, s in sorted(spent.items(), key=lambda kv: -kv[1])}
        out["total"] = entry(sum(spent.values()))
        return out


def _cpu_by_pid() -> dict[int, tuple[str, float]]:
    import psutil

    me = psutil.Process(os.getpid())
    out: dict[int, tuple[str, float]] = {}
    for p in [me, *me.children(recursive=True)]:
        try:
            with p.oneshot():
                t = p.cpu_times()
                title = " ".join(p.cmdline()[:2])
                group = "bench driver" if p.pid == me.pid else group_of(title, p.name())
                out[p.pid] = (group, t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out
