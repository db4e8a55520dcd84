"""The default queue backend: ``MemoryQueue`` schedules, the SQLite spool remembers.

An admitted event is committed to the spool before ``admit`` returns (the
intake answers 202 only then), and only then handed to the in-memory
scheduler, which keeps its index (routing fields, priority, lanes, times)
but not its payload: the compressed body waits on disk and is read when the
event is taken, and let go again when it is settled. Every later change
(attempts, retries, dead letters, deletes of finished events) reaches the
spool through the journal in the next commit group. At start-up ``replay``
rebuilds the scheduler from the spool in arrival order.

When the spool cannot store an event (disk full, I/O error), ``admit``
refuses it with ``spool_unavailable``: the delivery gets 503 with
Retry-After, GitHub shows it as failed, nothing is lost.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import anyio

from github_app.envelope import Envelope
from github_app.queue.dead_letters import DeadLetter
from github_app.queue.deliveries import RecentDeliveries
from github_app.queue.event import QueuedEvent
from github_app.queue.memory import ADMITTED, Admission, MemoryQueue, QueueStats
from github_app.queue.priority import Priority
from github_app.queue.spool import (
    GroupCommitter,
    SpoolError,
    SpoolStats,
    SpoolStore,
    insert_event,
)
from github_app.queue.succeeded import SucceededProcessors

log = logging.getLogger(__name__)

UNREADABLE = "unreadable"  # dead-letter reason: the spool could not give the payload back
NOT_YET = 0.05  # a re-driven event's row is renamed in the next commit group: look again then


class SpooledQueue:
    """``EventQueue`` over a ``MemoryQueue`` (scheduling) and a ``SpoolStore`` (durability)."""

    def __init__(
        self,
        memory: MemoryQueue,
        store: SpoolStore,
        committer: GroupCommitter,
        *,
        retry_after: int = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock  # the scheduler's clock
        self._memory = memory
        self._store = store
        self._committer = committer
        self._retry_after = retry_after
        self._pending_events = 0
        self._pending_bytes = 0
        self._installations: dict[int, int] = {}  # one int object per installation id
        self.refused_unavailable = 0

    def __len__(self) -> int:
        return len(self._memory)

    @property
    def unavailable(self) -> str | None:
        """Why the spool cannot take events now (its last commit failed), or ``None``."""
        problem = self._committer.problem
        return None if problem is None else f"spool cannot store events: {problem}"

    async def admit(self, envelope: Envelope, priority: Priority) -> Admission:
        size = len(envelope.payload)
        admission = self._memory.admission(
            priority,
            size,
            pending_events=self._pending_events,
            pending_bytes=self._pending_bytes,
        )
        if not admission.admitted:
            return admission
        seq = self._memory.next_seq()
        replaces = self._memory.dead_letter_seq(envelope.delivery_id)
        ops = insert_event(seq, envelope, priority, envelope.payload, replaces=replaces)
        self._pending_events += 1
        self._pending_bytes += size
        try:
            # Shielded: once asked, the commit's outcome must reach the scheduler, or a
            # committed event would wait on disk unknown to this process.
            with anyio.CancelScope(shield=True):
                await self._committer.commit(ops)
        except SpoolError as exc:
            self.refused_unavailable += 1
            reason = f"the spool cannot store events now: {exc}"
            return Admission(False, reason, self._retry_after, "spool_unavailable")
        finally:
            self._pending_events -= 1
            self._pending_bytes -= size
        self._memory.enqueue(index_of(envelope, self._installations), priority, size, seq=seq)
        return ADMITTED

    def knows(self, delivery_id: str) -> bool:
        return self._memory.knows(delivery_id)

    def take(self) -> QueuedEvent | None:
        while True:
            item = self._memory.take()
            if item is None:
                return None
            try:
                payload, raw_size = self._store.taken(item.seq)
            except SpoolError as exc:
                if self._committer.pending:
                    self._memory.defer(item, self._clock() + NOT_YET)
                    return None
                log.error("event %s: %s", item.envelope.delivery_id, exc)
                self._memory.dead_letter(item, UNREADABLE, str(exc))
                continue
            item.envelope = item.envelope._replace(payload=payload, raw_size=raw_size)
            return item

    @staticmethod
    def _let_go(item: QueuedEvent) -> QueuedEvent:
        item.envelope = item.envelope._replace(payload=b"", raw_size=0)
        return item

    def done(self, item: QueuedEvent, *, failed: bool = False) -> None:
        self._memory.done(self._let_go(item), failed=failed)

    def retry(self, item: QueuedEvent, not_before: float, error: str) -> None:
        self._memory.retry(self._let_go(item), not_before, error)

    def defer(self, item: QueuedEvent, not_before: float) -> None:
        self._memory.defer(self._let_go(item), not_before)

    def dead_letter(self, item: QueuedEvent, reason: str, error: str | None) -> None:
        self._memory.dead_letter(self._let_go(item), reason, error)

    def dead_letter_installation(
        self, installation_id: int | None, reason: str, error: str | None
    ) -> int:
        return self._memory.dead_letter_installation(installation_id, reason, error)

    def next_due_in(self) -> float | None:
        return self._memory.next_due_in()

    def list_dead_letters(
        self, *, limit: int | None = None, reason: str | None = None
    ) -> list[DeadLetter]:
        return self._memory.list_dead_letters(limit=limit, reason=reason)

    def waiting_delivery_ids(self) -> list[str]:
        return self._memory.waiting_delivery_ids()

    def redrive(self, delivery_ids: Iterable[str] | None = None) -> int:
        return self._memory.redrive(delivery_ids)

    def purge_dead_letters(self, delivery_ids: Iterable[str] | None = None) -> int:
        return self._memory.purge_dead_letters(delivery_ids)

    def accepts(self, priority: Priority, size: int = 0, events: int = 1) -> bool:
        return self._memory.accepts(
            priority, self._pending_bytes + size, self._pending_events + events
        )

    def ready_by_priority(self) -> dict[Priority, int]:
        return self._memory.ready_by_priority()

    def stats(self) -> QueueStats:
        committer = self._committer
        spool = SpoolStats(
            path=str(self._store.path),
            sync=self._store.sync,
            bytes=self._store.size_on_disk(),
            refused=self.refused_unavailable,
            commits=committer.commits,
            writes=committer.writes,
            largest_group=committer.largest_group,
            failed_commits=committer.failed_commits,
            problem=committer.problem,
        )
        return replace(self._memory.stats(), spool=spool)


def _shared(text: str | None) -> str | None:
    return None if text is None else sys.intern(text)


def index_of(envelope: Envelope, installations: dict[int, int]) -> Envelope:
    """What the scheduler keeps of a spooled event: the envelope without its payload and raw
    size (a take reads both back), the values that repeat across events shared, not copied:
    names (event, action, repository, sender) interned, installation ids through
    ``installations``."""
    e = envelope
    installation = e.installation_id
    if installation is not None:
        installation = installations.setdefault(installation, installation)
    return Envelope(
        e.delivery_id,
        sys.intern(e.event),
        _shared(e.action),
        installation,
        _shared(e.repository),
        e.issue_number,
        _shared(e.sender_login),
        _shared(e.sender_type),
        e.received_at,
        b"",
        0,
    )


@dataclass(frozen=True)
class Recovered:
    queued: int
    dead: int
    oldest_age: float  # seconds since the oldest recovered queued event was received


def replay(
    store: SpoolStore,
    memory: MemoryQueue,
    deliveries: RecentDeliveries,
    succeeded: SucceededProcessors,
    *,
    window: float,
    clock: Callable[[], float] = time.time,
) -> Recovered:
    """Rebuild the scheduler and the delivery memory from what a previous process left.

    Events queued or in flight when it stopped are queued again in arrival
    order (an in-flight one has its attempt counted: the take was recorded).
    """
    now = clock()
    since = now - window
    for delivery_id, seen in store.deliveries(since):
        deliveries.load(delivery_id, seen=seen)
    for delivery_id, processors, at in store.succeeded(since):
        succeeded.load(delivery_id, processors, at)
    queued = dead = 0
    oldest: float | None = None
    for row in store.events():
        envelope, priority = row.envelope, Priority(row.priority)
        if row.dead_reason is not None:
            dead += 1
            memory.restore_dead_letter(
                envelope,
                priority,
                row.size,
                seq=row.seq,
                attempts=row.attempts,
                reason=row.dead_reason,
                last_error=row.last_error,
                at=row.dead_at or now,
            )
            continue
        queued += 1
        oldest = envelope.received_at if oldest is None else min(oldest, envelope.received_at)
        deliveries.load(envelope.delivery_id)
        memory.restore(
            envelope,
            priority,
            row.size,
            seq=row.seq,
            age=max(0.0, now - envelope.received_at),
            attempts=row.attempts,
            not_before_in=row.not_before - now if row.not_before else 0.0,
            last_error=row.last_error,
        )
    recovered = Recovered(queued, dead, 0.0 if oldest is None else max(0.0, now - oldest))
    if queued or dead:
        log.info(
            "recovered %d queued event(s) from the spool %s (oldest received %.0fs ago)"
            "%s; they are processed in their original order",
            queued,
            store.path,
            recovered.oldest_age,
            f" and {dead} dead letter(s)" if dead else "",
        )
    return recovered
