"""The dead-letter queue: events the app gave up on, kept to be inspected, re-driven or purged.

An event lands here when its retries are exhausted, when it expired before it
reached the front of the queue, or when its installation is gone. Nothing is
dropped silently: the DLQ is bounded, and when it is full the oldest entry is
dropped with a counter and a log line naming the delivery, so the operator can
still redeliver it from GitHub.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from github_app.queue.event import QueuedEvent

log = logging.getLogger(__name__)

EXHAUSTED = "exhausted"
EXPIRED = "expired"
INSTALLATION_GONE = "installation_gone"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One given-up event: what it was, why it was given up, and the event itself for re-drive.

    ``received_at`` and ``dead_lettered_at`` are wall-clock seconds (for people);
    ``item`` keeps the compressed payload so a re-drive loses nothing.
    """

    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    repository: str | None
    issue_number: int | None
    priority: str
    attempts: int
    reason: str
    last_error: str | None
    received_at: float
    dead_lettered_at: float
    item: QueuedEvent = field(repr=False, compare=False)

    def summary(self) -> dict[str, object]:
        """The entry as plain data (the admin endpoints render this)."""
        return {
            "delivery_id": self.delivery_id,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository": self.repository,
            "issue_number": self.issue_number,
            "priority": self.priority,
            "attempts": self.attempts,
            "reason": self.reason,
            "last_error": self.last_error,
            "received_at": self.received_at,
            "dead_lettered_at": self.dead_lettered_at,
        }


@dataclass(frozen=True)
class DeadLetterStats:
    depth: int
    capacity: int
    added_by_reason: dict[str, int]
    dropped: int
    redriven: int
    purged: int
    superseded: int  # taken out because GitHub redelivered the delivery (queued anew)


# Entries kept before the oldest is dropped (the DEAD_LETTER_MAX setting's default).
DEFAULT_DEAD_LETTER_CAPACITY = 10_000


class DeadLetterQueue:
    """Bounded, oldest first, keyed by delivery id (a delivery dead-lettered twice is kept once)."""

    def __init__(
        self,
        capacity: int = DEFAULT_DEAD_LETTER_CAPACITY,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1:
            raise ValueError("dead-letter capacity must be positive")
        self._capacity = capacity
        self._clock = clock
        self._entries: OrderedDict[str, DeadLetter] = OrderedDict()
        self._added: Counter[str] = Counter()
        self._dropped = 0
        self._redriven = 0
        self._purged = 0
        self._superseded = 0
        self._overflow: list[DeadLetter] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, delivery_id: object) -> bool:
        return delivery_id in self._entries

    def get(self, delivery_id: str) -> DeadLetter | None:
        return self._entries.get(delivery_id)

    def add(
        self, item: QueuedEvent, reason: str, error: str | None, *, at: float | None = None
    ) -> DeadLetter:
        """Keep ``item`` (``at``: when it was given up, if not now); the oldest goes when full."""
        envelope = item.envelope
        entry = DeadLetter(
            delivery_id=envelope.delivery_id,
            event=envelope.event,
            action=envelope.action,
            installation_id=envelope.installation_id,
            repository=envelope.repository,
            issue_number=envelope.issue_number,
            priority=item.priority.name,
            attempts=item.attempts,
            reason=reason,
            last_error=error,
            received_at=envelope.received_at,
            dead_lettered_at=self._clock() if at is None else at,
            item=item,
        )
        self._entries.pop(entry.delivery_id, None)
        self._entries[entry.delivery_id] = entry
        self._added[reason] += 1
        while len(self._entries) > self._capacity:
            _, dropped = self._entries.popitem(last=False)
            self._dropped += 1
            self._overflow.append(dropped)
            log.error(
                "dead-letter queue full (%d): dropped delivery %s (%s, %s); "
                "redeliver it from GitHub if it still matters",
                self._capacity,
                dropped.delivery_id,
                dropped.event,
                dropped.reason,
            )
        return entry

    def overflow(self) -> list[DeadLetter]:
        """The entries dropped for room since the last call (a durable backend deletes them)."""
        dropped, self._overflow = self._overflow, []
        return dropped

    def entries(self, *, limit: int | None = None, reason: str | None = None) -> list[DeadLetter]:
        """Entries oldest first, optionally only those with ``reason``."""
        found = [e for e in self._entries.values() if reason is None or e.reason == reason]
        return found if limit is None else found[:limit]

    def remove(self, delivery_ids: Iterable[str] | None = None) -> list[DeadLetter]:
        """Take entries out (all of them when ``delivery_ids`` is None), oldest first."""
        if delivery_ids is None:
            taken = list(self._entries.values())
            self._entries.clear()
            return taken
        taken = []
        for delivery_id in delivery_ids:
            entry = self._entries.pop(delivery_id, None)
            if entry is not None:
                taken.append(entry)
        return taken

    def put_back(self, entries: Iterable[DeadLetter]) -> None:
        """Return entries a re-drive could not place, at the old end (they are the oldest)."""
        for entry in reversed(list(entries)):
            self._entries[entry.delivery_id] = entry
            self._entries.move_to_end(entry.delivery_id, last=False)

    def count_redriven(self, count: int) -> None:
        self._redriven += count

    def purge(self, delivery_ids: Iterable[str] | None = None) -> list[DeadLetter]:
        """Delete entries for good (all when ``delivery_ids`` is None); returns them."""
        removed = self.remove(delivery_ids)
        self._purged += len(removed)
        return removed

    def supersede(self, delivery_id: str) -> list[DeadLetter]:
        """GitHub redelivered this delivery and it is queued again: the dead letter goes, or
        a re-drive of it would process the event a second time. Returns what went."""
        removed = self.remove((delivery_id,))
        self._superseded += len(removed)
        return removed

    def stats(self) -> DeadLetterStats:
        return DeadLetterStats(
            depth=len(self._entries),
            capacity=self._capacity,
            added_by_reason=dict(self._added),
            dropped=self._dropped,
            redriven=self._redriven,
            purged=self._purged,
            superseded=self._superseded,
        )
