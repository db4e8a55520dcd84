"""Where one principal's secondary-limit budget is kept: in this process, or shared.

The pacer (``pacing``) decides who of this process's requests goes next; the
store decides when: ``book`` answers how long a request of some kind must
wait to keep every allowance (``secondary_limits``) and counts it at that
instant, in one step, so that nobody can take the same instant between the
question and the booking. ``LocalPaceStore`` keeps the budget in this process
(one replica, the memory and sqlite backends); ``shared_limits.RedisPaceStore``
keeps it in Redis for every replica of a scaled-out app, so that N replicas
together write to an installation like one process.

The same store carries the installation's rate-limit verdicts that other
replicas must honour (``share``): locally there is nothing to share, the
ledger (``ratelimit``) is the whole truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from github_app.github.secondary_limits import BudgetStats, RequestBudget, SecondaryLimits

Clock = Callable[[], float]


@dataclass(frozen=True)
class Booking:
    """A request's instant: ``wait`` seconds from the answer; ``at`` on the store's own clock
    (this process's monotonic clock, or Redis's: comparable only within one store)."""

    wait: float
    at: float


class PaceStore(Protocol):
    """One principal's secondary-limit budget, as the pacer and the transport use it."""

    async def book(self, method: str, *, content: bool = False) -> Booking:
        """Book the first instant a request of this kind keeps every allowance."""
        ...

    async def answered(self) -> None:
        """A write of this principal was answered now: the next write (of any replica) is
        booked an interval after this instant, not after the last one's booked instant."""
        ...

    async def lower(self) -> None:
        """GitHub answered with a secondary limit: slower writes for the rest of the hour."""
        ...

    async def share(self) -> None:
        """Publish this process's view of the installation's limits and take in the others'."""
        ...

    def interval(self) -> float:
        """Seconds between two writes now (as last known)."""
        ...

    def write_delay(self) -> float:
        """Seconds until a write asked for now could go (as last known)."""
        ...

    def stats(self) -> BudgetStats: ...


class LocalPaceStore:
    """The budget in this process (``RequestBudget``) on its monotonic ``clock``."""

    def __init__(self, limits: SecondaryLimits, clock: Clock) -> None:
        self.budget = RequestBudget(limits)
        self._clock = clock

    async def book(self, method: str, *, content: bool = False) -> Booking:
        return self.book_now(method, content=content)

    def book_now(self, method: str, *, content: bool = False) -> Booking:
        now = self._clock()
        wait = self.budget.book(now, method, content=content)
        return Booking(wait, now + wait)

    async def answered(self) -> None:
        self.budget.answered(self._clock())

    async def lower(self) -> None:
        self.budget.lower(self._clock())

    async def share(self) -> None:
        """Nothing to share: the ledger of this process is the whole truth."""

    def interval(self) -> float:
        return self.budget.interval(self._clock())

    def write_delay(self) -> float:
        return max(0.0, self.budget.delay(self._clock(), "POST"))

    def stats(self) -> BudgetStats:
        return self.budget.stats(self._clock())
