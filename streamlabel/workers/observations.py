"""What a stream worker labelled, sent to the learner's drift detectors and item cache.

Best effort over Ray: a bounded number of sends in flight; beyond it a batch
is dropped and counted, so a slow learner never slows the stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamlabel.pipeline.output import Observed

__all__ = ["ObservationSender"]


class ObservationSender:
    """Sends a sample of each labelled batch to the learner actor.

    Args:
        learner: the learner's actor handle (None sends nothing).
        max_inflight: sends not yet received before a batch is dropped.
        sample: share of each batch's items sent.
        seed: seeds the sampling.
    """

    def __init__(self, learner: Any, *, max_inflight: int, sample: float, seed: int) -> None:
        self._learner = learner
        self._max_inflight = max_inflight
        self._sample = sample
        self._rng = np.random.default_rng(seed)
        self._inflight: list[Any] = []

    def retarget(self, learner: Any) -> None:
        """Sends to a (restarted) learner from now on."""
        self._learner = learner
        self._inflight = []

    def send(self, observed: Observed | None) -> int:
        """Sends a sample of ``observed``; returns how many items were dropped (0 when sent)."""
        if self._learner is None or observed is None or not len(observed):
            return 0
        import ray

        if self._inflight:
            _, self._inflight = ray.wait(self._inflight, num_returns=len(self._inflight), timeout=0)
        if len(self._inflight) >= self._max_inflight:
            return len(observed)
        sample = observed.sample(self._sample, self._rng)
        if len(sample):
            self._inflight.append(self._learner.observe.remote(sample))
        return 0
