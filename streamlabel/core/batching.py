"""Adaptive batch size: as large as the latency target allows.

Larger polls embed faster per item (the model sorts a poll's texts by length,
so its batches carry less padding, and the per-batch overheads are shared),
but every item of a batch waits for the whole batch. :class:`BatchSizer`
keeps a running estimate of the seconds one item costs (an exponentially
weighted mean over batches, weighted by their sizes) and sizes the next poll so
that one batch takes about ``target_s``, within ``[min_size, max_size]``. It
moves by at most a factor of 2 per batch, so one odd batch (a cold cache, a
neighbour's burst on a shared core) does not swing it.

Example:
    >>> sizer = BatchSizer(target_s=1.0, min_size=8, max_size=512, initial=256)
    >>> sizer.size
    256
    >>> sizer.observe(256, 4.0)  # 15.6 ms per item: 64 fit in a second, halving at most
    128
    >>> for _ in range(5):
    ...     _ = sizer.observe(sizer.size, sizer.size * 0.015625)
    >>> sizer.size
    64
"""

from __future__ import annotations

__all__ = ["BatchSizer"]


class BatchSizer:
    """Sizes polls to a latency target from the measured cost per item.

    Args:
        target_s: seconds one batch should take (embedding and classifying it).
        min_size: the smallest poll (a floor for throughput).
        max_size: the largest poll.
        initial: the first poll's size (clipped to the bounds).
        smoothing: weight of the newest batch in the running cost per item.
    """

    def __init__(
        self,
        *,
        target_s: float,
        min_size: int,
        max_size: int,
        initial: int | None = None,
        smoothing: float = 0.3,
    ) -> None:
        if target_s <= 0:
            raise ValueError("target_s must be positive")
        if not 1 <= min_size <= max_size:
            raise ValueError("need 1 <= min_size <= max_size")
        if not 0 < smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")
        self.target_s = target_s
        self.min_size = min_size
        self.max_size = max_size
        self._smoothing = smoothing
        self._per_item_s: float | None = None
        self.size = self._clip(initial if initial is not None else max_size)

    @property
    def per_item_s(self) -> float | None:
        """The running estimate of one item's seconds (None before the first batch)."""
        return self._per_item_s

    def observe(self, items: int, seconds: float) -> int:
        """Takes in one batch's size and duration; returns the next poll's size.

        Batches of fewer than 8 items (a trickle, where fixed per-batch costs
        dominate) inform the estimate less: their weight scales with their size.
        """
        if items <= 0 or seconds <= 0:
            return self.size
        cost = seconds / items
        weight = self._smoothing * min(1.0, items / 8)
        if self._per_item_s is None:
            self._per_item_s = cost
        else:
            self._per_item_s += weight * (cost - self._per_item_s)
        wanted = round(self.target_s / self._per_item_s)
        self.size = self._clip(max(self.size // 2, min(self.size * 2, wanted)))
        return self.size

    def _clip(self, n: int) -> int:
        return max(self.min_size, min(self.max_size, n))
