"""The chaos suite's actors: the deployed stream worker and learner, plus fault injection.

They differ from the deployed actors in two ways only: their probe is a
:class:`~streamlabel.chaos.faults.Faults` (armed through Ray with
``arm_fault``), and the worker's embedder raises on marked texts when
``model_fail`` is armed. The harness starts them with
``Runtime(settings, actors=CHAOS_ACTORS)``; nothing deployed imports this.
"""

from __future__ import annotations

from typing import Any

from streamlabel.chaos.faults import Faults, FaultTarget, FaultyEmbedder
from streamlabel.core.embedder import Embedder
from streamlabel.runtime.supervisor import ActorClasses
from streamlabel.settings.runtime import RuntimeSettings
from streamlabel.workers.checkpoint import snapshot_path
from streamlabel.workers.learner import Learner
from streamlabel.workers.probe import LEARNER_POINTS, WORKER_POINTS
from streamlabel.workers.stream_worker import StreamWorker

__all__ = ["CHAOS_ACTORS", "ChaosLearner", "ChaosStreamWorker"]


class ChaosStreamWorker(StreamWorker, FaultTarget):
    """A stream worker whose step points and model can be made to fail."""

    def __init__(self, settings: RuntimeSettings, worker_id: str, **kwargs: Any) -> None:
        super().__init__(settings, worker_id, **kwargs)
        self.faults = Faults(WORKER_POINTS)
        self.probe = self.faults

    def _instrument(self, embedder: Embedder) -> Embedder:
        return FaultyEmbedder(embedder, self.faults)


class ChaosLearner(Learner, FaultTarget):
    """A learner whose step points can be made to fail; a kill leaves its note
    beside the snapshot."""

    def __init__(self, settings: RuntimeSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.faults = Faults(LEARNER_POINTS, notes_dir=str(snapshot_path(settings).parent))
        self.probe = self.faults


CHAOS_ACTORS = ActorClasses(worker=ChaosStreamWorker, learner=ChaosLearner)
"""What ``Runtime(settings, actors=...)`` starts for the chaos suite."""
