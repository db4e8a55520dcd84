"""Secondary-limit discipline for one installation: a concurrency cap and spaced writes.

GitHub asks integrators to avoid concurrent requests per installation and to
wait at least a second between content-creating requests. Each installation
gets its own pacer, so installations never wait for each other: the pacing is
per installation, not per process (Probot paces the whole process at one
write per second).

Writes take turns by reservation: each write books the next free instant and
sleeps until it, so a write never waits behind a read. After a secondary
limit the installation's interval doubles (up to a cap) and relaxes back
after a quiet period.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_CONCURRENCY = 8  # GitHub refuses beyond about 100; a handful is plenty per installation
DEFAULT_WRITE_INTERVAL = 1.0  # GitHub: wait at least one second between writes
MAX_WRITE_INTERVAL = 8.0
RELAX_AFTER = 600.0  # back to the base interval after this long without a secondary limit


class InstallationPacer:
    """Concurrency slots and write turns of one installation."""

    def __init__(
        self,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        write_interval: float = DEFAULT_WRITE_INTERVAL,
        max_interval: float = MAX_WRITE_INTERVAL,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        """``clock`` and ``sleep`` are the monotonic clock and the wait that go with it
        (a test passes a fake pair and sees each wait without waiting)."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._slots = anyio.Semaphore(concurrency)
        self._base_interval = write_interval
        self.interval = write_interval
        self._max_interval = max(max_interval, write_interval)
        self._clock = clock
        self._sleep = sleep
        self._next_write = 0.0
        self._slowed_at: float | None = None
        self.waiting_writers = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Held while a request is on the wire; gives the seconds waited for it."""
        asked = self._clock()
        async with self._slots:
            yield self._clock() - asked

    async def write_turn(self) -> float:
        """Wait for this installation's next write turn; returns the seconds waited."""
        now = self._clock()
        self._relax(now)
        at = max(now, self._next_write)
        self._next_write = at + self.interval
        wait = at - now
        if wait > 0:
            self.waiting_writers += 1
            try:
                await self._sleep(wait)
            finally:
                self.waiting_writers -= 1
        return wait

    def backlog(self) -> float:
        """Seconds until a write booked now would be sent."""
        return max(0.0, self._next_write - self._clock())

    def slow_down(self) -> None:
        """A secondary limit was hit despite the pacing: double the interval."""
        self.interval = min(self._max_interval, max(self.interval * 2, 0.5))
        self._slowed_at = self._clock()

    def _relax(self, now: float) -> None:
        if self._slowed_at is not None and now - self._slowed_at > RELAX_AFTER:
            self.interval = self._base_interval
            self._slowed_at = None
