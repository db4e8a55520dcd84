"""Bounded memory of recent delivery ids, so a redelivered event is not queued twice.

Only deliveries that were admitted are remembered; one that was refused, or
that failed in processing, is forgotten so GitHub's redelivery (which keeps
the id) is accepted again. The queue is the one owner that changes it
(``MemoryQueue``: on admission, re-drive, dead letter and a failed ``done``);
the intake only asks the queue (``knows``). A durable backend is told of
every change through ``DeliveryJournal`` and loads the ids back at start-up,
so a redelivery after a restart is still recognised.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Protocol

EVICT_SHARE = 64  # beyond capacity, 1/64 of the oldest ids are forgotten at once


class DeliveryJournal(Protocol):
    def remembered(self, delivery_id: str, at: float) -> None: ...

    def forgotten(self, delivery_id: str) -> None: ...


class RecentDeliveries:
    """An insertion-ordered set that forgets its oldest ids beyond ``capacity``.

    Exactly the oldest one below 128 ids; above, the oldest 1/64 at once (``EVICT_SHARE``),
    so it holds between 98.5 % and all of ``capacity``.
    """

    def __init__(
        self,
        capacity: int = 100_000,
        *,
        journal: DeliveryJournal | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._journal = journal
        self._clock = clock
        # A plain dict (insertion-ordered) rather than an OrderedDict, whose linked list costs
        # about 35 bytes more per id. Finding a dict's first key walks the deleted slots in
        # front of it, which grow with every eviction until the dict is resized; so a large
        # memory forgets its oldest ids a batch at a time (1/64 of it), one walk per batch.
        self._ids: dict[str, None] = {}
        self._evict = max(1, capacity // EVICT_SHARE)

    def __contains__(self, delivery_id: object) -> bool:
        return delivery_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def remember(self, delivery_id: str) -> None:
        self.load(delivery_id)
        if self._journal is not None:
            self._journal.remembered(delivery_id, self._clock())

    def load(self, delivery_id: str, *, seen: bool = True) -> None:
        """Remember (or forget) without telling the journal: start-up loads what it recorded."""
        ids = self._ids
        if not seen:
            ids.pop(delivery_id, None)
            return
        if delivery_id in ids:
            del ids[delivery_id]  # remembered again: it becomes the newest
        ids[delivery_id] = None
        if len(ids) > self._capacity:
            for oldest in list(itertools.islice(ids, self._evict)):
                del ids[oldest]

    def forget(self, delivery_id: str) -> None:
        self._ids.pop(delivery_id, None)
        if self._journal is not None:
            self._journal.forgotten(delivery_id)
