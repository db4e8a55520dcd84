"""Secondary-limit discipline for one principal: a concurrency cap and writes in turn.

GitHub asks integrators to avoid concurrent requests per installation, to
wait at least a second between writes, and documents per-minute and
per-hour allowances (``secondary_limits``). Each installation gets its own
pacer, and so does the app's own JWT principal (token mints), so
installations never wait for each other (Probot paces the whole process at
one write per second).

Writes take turns: one write at a time per principal, each waiting until
its ``RequestBudget`` allows it. When several wait, the most urgent goes
first (``serving``: the priority of the event being processed; a live event
before a backfill), then the oldest. Reads only keep the points allowance.
After a secondary limit the principal's write allowances are lowered for
the rest of the hour (``slow_down``).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

import anyio

from github_app.github.secondary_limits import (
    GITHUB_LIMITS,
    READ_METHODS,
    BudgetStats,
    RequestBudget,
    SecondaryLimits,
)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_CONCURRENCY = 8  # GitHub refuses beyond about 100; a handful is plenty per installation
DEFAULT_WRITE_INTERVAL = 1.0  # GitHub: wait at least one second between writes
LIVE = 0  # urgency of work outside any queued event (lower is more urgent)
BACKGROUND = 100  # upkeep (token renewal): after every queued event's writes

# The urgency of the work running in this task: the runner sets the queued event's priority.
URGENCY: ContextVar[int] = ContextVar("urgency", default=LIVE)


@contextmanager
def serving(urgency: int) -> Iterator[None]:
    """While the block runs, this task's writes wait behind those of more urgent work."""
    token = URGENCY.set(urgency)
    try:
        yield
    finally:
        URGENCY.reset(token)


class InstallationPacer:
    """Concurrency slots, the budget and the write turns of one principal."""

    def __init__(
        self,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        write_interval: float = DEFAULT_WRITE_INTERVAL,
        limits: SecondaryLimits | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        """``clock`` and ``sleep`` are the monotonic clock and the wait that go with it
        (a test passes a fake pair and sees each wait without waiting)."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._slots = anyio.Semaphore(concurrency)
        base = limits if limits is not None else GITHUB_LIMITS
        self.budget = RequestBudget(dataclasses.replace(base, write_interval=write_interval))
        self._clock = clock
        self._sleep = sleep
        self._order = itertools.count()
        self._waiting: list[tuple[int, int]] = []  # (urgency, arrival) heap of writers
        self._changed = anyio.Event()
        self._writing = False
        self.slowed = 0

    @property
    def waiting_writers(self) -> int:
        return len(self._waiting)

    def writers_ahead_of(self, urgency: int) -> int:
        """Writers waiting that would go before (or with) one of this urgency."""
        return sum(1 for ticket in self._waiting if ticket[0] <= urgency)

    @property
    def interval(self) -> float:
        return self.budget.interval(self._clock())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Held while a request is on the wire; gives the seconds waited for it."""
        asked = self._clock()
        async with self._slots:
            yield self._clock() - asked

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def read_turn(self, method: str = "GET") -> float:
        """Wait until a read keeps the points allowance; returns the seconds waited."""
        now = self._clock()
        wait = self.budget.delay(now, method)
        if wait > 0:
            await self._sleep(wait)
        self.budget.record(max(self._clock(), now + wait), method)
        return wait

    @asynccontextmanager
    async def write(self, method: str, *, content: bool = False) -> AsyncIterator[float]:
        """Held while a write is on the wire: it waits for its turn, the next for its end.

        Yields the seconds it waited. The most urgent waiting writer goes first.
        """
        ticket = (URGENCY.get(), next(self._order))
        heapq.heappush(self._waiting, ticket)
        self._wake()
        asked = self._clock()
        waited = False
        booked: float | None = None  # the instant the budget allowed, slept until
        try:
            while True:
                changed = self._changed
                if self._waiting[0] == ticket and not self._writing:
                    now = self._clock()
                    wait = self.budget.delay(now, method, content=content)
                    if wait <= 0:
                        break
                    booked = now + wait
                    waited = True
                    await self._sleep(wait)
                    if self._waiting[0] == ticket and not self._writing:
                        break  # still first in line after its wait: its turn
                    booked = None  # a more urgent writer came first: ask the budget again
                else:
                    await changed.wait()
                    waited = True
        except BaseException:
            self._waiting.remove(ticket)
            heapq.heapify(self._waiting)
            self._wake()
            raise
        heapq.heappop(self._waiting)
        self._writing = True
        sent = max(self._clock(), booked or 0.0)
        self.budget.record(sent, method, content=content)
        try:
            yield sent - asked if waited else 0.0
        finally:
            self._writing = False
            self._wake()

    async def write_turn(self, method: str = "POST", *, content: bool = False) -> float:
        """Wait for a write's turn without holding it (the write is as good as sent)."""
        async with self.write(method, content=content) as waited:
            return waited

    def backlog(self) -> float:
        """Seconds until a write asked for now would be sent, roughly: the queue times the pace."""
        now = self._clock()
        ahead = len(self._waiting) + (1 if self._writing else 0)
        return max(0.0, self.budget.delay(now, "POST")) + ahead * self.budget.interval(now)

    def slow_down(self) -> None:
        """A secondary limit was hit despite the pacing: a lower pace for the rest of the hour."""
        self.budget.lower(self._clock())
        self.slowed += 1

    def stats(self) -> BudgetStats:
        return self.budget.stats(self._clock())


def is_read(method: str) -> bool:
    return method in READ_METHODS
