"""Bounded memory of recent delivery ids, so a redelivered event is not queued twice.

Only deliveries that were admitted are remembered; one that was refused, or
that failed in processing, is forgotten so GitHub's redelivery (which keeps
the id) is accepted again.
"""

from __future__ import annotations


class RecentDeliveries:
    """An insertion-ordered set that forgets its oldest ids beyond ``capacity``."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._ids: dict[str, None] = {}

    def __contains__(self, delivery_id: object) -> bool:
        return delivery_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def remember(self, delivery_id: str) -> None:
        ids = self._ids
        ids.pop(delivery_id, None)
        ids[delivery_id] = None
        if len(ids) > self._capacity:
            del ids[next(iter(ids))]

    def forget(self, delivery_id: str) -> None:
        self._ids.pop(delivery_id, None)
