"""A discovery run over frozen copies, so it can run beside the Curator."""

from __future__ import annotations

from dataclasses import dataclass

from streamlabel.core.buffer import UnknownBuffer
from streamlabel.core.discovery import Discoverer, DiscoveryReport
from streamlabel.core.store import PrototypeStore

__all__ = ["DiscoveryJob"]


@dataclass
class DiscoveryJob:
    """One discovery run over frozen copies of the buffer, the store and the discoverer.

    :meth:`run` touches nothing the Curator uses, so it can run in a background
    thread while the Curator goes on; then hand the job to
    :meth:`Curator.finish_discovery` on the Curator's own thread.
    """

    buffer: UnknownBuffer
    store: PrototypeStore
    discoverer: Discoverer
    report: DiscoveryReport | None = None

    def run(self) -> DiscoveryReport:
        """Clusters the copied buffer against the copied store (keeps the report)."""
        self.report = self.discoverer.run(self.buffer, self.store)
        return self.report
