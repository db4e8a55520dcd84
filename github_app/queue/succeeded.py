"""Which processors already succeeded on a delivery: the one memory of it.

A retry, a replay after a restart, a re-drive and GitHub's redelivery after
a partial failure all run only the processors that have not succeeded yet,
so no write is made twice. The record is per delivery id (a redelivery keeps
the id) and kept for GitHub's redelivery window; it is dropped as soon as
every processor succeeded (the delivery memory then refuses a redelivery as
a duplicate). A durable backend is told of every change through
``SucceededJournal`` and loads the record back at start-up.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Protocol

REDELIVERY_WINDOW = 3 * 86_400.0  # GitHub keeps deliveries for redelivery 3 days


class SucceededJournal(Protocol):
    def succeeded(self, delivery_id: str, processors: tuple[str, ...], at: float) -> None: ...

    def cleared(self, delivery_id: str) -> None: ...


class SucceededProcessors:
    """delivery id -> names of the processors that succeeded on it, oldest entries first."""

    def __init__(
        self,
        capacity: int = 100_000,
        *,
        window: float = REDELIVERY_WINDOW,
        clock: Callable[[], float] = time.time,
        journal: SucceededJournal | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._window = window
        self._clock = clock
        self._journal = journal
        # a tuple of names stays out of the GC's tracking
        self._entries: OrderedDict[str, tuple[float, tuple[str, ...]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def of(self, delivery_id: str) -> tuple[str, ...]:
        """The processors that already succeeded on this delivery (none when unknown or stale)."""
        entry = self._entries.get(delivery_id)
        if entry is None:
            return ()
        if self._clock() - entry[0] > self._window:
            del self._entries[delivery_id]
            return ()
        return entry[1]

    def add(self, delivery_id: str, processor: str) -> None:
        names = self.of(delivery_id)
        if processor in names:
            return
        self.load(delivery_id, (*names, processor), self._clock())
        if self._journal is not None:
            self._journal.succeeded(delivery_id, self._entries[delivery_id][1], self._clock())

    def clear(self, delivery_id: str) -> None:
        """Every processor succeeded: nothing to remember (a redelivery is a duplicate)."""
        if self._entries.pop(delivery_id, None) is not None and self._journal is not None:
            self._journal.cleared(delivery_id)

    def load(self, delivery_id: str, processors: Iterable[str], at: float) -> None:
        """Remember without telling the journal (start-up loads what it recorded)."""
        entries = self._entries
        entries.pop(delivery_id, None)
        entries[delivery_id] = (at, tuple(processors))
        while len(entries) > self._capacity:
            entries.popitem(last=False)
