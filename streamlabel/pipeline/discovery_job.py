"""A discovery run over frozen copies, so it can run beside the Curator; adopting
its findings."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from streamlabel.core.buffer import UnknownBuffer
from streamlabel.core.discovery import Discoverer, DiscoveryReport, adopt
from streamlabel.core.store import PrototypeStore
from streamlabel.errors import StoreError
from streamlabel.pipeline.output import EngineOutput
from streamlabel.pipeline.relabel import Reviser

__all__ = ["DiscoveryJob", "adopt_report"]

log = structlog.get_logger(__name__)


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


def adopt_report(
    report: DiscoveryReport, store: PrototypeStore, buffer: UnknownBuffer, reviser: Reviser
) -> EngineOutput:
    """Adopts a run's findings into ``store`` and revises the labels of the items they
    explain (buffered members, settled unknowns, recent items a new class wins)."""
    out = EngineOutput(discoveries=[report])
    log.debug(
        "discovery_run", run=report.run, clusters=report.clusters,
        accepted=len(report.findings), rejected=report.rejected, buffered=len(buffer),
    )  # fmt: skip
    assigned: dict[str, str] = {}
    adopted: set[str] = set()
    for finding in report.findings:
        try:  # the store may have changed since the run's copy was taken
            out.class_events.append(adopt(store, finding))
        except StoreError as exc:
            log.warning("discovery_finding_rejected", class_id=finding.class_id, error=str(exc))
            continue
        adopted.add(finding.class_id)
        assigned.update(dict.fromkeys(finding.item_ids, finding.class_id))
    settled: set[str] = set()
    for item_id, class_id in report.settled.items():
        target = store.resolve(class_id)  # it may have changed since the run
        if target is not None and item_id not in assigned:
            assigned[item_id] = target
            settled.add(item_id)
    if assigned:
        out.labels.extend(reviser.buffered(buffer, assigned, settled))
    if adopted:
        out.labels.extend(reviser.recent(adopted))
    return out
