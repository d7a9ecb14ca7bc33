"""Drift incidents: the signals of one shift grouped into one incident, with what moved.

One shift trips several detectors, some of them more than once: the learner
sees the stream workers' partitions interleaved, each at its own offset, so
the unknown rate of what it reads can rise, fall back while a partition still
before the shift is read, and rise again. :class:`Incidents` groups the
signals: the first opens an incident, every signal within ``window`` items of
the incident's latest one joins it, and an incident closes once more than
``window`` items pass without a signal (the next signal opens a new one).

Positions are the drift detectors' item counts (``DriftSignal.at_item``), so
the grouping depends on the stream only, never on wall-clock time or on how
the stream was cut into batches. A restarted learner counts from 0 again and
opens a new incident (its ids differ by incarnation: see
:func:`.records.drift_alert`).

Each update also says what moved: the classes whose share of the labelled
items changed most between the items before the shift and the latest items
(:class:`RecentRows` keeps those), and a few texts from either side.

Example:
    >>> from streamlabel.core.drift import DriftSignal
    >>> def fired(kind, at):
    ...     return DriftSignal(kind, 40.0, 30.0, None, 100, 200, at, "warning", (), kind)
    >>> incidents = Incidents(window=500, history=RecentRows())
    >>> [(u.opened.at_item, u.update) for u in (
    ...     incidents.add(fired("unknown_rate", 900), now=0.0),
    ...     incidents.add(fired("embedding", 1200), now=1.0),
    ...     incidents.add(fired("unknown_rate", 4000), now=2.0),
    ... )]
    [(900, 0), (900, 1), (4000, 0)]
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from streamlabel.core.drift import DriftSignal, Severity
from streamlabel.schemas import DriftEvidence, ShareChange

__all__ = [
    "EXAMPLE_CHARS",
    "MAX_EVIDENCE",
    "SHARE_WINDOW",
    "IncidentUpdate",
    "Incidents",
    "RecentRows",
    "share_changes",
]

SHARE_WINDOW = 500
"""Items on each side of a shift that its share changes and examples are drawn from:
"before" is the ``SHARE_WINDOW`` items ending ``SHARE_WINDOW`` items ahead of the
signal that opened the incident (detectors fire a few hundred items after a shift),
"after" the latest ``SHARE_WINDOW`` items of each update, from the opening signal's
last ``SHARE_WINDOW`` on."""

MAX_EVIDENCE = 32
"""Signals an incident's record carries at most: its first and the latest ones."""

TOP_SHARES = 5
"""Share changes an incident reports (the largest moves)."""

EXAMPLES = 3
"""Example texts per side of a shift."""

EXAMPLE_CHARS = 300
"""Example texts are cut to this many characters (and kept so in :class:`RecentRows`)."""

_RANK: dict[Severity, int] = {"info": 0, "warning": 1, "critical": 2}

Row = tuple[str, str | None]
"""One item the detectors saw: its label (a class id or ``unknown``) and its text."""


class RecentRows:
    """The latest items the drift detectors saw, by position (label and text).

    Args:
        capacity: items kept; older ones are forgotten.
    """

    def __init__(self, capacity: int = 4 * SHARE_WINDOW) -> None:
        self._rows: deque[Row] = deque(maxlen=capacity)
        self.seen = 0

    def extend(self, labels: Iterable[str], texts: Iterable[str | None]) -> None:
        """Appends the next items, in stream order (texts cut to :data:`EXAMPLE_CHARS`)."""
        for label, text in zip(labels, texts, strict=True):
            self._rows.append((label, None if text is None else text[:EXAMPLE_CHARS]))
            self.seen += 1

    def span(self, start: int, stop: int) -> list[Row]:
        """The items at positions ``start`` to ``stop - 1`` that are still kept."""
        first = self.seen - len(self._rows)
        lo, hi = max(start, first) - first, min(stop, self.seen) - first
        return [self._rows[i] for i in range(lo, hi)] if lo < hi else []


def share_changes(before: Sequence[Row], after: Sequence[Row]) -> tuple[ShareChange, ...]:
    """The classes (``unknown`` included) whose share moved most from ``before`` to
    ``after``, largest move first; none when either side is empty.

    Example:
        >>> before = [("a", None)] * 9 + [("unknown", None)]
        >>> after = [("a", None)] * 5 + [("unknown", None)] * 5
        >>> [(c.class_id, c.before, c.after) for c in share_changes(before, after)]
        [('a', 0.9, 0.5), ('unknown', 0.1, 0.5)]
    """
    if not before or not after:
        return ()
    b, a = Counter(r[0] for r in before), Counter(r[0] for r in after)
    shares = {c: (b[c] / len(before), a[c] / len(after)) for c in b.keys() | a.keys()}
    moved = sorted((c for c, (x, y) in shares.items() if x != y),
                   key=lambda c: (-abs(shares[c][1] - shares[c][0]), c))  # fmt: skip
    return tuple(
        ShareChange(class_id=c, before=shares[c][0], after=shares[c][1]) for c in moved[:TOP_SHARES]
    )


def _examples(rows: Sequence[Row], prefer: Sequence[str]) -> tuple[str, ...]:
    """Up to :data:`EXAMPLES` distinct texts of ``rows``, in the order of ``rows``: of the
    class ``prefer[0]`` first, then ``prefer[1]``..., then of any class."""
    picked: dict[str, None] = {}
    for cls in [*prefer, None]:
        for label, text in rows:
            if len(picked) >= EXAMPLES:
                return tuple(picked)
            if text and cls in (None, label):
                picked[text] = None
    return tuple(picked)


def evidence_of(signal: DriftSignal, now: float) -> DriftEvidence:
    """A detector's signal as evidence of an incident."""
    return DriftEvidence(
        kind=signal.kind,
        statistic=float(signal.statistic),
        threshold=float(signal.threshold),
        p_value=signal.p_value,
        at_item=signal.at_item,
        detail=signal.detail,
        emitted_at=now,
    )


@dataclass(frozen=True)
class IncidentUpdate:
    """An incident as one of its signals left it: what its alert record carries.

    Attributes:
        opened: the signal that opened it (its id derives from it).
        update: 0 for that first signal, + 1 per later one.
        evidence: the signals so far, oldest first (the first and the latest
            :data:`MAX_EVIDENCE` - 1 when there were more).
        severity: the highest of its signals'.
        affected_classes: every class its signals named, in the order named.
        share_changes: the classes whose share moved most, before the shift vs the
            latest items (see :data:`SHARE_WINDOW`).
        examples_before: texts from before the shift: of the classes that lost share
            first, the oldest first.
        examples_after: texts of the latest items: of the classes that gained share
            first, the latest first.
        detail: one readable paragraph: what fired, what moved, the latest signal.
    """

    opened: DriftEvidence
    update: int
    evidence: tuple[DriftEvidence, ...]
    severity: Severity
    affected_classes: tuple[str, ...]
    share_changes: tuple[ShareChange, ...]
    examples_before: tuple[str, ...]
    examples_after: tuple[str, ...]
    detail: str


@dataclass
class _Open:
    """The open incident's state."""

    first: DriftEvidence
    last_at: int
    before: list[Row]
    after_from: int
    signals: int = 0
    evidence: list[DriftEvidence] = field(default_factory=list)
    severity: Severity = "info"
    affected: dict[str, None] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)


class Incidents:
    """Groups drift signals into incidents (see the module docstring).

    Args:
        window: items without a signal that close an incident.
        history: the items the detectors saw, fed by the caller before each batch's
            signals (the two sides of a shift are read from it).
    """

    def __init__(self, *, window: int, history: RecentRows) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1 item, got {window}")
        self.window = window
        self.history = history
        self._open: _Open | None = None

    def add(self, signal: DriftSignal, *, now: float) -> IncidentUpdate:
        """Adds a signal (signals come in stream order): it opens an incident or updates
        the open one. Returns the incident as it stands now."""
        ev = evidence_of(signal, now)
        inc = self._open
        if inc is None or signal.at_item - inc.last_at > self.window:
            # the shift is (most likely) among the last SHARE_WINDOW items: before it
            end = signal.at_item + 1 - SHARE_WINDOW
            before = self.history.span(end - SHARE_WINDOW, end)
            inc = _Open(first=ev, last_at=signal.at_item, before=before, after_from=end)
            self._open = inc
        inc.signals += 1
        inc.last_at = signal.at_item
        inc.evidence.append(ev)
        if len(inc.evidence) > MAX_EVIDENCE:
            del inc.evidence[1]
        if _RANK[signal.severity] > _RANK[inc.severity]:
            inc.severity = signal.severity
        inc.affected.update(dict.fromkeys(signal.affected_classes))
        inc.kinds[signal.kind] += 1
        after = self.history.span(max(signal.at_item + 1 - SHARE_WINDOW, inc.after_from),
                                  signal.at_item + 1)  # fmt: skip
        moved = share_changes(inc.before, after)
        # the items furthest from the shift first: the oldest before it, the latest after
        before_ex = _examples(inc.before, [m.class_id for m in moved if m.before > m.after])
        after_ex = _examples(after[::-1], [m.class_id for m in moved if m.after > m.before])
        return IncidentUpdate(
            opened=inc.first,
            update=inc.signals - 1,
            evidence=tuple(inc.evidence),
            severity=inc.severity,
            affected_classes=tuple(inc.affected),
            share_changes=moved,
            examples_before=before_ex,
            examples_after=after_ex,
            detail=_detail(inc, moved, signal),
        )


def _detail(inc: _Open, moved: tuple[ShareChange, ...], latest: DriftSignal) -> str:
    kinds = ", ".join(k if n == 1 else f"{k} ×{n}" for k, n in inc.kinds.items())
    head = (
        f"Drift incident since item {inc.first.at_item}: {inc.signals} signal"
        f"{'s' if inc.signals > 1 else ''} ({kinds})."
    )
    if moved:
        shares = ", ".join(f"{m.class_id} {m.before:.0%} → {m.after:.0%}" for m in moved)
        head += f" Largest share changes: {shares}."
    return f"{head} Latest: {latest.detail}"
