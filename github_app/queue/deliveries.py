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

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol


class DeliveryJournal(Protocol):
    def remembered(self, delivery_id: str, at: float) -> None: ...

    def forgotten(self, delivery_id: str) -> None: ...


class RecentDeliveries:
    """An insertion-ordered set that forgets its oldest ids beyond ``capacity``."""

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
        # OrderedDict, not dict: evicting a dict's first key walks the deleted slots before it,
        # which grew to ~100 us per call once the memory was full.
        self._ids: OrderedDict[str, None] = OrderedDict()

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
            ids.move_to_end(delivery_id)
            return
        ids[delivery_id] = None
        if len(ids) > self._capacity:
            ids.popitem(last=False)

    def forget(self, delivery_id: str) -> None:
        self._ids.pop(delivery_id, None)
        if self._journal is not None:
            self._journal.forgotten(delivery_id)
