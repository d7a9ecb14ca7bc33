"""Lag-driven scaling of the stream workers (``scaling.enabled``).

The supervisor reads the group's lag every few seconds and lets
:class:`~streamlabel.core.autoscale.Autoscaler` decide how many workers to run;
this module applies the decision to a :class:`~streamlabel.runtime.supervisor.Runtime`:
new workers start in the background (on Kubernetes a new actor may wait for
KubeRay's autoscaler to add a pod), surplus ones stop gracefully (finish the
batch, commit, leave the group), newest first.

Why here and not KEDA: KEDA scales objects with a ``/scale`` subresource, which
a RayCluster does not have, and pods without actors would sit idle; the actor
count is the supervisor's to set, and the pods follow it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog

from streamlabel.core.autoscale import Autoscaler

if TYPE_CHECKING:
    from streamlabel.runtime.supervisor import Runtime

__all__ = ["LagScaler"]

log = structlog.get_logger(__name__)


class LagScaler:
    """Applies the autoscaler's decisions to a runtime.

    ``max_workers`` defaults to ``kafka.partitions``: a worker without a
    partition would only wait.
    """

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.policy = settings.scaling.to_policy(settings.kafka.partitions)
        self._autoscaler = Autoscaler(self.policy)
        self._runtime = runtime
        self.events = 0

    @property
    def desired(self) -> int:
        return self._autoscaler.desired

    def step(self, lag: int, now: float | None = None) -> int:
        """One lag reading; starts or stops workers as decided. Returns the target count."""
        runtime = self._runtime
        current = runtime.worker_count()
        if runtime.pending:  # a worker still starting: its effect on the lag is not known yet
            return current
        want = self._autoscaler.decide(time.monotonic() if now is None else now, lag, current)
        if want == current:
            return want
        log.info("autoscale", lag=lag, workers=current, to=want)
        self.events += 1
        for _ in range(want - current):
            runtime.start_worker()
        for _ in range(current - want):
            runtime.remove_worker()
        return want
