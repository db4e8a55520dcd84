"""Secondary-limit discipline for one principal: a concurrency cap and writes in turn.

GitHub asks integrators to avoid concurrent requests per installation, to
wait at least a second between writes, and documents per-minute and
per-hour allowances (``secondary_limits``). Each installation gets its own
pacer, and so does the app's own JWT principal (token mints), so
installations never wait for each other (Probot paces the whole process at
one write per second).

Writes take turns: one write at a time per principal, each at the instant
its budget booked for it (``pace_store``: in this process, or in Redis,
shared by every replica). When several wait, the most urgent goes first
(``serving``: the priority of the event being processed; a live event before
a backfill), then the oldest: only the first in line books, and an instant
booked belongs to whoever is first in line when it comes, so a live write
arriving meanwhile takes the instant a backfill's write booked. An instant
missed by more than ``LATE_AFTER`` (a busy event loop, a writer cancelled) is
not used: the next one is booked.

The interval counts from the previous write's answer, as GitHub asks (make
writes serially, wait a second between them): GitHub counts a write when it
arrives, and the way there (the event loop, the connection pool, queueing at
GitHub) takes a varying time, so writes sent an interval apart can arrive
closer. The store hears of each answer (``PaceStore.answered``), so the next
write of any replica is booked from it; in one process a write also waits an
interval after the last one's answer. Between replicas, a write booked while
another replica's is on the wire is an interval after that one's booked
instant (less ``LATE_AFTER``) at least. Reads only keep the points allowance.
After a secondary limit the principal's write allowances are lowered for the
rest of the hour (``slow_down``).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import anyio

from github_app.github.held_line import HeldLine
from github_app.github.pace_store import LocalPaceStore, PaceStore
from github_app.github.secondary_limits import (
    GITHUB_LIMITS,
    READ_METHODS,
    BudgetStats,
    SecondaryLimits,
)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_CONCURRENCY = 8  # GitHub refuses beyond about 100; a handful is plenty per installation
DEFAULT_WRITE_INTERVAL = 1.0  # GitHub: wait at least one second between writes
LATE_AFTER = 0.05  # seconds after its instant a booked write may still go
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


@dataclass(frozen=True)
class _Booked:
    """An instant the store booked for this principal's next write, on the pacer's clock."""

    at: float
    content: bool


class InstallationPacer:
    """Concurrency slots and the write turns of one principal; its budget in ``store``."""

    def __init__(
        self,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        write_interval: float = DEFAULT_WRITE_INTERVAL,
        limits: SecondaryLimits | None = None,
        store: PaceStore | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        """``clock`` and ``sleep`` are the monotonic clock and the wait that go with it
        (a test passes a fake pair and sees each wait without waiting). Without a ``store``
        the budget is kept here, from ``limits`` with ``write_interval``."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._slots = anyio.Semaphore(concurrency)
        if store is None:
            base = limits if limits is not None else GITHUB_LIMITS
            store = LocalPaceStore(dataclasses.replace(base, write_interval=write_interval), clock)
        self.store = store
        self._clock = clock
        self._sleep = sleep
        self._order = itertools.count()
        self._waiting: list[tuple[int, int]] = []  # (urgency, arrival) heap of writers
        self._changed = anyio.Event()
        self._busy = False  # a write is on the wire, or the first in line is booking
        self._booked: _Booked | None = None
        self._last_answered: float | None = None
        self._held = HeldLine()  # when the events held for these writers' turns come back
        self.slowed = 0

    @property
    def waiting_writers(self) -> int:
        return len(self._waiting)

    def writers_ahead_of(self, urgency: int) -> int:
        """Writers waiting that would go before (or with) one of this urgency."""
        return sum(1 for ticket in self._waiting if ticket[0] <= urgency)

    @property
    def interval(self) -> float:
        return self.store.interval()

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
        booking = await self.store.book(method)
        if booking.wait > 0:
            await self._sleep(booking.wait)
        return booking.wait

    async def _book(self, method: str, content: bool) -> None:
        """Ask the store for the next instant (others wait meanwhile: one booking at a time)."""
        self._busy = True
        try:
            booking = await self.store.book(method, content=content)
        finally:
            self._busy = False
            self._wake()
        self._booked = _Booked(self._clock() + booking.wait, content)

    def _due(self, booked: _Booked) -> float:
        """When a booked write may go: at its instant, and an interval after this process's
        last write was answered."""
        if self._last_answered is None:
            return booked.at
        return max(booked.at, self._last_answered + self.store.interval())

    @asynccontextmanager
    async def write(self, method: str, *, content: bool = False) -> AsyncIterator[float]:
        """Held while a write is on the wire: it waits for its turn, the next for its answer
        and an interval more.

        Yields the seconds it waited. The most urgent waiting writer goes first. Leaving
        the block is the answer (or the end of trying: a write cut off may have arrived).
        """
        ticket = (URGENCY.get(), next(self._order))
        heapq.heappush(self._waiting, ticket)
        self._wake()
        asked = self._clock()
        waited = False
        missed = False  # a late instant was let go once: the next is taken however late
        slept: _Booked | None = None  # the instant this writer slept until: due now
        try:
            while True:
                changed = self._changed
                if self._waiting[0] != ticket or self._busy:
                    await changed.wait()
                    waited = True
                    continue
                booked = self._booked
                now = self._clock()
                if booked is not None and now - self._due(booked) > LATE_AFTER and not missed:
                    missed = True
                    booked = None
                if booked is None or (content and not booked.content):
                    await self._book(method, content)
                    continue  # first in line may have changed during the booking
                due = self._due(booked)
                if due > now and booked is not slept:
                    waited = True
                    slept = booked
                    await self._sleep(due - now)
                    continue  # whoever is first in line when it comes takes it
                break
        except BaseException:
            self._waiting.remove(ticket)
            heapq.heapify(self._waiting)
            self._wake()
            raise
        heapq.heappop(self._waiting)
        self._booked = None
        self._busy = True
        sent = max(self._clock(), self._due(booked))
        try:
            yield sent - asked if waited else 0.0
        finally:
            self._last_answered = self._clock()
            try:
                with anyio.CancelScope(shield=True):  # the next writer must hear of it
                    await self.store.answered()
            finally:
                self._busy = False
                self._wake()

    async def write_turn(self, method: str = "POST", *, content: bool = False) -> float:
        """Wait for a write's turn without holding it (the write is as good as sent)."""
        async with self.write(method, content=content) as waited:
            return waited

    def turn_wait(self, urgency: int, most_waiting: int) -> float | None:
        """Seconds new work of this urgency should wait for the writers ahead of it to have
        their turns, once ``most_waiting`` or more of them wait; ``None``: go on.

        At least an interval (until roughly the last but one of them went). Writers wait in
        line even at a zero interval (one write on the wire at a time), but then their turns
        come as each answer does, with nothing to wait for unless an allowance is spent
        (``backlog``): no wait then, rather than one of 0 s that the queue would hand back
        at once, and again, for as long as the line lasts.
        """
        if self.writers_ahead_of(urgency) < most_waiting:
            return None
        interval = self.interval
        wait = max(interval, self.backlog() - interval)
        return wait if wait > 0 else None

    def hold(self, urgency: int, most_waiting: int) -> float | None:
        """Until when new work of this urgency is held (on this pacer's clock) for the writers
        ahead of it (``turn_wait``), in line behind the work held before it (``held_line``),
        so that held work comes back at the pace of the writes; ``None``: go on."""
        wait = self.turn_wait(urgency, most_waiting)
        if wait is None:
            return None
        now = self._clock()
        return self._held.place(urgency, now + wait, interval=self.interval, now=now)

    def backlog(self) -> float:
        """Seconds until a write asked for now would be sent, roughly: the queue times the pace
        (a booked instant is in the store's delay already)."""
        ahead = len(self._waiting) + (1 if self._busy else 0) - (1 if self._booked else 0)
        return self.store.write_delay() + max(0, ahead) * self.store.interval()

    async def slow_down(self) -> None:
        """A secondary limit was hit despite the pacing: a lower pace for the rest of the hour."""
        await self.store.lower()
        self.slowed += 1

    def stats(self) -> BudgetStats:
        return self.store.stats()


def is_read(method: str) -> bool:
    return method in READ_METHODS
