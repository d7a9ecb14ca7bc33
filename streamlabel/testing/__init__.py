"""In-package fakes for tests (see bytewax's ``testing`` module for the idea).

Unit tests use these instead of the real model and broker; integration tests
use the real ones. Production code never imports this package (import-linter).

* :mod:`~streamlabel.testing.fakes` — a settable clock, a fast deterministic
  embedder, an in-memory source and sink (re-exported here);
* :mod:`~streamlabel.testing.kafka` — a consumer, a publisher, a changelog
  reader, a producer and an admin client in memory, implementing the protocols
  of :mod:`streamlabel.kafka.protocols` (imported on its own: it loads kafka-python).
"""

from streamlabel.testing.fakes import HashEmbedder, ManualClock, MemorySink, MemorySource
from streamlabel.waiting import wait_until

__all__ = ["HashEmbedder", "ManualClock", "MemorySink", "MemorySource", "wait_until"]
