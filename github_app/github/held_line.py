"""When the events held for their installation's write turns come back: in line, spaced.

While writers of an installation wait for their turn, the runner holds its
next events in the queue until about when the writers ahead will have gone
(``InstallationPacer.turn_wait``). Held on their own, every event of a burst
gets the same instant: they all come back at once, a few find a turn, the
rest are held again with the same instant, so a burst of N is deferred about
N²/2 times. In line, each held event comes back one write interval after the
one held before it (or at its own wait, if that is later): a burst comes
back at the pace its writes go, about in the order it came, deferred about
once each. An event that comes back while writers still wait is held again,
at the back of the line.

One line per urgency. An event lines up behind the held events as urgent as
it or more (their writes would go first anyway), never behind less urgent
ones: a live event is not held behind a backfill's held events, it takes
their turns. A line whose last instant has passed starts afresh. Nothing is
kept per event: one instant per urgency, forgotten once it has passed.

The line is this process's. With several replicas sharing an installation's
budget in Redis, each replica lines up its own held events and the replicas'
lines come back side by side; their writes still take turns through the
shared store, and an event finding writers waiting then is held again.
"""

from __future__ import annotations


class HeldLine:
    """The last instant given to a held event, per urgency (lower is more urgent)."""

    def __init__(self) -> None:
        self._last: dict[int, float] = {}

    def place(self, urgency: int, until: float, *, interval: float, now: float) -> float:
        """The instant a held event of this urgency comes back: ``until`` (its own wait) or,
        if later, an interval after the last one held as urgent or more."""
        for passed in [level for level, last in self._last.items() if last <= now]:
            del self._last[passed]
        ahead = [last for level, last in self._last.items() if level <= urgency]
        if ahead:
            until = max(until, max(ahead) + interval)
        self._last[urgency] = until
        return until

    def __len__(self) -> int:
        """The urgencies whose line is still waiting to come back."""
        return len(self._last)
