"""``python -m streamlabel.bench.memory``: per-class memory, snapshot and event bytes."""

from __future__ import annotations

from streamlabel.bench.memory import class_memory


def test_class_memory_reports_each_role_per_class() -> None:
    """The learner role reports snapshot and event bytes of full 384-dim classes."""
    learner = class_memory(3, role="learner")
    replica = class_memory(3, role="replica")
    assert learner["exemplars"] == 64
    assert 64 * 384 * 4 < learner["event_bytes"] < 64 * 384 * 5
    assert learner["snapshot_bytes_per_class"] < 64 * 384 * 5
    assert set(replica) == {"role", "classes", "exemplars", "dim", "rss_per_class_kb"}
