"""A bounded in-memory priority queue: admission, fairness, per-issue order, retries, TTL, DLQ.

Pure and synchronous: the intake calls ``offer``, the dispatcher ``take`` and
then exactly one of ``done``, ``retry``, ``defer`` or ``dead_letter``; tests
call them directly with an injected clock.

Rules it keeps:

- Admission is bounded by event count and compressed bytes, counting events in
  flight (a retried event always has its place back). Each level may fill the
  queue only up to its own fraction, so LOW is refused first and CRITICAL keeps
  headroom. An admitted event is never evicted.
- ``take`` serves strict priority across levels, except that a level whose
  oldest ready event has waited longer than the ageing bound is served first
  (the most overdue level wins), so LOW is never starved for good. Within a
  level, installations take turns (round-robin): one org's burst of thousands
  cannot hold up another org's single event for more than a few dequeues.
  Within an installation, arrival order.
- Events of one issue form a lane: only the oldest of a lane is eligible, and
  not while another event of that issue is in flight. A retried event goes back
  to the front of its lane, so one issue's events run one at a time, in arrival
  order, whatever their priorities and retries.
- An event older than its level's TTL when it reaches the front is not
  processed: it goes to the dead-letter queue with reason ``expired``.
- The queue alone changes the record of recent deliveries (``RecentDeliveries``),
  which the intake reads to answer a redelivery as a duplicate: an admitted or
  re-driven delivery is remembered; one dead-lettered, or done with ``failed``
  (a processor failed for good), is forgotten, so GitHub's redelivery of it
  is accepted again.

Another backend implements the ``EventQueue`` protocol; the contract a backend
keeps is written on the protocol. The SQLite spool (``queue.spooled``) and the
shared Redis queue (``queue.redis_queue``) keep this class as their scheduler
and hear of every change through ``QueueJournal``.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from github_app.envelope import Envelope, IssueKey
from github_app.queue.dead_letters import (
    EXPIRED,
    DeadLetter,
    DeadLetterQueue,
    DeadLetterStats,
)
from github_app.queue.deliveries import RecentDeliveries
from github_app.queue.event import QueuedEvent, State
from github_app.queue.priority import Priority

Clock = Callable[[], float]

DEFAULT_FILL_LIMITS: Mapping[Priority, float] = {
    Priority.CRITICAL: 1.0,
    Priority.HIGH: 0.9,
    Priority.NORMAL: 0.75,
    Priority.LOW: 0.5,
}

# Seconds an event may wait, from admission, before it is dead-lettered as expired.
DEFAULT_TTL: Mapping[Priority, float] = {
    Priority.CRITICAL: 24 * 3600.0,
    Priority.HIGH: 2 * 3600.0,
    Priority.NORMAL: 2 * 3600.0,
    Priority.LOW: 1800.0,
}

DEFAULT_AGEING = 60.0


@dataclass(frozen=True, slots=True)
class Admission:
    """The queue's answer to an offer; a refusal says why and when to come back."""

    admitted: bool
    reason: str = ""
    retry_after: int = 0
    error: str = "queue_full"  # the error name a refused delivery is answered with


ADMITTED = Admission(True)
# A shared backend finds a delivery already admitted (by any replica) when it admits it.
DUPLICATE = Admission(False, "already admitted", 0, "duplicate")


@dataclass(frozen=True)
class QueueStats:
    """A snapshot for the status endpoint and metrics.

    ``depth`` and ``bytes`` count waiting events (ready, delayed or behind
    their issue), not those in flight. ``expired``, ``dead_lettered_by_reason``
    and ``redriven`` are the dead-letter queue's counts (``dead_letters``).
    """

    depth: int
    bytes: int
    in_flight: int
    depth_by_priority: dict[str, int] = field(default_factory=dict)
    bytes_by_priority: dict[str, int] = field(default_factory=dict)
    admitted: int = 0
    refused_by_priority: dict[str, int] = field(default_factory=dict)
    taken: int = 0
    delayed: int = 0
    processed: int = 0
    retried: int = 0
    deferred: int = 0
    expired: int = 0
    dead_lettered_by_reason: dict[str, int] = field(default_factory=dict)
    redriven: int = 0
    aged: int = 0
    dead_letters: DeadLetterStats | None = None
    # seconds since the first admitted of the waiting events was admitted (after a replay,
    # admission times follow arrival order but for the milliseconds from receipt to admission)
    oldest_wait: float | None = None
    waiting_by_installation: dict[int | None, int] = field(default_factory=dict)
    spool: object | None = None  # the durable backend's own stats (``SpoolStats``)
    shared: object | None = None  # the shared backend's (``SharedQueueStats``): all replicas


class EventQueue(Protocol):
    """What the intake, the dispatcher and the admin endpoints need from a queue backend.

    The contract, and how each backend keeps it (memory: this class; sqlite: the
    spool, ``queue.spooled``; redis: the queue replicas share, ``queue.redis_queue``):

    - ``admit`` returns an admission only once the event is as durable as the
      backend promises (memory: in this process; sqlite: committed; redis: Redis
      answered the script that stores it). The intake answers 202 only then. A
      backend that cannot store the event says so in a refusal (``error``
      ``spool_unavailable`` or ``redis_unavailable``), never by admitting it.
      An event becomes takeable only after it was admitted.
    - A delivery admitted recently is a duplicate: ``knows`` says so for what
      this process has seen (the intake asks it first); redis checks the ids
      every replica saw in the same script as the admission, and answers one
      another replica admitted with ``DUPLICATE``.
    - Admission is bounded by events and bytes held (waiting or in flight), per
      level (redis: counted in Redis over all replicas).
    - ``take`` hands out an event with its compressed payload in
      ``envelope.payload`` (a backend may keep payloads elsewhere while queued:
      sqlite on disk, redis in Redis until a replica reads it); it counts one
      attempt. Every taken event is settled exactly once: ``done``, ``retry``,
      ``defer`` or ``dead_letter``; until then it counts as in flight, and a
      process that dies with it in flight finds it queued again at its next
      start (redis: another replica claims it after ``REDIS_CLAIM_IDLE``),
      that attempt counted.
    - What the backend keeps across a restart: the queued events with their
      priority, arrival order, attempts, not-before time and last error; the
      dead letters; the delivery ids seen recently (``RecentDeliveries``); the
      processors that succeeded per delivery (``SucceededProcessors``). Memory
      keeps none of it; sqlite keeps it in the spool; redis in Redis, where every
      replica reads it (a retried event claimed elsewhere keeps its attempts and
      runs only the processors that did not succeed).
    - The scheduling rules (admission bounds, priorities, ageing,
      installations in turn, per-issue lanes, TTL) are ``MemoryQueue``'s: each
      backend schedules with one. With redis each replica schedules what it
      read; installations take turns per replica, and a lease per issue and
      its lane in Redis keep one issue on one replica at a time, in arrival
      order.
    - Dead letters are listed, re-driven and purged here (redis: a view of the
      shared ones, refreshed when they change; re-drive and purge act on Redis).
    """

    async def admit(self, envelope: Envelope, priority: Priority) -> Admission: ...
    def knows(self, delivery_id: str) -> bool: ...

    def take(self) -> QueuedEvent | None: ...

    def done(self, item: QueuedEvent, *, failed: bool = False) -> None: ...

    def retry(self, item: QueuedEvent, not_before: float, error: str) -> None: ...

    def defer(self, item: QueuedEvent, not_before: float) -> None: ...

    def dead_letter(self, item: QueuedEvent, reason: str, error: str | None) -> None: ...

    def dead_letter_installation(
        self, installation_id: int | None, reason: str, error: str | None
    ) -> int: ...

    def next_due_in(self) -> float | None: ...

    def list_dead_letters(
        self, *, limit: int | None = None, reason: str | None = None
    ) -> list[DeadLetter]: ...

    def waiting_delivery_ids(self) -> list[str]: ...

    def redrive(self, delivery_ids: Iterable[str] | None = None) -> int: ...

    def purge_dead_letters(self, delivery_ids: Iterable[str] | None = None) -> int: ...

    def accepts(self, priority: Priority) -> bool: ...

    @property
    def unavailable(self) -> str | None:
        """Why the backend cannot store events now (``/readyz`` says it), or ``None``."""
        ...

    def __len__(self) -> int: ...

    def stats(self) -> QueueStats: ...


class QueueJournal(Protocol):
    """Told of every change to what the queue holds, so a durable backend can record it.

    Admission is not here: a durable backend stores an event before it gives it
    to the queue (``MemoryQueue.enqueue``).
    """

    def taken(self, item: QueuedEvent) -> None: ...

    def requeued(self, item: QueuedEvent) -> None: ...

    def finished(self, item: QueuedEvent) -> None: ...

    def dead_lettered(self, entry: DeadLetter) -> None: ...

    def redriven(self, old_seq: int, item: QueuedEvent) -> None: ...

    def dropped(self, entries: Iterable[DeadLetter]) -> None: ...


class _Level:
    """One priority level's ready events: a heap per installation, installations in turn.

    The heaps hold the events themselves (ordered by arrival number), not tuples: an
    event leaves its installation's heap only by being popped (or with the whole heap,
    when the installation's events are dead-lettered), so no entry is ever stale there.
    ``ages`` holds the events in the order they became ready, which is the order of
    their ``ready_since`` (the clock never goes back): the oldest ready event is its
    first live entry. An event that left READY and came back has more than one entry;
    only its last counts (``QueuedEvent.age_entries``).
    """

    __slots__ = ("ages", "heaps", "live", "rotation")

    def __init__(self) -> None:
        self.rotation: OrderedDict[int | None, None] = OrderedDict()
        self.heaps: dict[int | None, list[QueuedEvent]] = {}
        self.live: dict[int | None, int] = {}
        self.ages: deque[QueuedEvent] = deque()

    def oldest_ready_since(self) -> float:
        """When the level's longest-ready event became ready (the level has one)."""
        ages = self.ages
        while True:
            item = ages[0]
            if item.state is State.READY and item.age_entries == 1:
                return item.ready_since
            ages.popleft()
            item.age_entries -= 1

    def forget_ages(self) -> None:
        """No event of this level is ready: every entry of ``ages`` is stale."""
        ages = self.ages
        while ages:
            ages.pop().age_entries -= 1


# A lane: the waiting events of one issue, oldest first. Most lanes hold one event, kept
# as itself: a list (about 90 bytes) would cost more than the rest of a lane's entry.
Lane = QueuedEvent | list[QueuedEvent]


def _front(lane: Lane) -> QueuedEvent:
    return lane if isinstance(lane, QueuedEvent) else lane[0]


class _Lanes:
    """The lanes by issue, as repository -> issue number -> lane.

    Nested rather than keyed by (repository, number): a tuple per issue cost about 24
    bytes an issue more (most issues of a burst have one event waiting).
    """

    __slots__ = ("_by_repository",)

    def __init__(self) -> None:
        self._by_repository: dict[str, dict[int, Lane]] = {}

    def get(self, key: IssueKey) -> Lane | None:
        issues = self._by_repository.get(key[0])
        return None if issues is None else issues.get(key[1])

    def __getitem__(self, key: IssueKey) -> Lane:
        return self._by_repository[key[0]][key[1]]

    def __setitem__(self, key: IssueKey, lane: Lane) -> None:
        issues = self._by_repository.get(key[0])
        if issues is None:
            issues = self._by_repository[key[0]] = {}
        issues[key[1]] = lane

    def __delitem__(self, key: IssueKey) -> None:
        issues = self._by_repository[key[0]]
        del issues[key[1]]
        if not issues:
            del self._by_repository[key[0]]

    def values(self) -> Iterator[Lane]:
        for issues in self._by_repository.values():
            yield from issues.values()


def _valid(item: QueuedEvent, gen: int, state: State) -> bool:
    return item.state is state and item.gen == gen


class MemoryQueue:
    """The default backend: everything in this process's memory."""

    def __init__(
        self,
        max_events: int,
        max_bytes: int,
        *,
        clock: Clock = time.monotonic,
        fill_limits: Mapping[Priority, float] = DEFAULT_FILL_LIMITS,
        retry_after: int = 30,
        ttl: Mapping[Priority, float] = DEFAULT_TTL,
        ageing: float = DEFAULT_AGEING,
        dead_letters: DeadLetterQueue | None = None,
        deliveries: RecentDeliveries | None = None,
        journal: QueueJournal | None = None,
    ) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("queue bounds must be positive")
        if ageing <= 0 or any(ttl[p] <= 0 for p in Priority):
            raise ValueError("ageing bound and TTLs must be positive")
        self._clock = clock
        self._retry_after = retry_after
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._event_limit = {p: max(1, int(max_events * fill_limits[p])) for p in Priority}
        self._byte_limit = {p: max(1, int(max_bytes * fill_limits[p])) for p in Priority}
        self._ttl = dict(ttl)
        self._ageing = ageing
        self._dlq = dead_letters if dead_letters is not None else DeadLetterQueue()
        self._deliveries = deliveries if deliveries is not None else RecentDeliveries()
        self._journal = journal
        self._levels = {p: _Level() for p in Priority}
        self._delayed: list[tuple[float, int, int, QueuedEvent]] = []
        self._lanes = _Lanes()
        self._busy: set[IssueKey] = set()
        # How many events of each installation wait; the events themselves are found where
        # they wait (``_waiting``), rarely: an index of them would cost ~40 bytes an event.
        self._waiting_by_installation: dict[int | None, int] = {}
        self._seq = 0
        self._count = 0  # waiting
        self._bytes = 0
        self._held = 0  # waiting + in flight: what admission counts
        self._held_bytes = 0
        self._in_flight = 0
        self._delayed_count = 0
        self._count_by: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self._bytes_by: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self._admitted = 0
        self._taken = 0
        self._processed = 0
        self._retried = 0
        self._deferred = 0
        self._aged = 0
        self._refused: dict[Priority, int] = dict.fromkeys(Priority, 0)

    def __len__(self) -> int:
        return self._count

    @property
    def unavailable(self) -> str | None:
        return None  # memory always has room for what admission lets in

    # --- admission ----------------------------------------------------------------------------

    def accepts(self, priority: Priority, size: int = 0, events: int = 1) -> bool:
        """Would ``events`` more events of this level (``size`` compressed bytes) fit now?"""
        return (
            self._held + events <= self._event_limit[priority]
            and self._held_bytes + size <= self._byte_limit[priority]
        )

    def admission(
        self, priority: Priority, size: int, *, pending_events: int = 0, pending_bytes: int = 0
    ) -> Admission:
        """May an event of ``size`` compressed bytes come in, counting those still being stored?

        A refusal is counted; an admission reserves nothing (the caller counts its pending).
        """
        events = pending_events + 1
        if self.accepts(priority, pending_bytes + size, events):
            return ADMITTED
        self._refused[priority] += 1
        full = "events" if self._held + events > self._event_limit[priority] else "bytes"
        return Admission(False, f"queue full for {priority.name} ({full})", self._retry_after)

    def offer(self, envelope: Envelope, priority: Priority) -> Admission:
        admission = self.admission(priority, len(envelope.payload))
        if admission.admitted:
            self.enqueue(envelope, priority, len(envelope.payload))
        return admission

    async def admit(self, envelope: Envelope, priority: Priority) -> Admission:
        """``offer``: in this backend an event is as durable as it will be once it is in memory."""
        return self.offer(envelope, priority)

    def next_seq(self) -> int:
        """Claim the next arrival number (a durable backend keys its record with it)."""
        self._seq += 1
        return self._seq

    def enqueue(
        self, envelope: Envelope, priority: Priority, size: int, *, seq: int | None = None
    ) -> QueuedEvent:
        """Admit without asking (``admission`` was asked before the event was stored)."""
        item = self._admit(envelope, priority, size, seq=seq)
        self._deliveries.remember(envelope.delivery_id)
        self._admitted += 1
        # An event is queued or dead, never both: a redelivery replaces its dead letter.
        superseded = self._dlq.supersede(envelope.delivery_id)
        if superseded and self._journal is not None:
            self._journal.dropped(superseded)
        return item

    def dead_letter_seq(self, delivery_id: str) -> int | None:
        """The arrival number of this delivery's dead letter, if it has one."""
        entry = self._dlq.get(delivery_id)
        return None if entry is None else entry.item.seq

    def knows(self, delivery_id: str) -> bool:
        """Was this delivery admitted recently (and not given up)? Then a redelivery of it
        is a duplicate."""
        return delivery_id in self._deliveries

    def restore(
        self,
        envelope: Envelope,
        priority: Priority,
        size: int,
        *,
        seq: int,
        age: float,
        attempts: int,
        not_before_in: float,
        last_error: str | None,
    ) -> QueuedEvent:
        """Put back an event recorded by a previous process (start-up replay, arrival order).

        ``age`` is how long ago it was admitted; ``not_before_in`` how long it must still wait.
        """
        now = self._clock()
        return self._admit(
            envelope,
            priority,
            size,
            seq=seq,
            enqueued_at=now - age,
            attempts=attempts,
            not_before=now + not_before_in if not_before_in > 0 else 0.0,
            last_error=last_error,
        )

    def restore_dead_letter(
        self,
        envelope: Envelope,
        priority: Priority,
        size: int,
        *,
        seq: int,
        attempts: int,
        reason: str,
        last_error: str | None,
        at: float,
    ) -> None:
        """Put back a dead letter recorded by a previous process."""
        self._seq = max(self._seq, seq)
        item = QueuedEvent(envelope, priority, seq, self._clock(), size, attempts=attempts)
        item.state = State.FINISHED
        self._dlq.add(item, reason, last_error, at=at)

    def _admit(
        self,
        envelope: Envelope,
        priority: Priority,
        size: int,
        *,
        seq: int | None = None,
        enqueued_at: float | None = None,
        attempts: int = 0,
        not_before: float = 0.0,
        last_error: str | None = None,
    ) -> QueuedEvent:
        if seq is None:
            seq = self.next_seq()
        else:
            self._seq = max(self._seq, seq)
        now = self._clock()
        item = QueuedEvent(
            envelope,
            priority,
            seq,
            now if enqueued_at is None else enqueued_at,
            size,
            attempts=attempts,
            not_before=not_before,
            last_error=last_error,
        )
        self._held += 1
        self._held_bytes += size
        self._wait(item)
        key = envelope.issue_key
        if key is None:
            self._enter(item, now)
            return item
        lane = self._lanes.get(key)
        if lane is None:
            self._lanes[key] = item
            if key not in self._busy:
                self._enter(item, now)
        elif isinstance(lane, QueuedEvent):
            self._lanes[key] = [lane, item]
        else:
            lane.append(item)
        return item

    # --- taking -------------------------------------------------------------------------------

    def take(self) -> QueuedEvent | None:
        """The next eligible event; ``None`` if nothing is eligible now.

        Events that expired on their way to the front are dead-lettered here.
        """
        now = self._clock()
        self._release_due(now)
        while True:
            level = self._choose_level(now)
            if level is None:
                return None
            item = self._pop(self._levels[level])
            key = item.envelope.issue_key
            if key is not None:
                self._leave_lane(key, item)
            self._unwait(item)
            if now - item.enqueued_at > self._ttl[item.priority]:
                self._finish(item, EXPIRED, f"older than the {item.priority.name} TTL")
                if key is not None:
                    self._release_lane(key, now)
                continue
            if key is not None:
                self._busy.add(key)
            item.state = State.IN_FLIGHT
            item.attempts += 1
            self._in_flight += 1
            self._taken += 1
            if self._journal is not None:
                self._journal.taken(item)
            return item

    def _choose_level(self, now: float) -> Priority | None:
        """Strict priority, unless a lower level's oldest ready event is overdue by ageing."""
        first: Priority | None = None
        overdue_level: Priority | None = None
        most_overdue = 0.0
        for priority, level in self._levels.items():
            if not level.rotation:
                continue
            if first is None:
                first = priority
                continue
            overdue = now - level.oldest_ready_since() - self._ageing
            if overdue > most_overdue:
                most_overdue, overdue_level = overdue, priority
        if overdue_level is not None:
            self._aged += 1
            return overdue_level
        return first

    def _pop(self, level: _Level) -> QueuedEvent:
        """The next installation's oldest ready event; that installation goes to the back."""
        installation = next(iter(level.rotation))
        item = heapq.heappop(level.heaps[installation])
        item.state = State.LANE  # no longer READY: its entries elsewhere are stale now
        self._drop_live(level, installation)
        return item

    def _drop_live(self, level: _Level, installation: int | None) -> None:
        level.live[installation] -= 1
        if level.live[installation]:
            level.rotation.move_to_end(installation)
            return
        del level.live[installation], level.heaps[installation], level.rotation[installation]
        if not level.rotation:
            level.forget_ages()

    # --- settling a taken event ---------------------------------------------------------------

    def done(self, item: QueuedEvent, *, failed: bool = False) -> None:
        """Processing of ``item`` ended: its issue's next event becomes eligible.

        ``failed``: a processor failed for good; the delivery is forgotten, so
        GitHub's redelivery of it is accepted again.
        """
        self._settle(item)
        if failed:
            self._deliveries.forget(item.envelope.delivery_id)
        self._processed += 1
        self._finish(item, None, None)
        self._release_after(item)

    def retry(self, item: QueuedEvent, not_before: float, error: str) -> None:
        """Back to the front of its issue's lane, eligible again from ``not_before``."""
        self._settle(item)
        self._retried += 1
        item.last_error = error
        self._requeue(item, not_before)

    def defer(self, item: QueuedEvent, not_before: float) -> None:
        """Like ``retry`` but the try does not count: nothing was attempted."""
        self._settle(item)
        self._deferred += 1
        item.attempts -= 1
        self._requeue(item, not_before)

    def dead_letter(self, item: QueuedEvent, reason: str, error: str | None) -> None:
        """Give up on a taken event: it goes to the dead-letter queue with why."""
        self._settle(item)
        self._finish(item, reason, error)
        self._release_after(item)

    def _settle(self, item: QueuedEvent) -> None:
        if item.state is not State.IN_FLIGHT:
            raise ValueError(f"event {item.envelope.delivery_id} is not in flight")
        self._in_flight -= 1

    def _requeue(self, item: QueuedEvent, not_before: float) -> None:
        item.not_before = not_before
        if self._journal is not None:
            self._journal.requeued(item)
        self._wait(item)
        key = item.envelope.issue_key
        if key is not None:
            self._busy.discard(key)
            lane = self._lanes.get(key)
            if lane is None:
                self._lanes[key] = item
            elif isinstance(lane, QueuedEvent):
                self._lanes[key] = [item, lane]
            else:
                lane.insert(0, item)
        item.state = State.LANE
        self._enter(item, self._clock())

    def _release_after(self, item: QueuedEvent) -> None:
        key = item.envelope.issue_key
        if key is not None:
            self._busy.discard(key)
            self._release_lane(key, self._clock())

    # --- dead letters -------------------------------------------------------------------------

    def dead_letter_installation(
        self, installation_id: int | None, reason: str, error: str | None
    ) -> int:
        """Dead-letter every waiting event of an installation (it was removed or suspended)."""
        if not self._waiting_by_installation.get(installation_id):
            return 0
        items = sorted(
            (item for item in self._waiting() if item.envelope.installation_id == installation_id),
            key=lambda queued: queued.seq,
        )
        touched: set[IssueKey] = set()
        for item in items:
            if item.state is State.DELAYED:
                self._delayed_count -= 1
            if item.state is State.READY:
                level = self._levels[item.priority]
                item.state = State.LANE
                self._drop_live(level, installation_id)
            key = item.envelope.issue_key
            if key is not None:
                self._leave_lane(key, item)
                touched.add(key)
            self._unwait(item)
            self._finish(item, reason, error)
        now = self._clock()
        for key in touched:
            self._release_lane(key, now)
        return len(items)

    def list_dead_letters(
        self, *, limit: int | None = None, reason: str | None = None
    ) -> list[DeadLetter]:
        return self._dlq.entries(limit=limit, reason=reason)

    def waiting_delivery_ids(self) -> list[str]:
        """The delivery ids of the events not yet done (ready, delayed or behind their issue)."""
        items = sorted(self._waiting(), key=lambda queued: queued.seq)
        return [item.envelope.delivery_id for item in items]

    def redrive(self, delivery_ids: Iterable[str] | None = None) -> int:
        """Put dead letters back in the queue as new arrivals (attempts start again).

        Bounded like any admission (at CRITICAL's limit: an operator asked for
        it); what does not fit stays in the dead-letter queue.
        """
        entries = self._dlq.remove(delivery_ids)
        moved = 0
        for index, entry in enumerate(entries):
            old = entry.item
            if not self.accepts(Priority.CRITICAL, old.size):
                self._dlq.put_back(entries[index:])
                break
            item = self._admit(old.envelope, old.priority, old.size)
            # remembered again, so GitHub's redelivery of it is not queued twice
            self._deliveries.remember(old.envelope.delivery_id)
            moved += 1
            if self._journal is not None:
                self._journal.redriven(old.seq, item)
        self._dlq.count_redriven(moved)
        return moved

    def purge_dead_letters(self, delivery_ids: Iterable[str] | None = None) -> int:
        purged = self._dlq.purge(delivery_ids)
        if self._journal is not None:
            self._journal.dropped(purged)
        return len(purged)

    # --- internals ----------------------------------------------------------------------------

    def _wait(self, item: QueuedEvent) -> None:
        size = item.size
        self._count += 1
        self._bytes += size
        self._count_by[item.priority] += 1
        self._bytes_by[item.priority] += size
        waiting = self._waiting_by_installation
        installation = item.envelope.installation_id
        waiting[installation] = waiting.get(installation, 0) + 1

    def _unwait(self, item: QueuedEvent) -> None:
        size = item.size
        self._count -= 1
        self._bytes -= size
        self._count_by[item.priority] -= 1
        self._bytes_by[item.priority] -= size
        installation = item.envelope.installation_id
        waiting = self._waiting_by_installation
        left = waiting[installation] - 1
        if left:
            waiting[installation] = left
        else:
            del waiting[installation]

    def _waiting(self) -> Iterator[QueuedEvent]:
        """Every waiting event, in no particular order. An event about an issue waits in its
        issue's lane; any other waits ready (in its level's heap) or delayed."""
        for lane in self._lanes.values():
            if isinstance(lane, QueuedEvent):
                yield lane
            else:
                yield from lane
        for level in self._levels.values():
            for heap in level.heaps.values():
                yield from (item for item in heap if item.envelope.issue_key is None)
        for _, _, gen, item in self._delayed:
            if item.envelope.issue_key is None and _valid(item, gen, State.DELAYED):
                yield item

    def _finish(self, item: QueuedEvent, reason: str | None, error: str | None) -> None:
        """The queue lets go of ``item``: processed (no reason) or dead-lettered."""
        item.state = State.FINISHED
        self._held -= 1
        self._held_bytes -= item.size
        journal = self._journal
        if reason is None:
            if journal is not None:
                journal.finished(item)
            return
        item.last_error = error if error is not None else item.last_error
        entry = self._dlq.add(item, reason, item.last_error)
        dropped = self._dlq.overflow()
        if journal is not None:
            journal.dead_lettered(entry)
            journal.dropped(dropped)
        # given up: forgotten, so GitHub's redelivery of it is accepted again
        self._deliveries.forget(item.envelope.delivery_id)

    def _leave_lane(self, key: IssueKey, item: QueuedEvent) -> None:
        lane = self._lanes[key]
        if isinstance(lane, QueuedEvent):
            del self._lanes[key]
            return
        lane.remove(item)  # the front, but for a dead-lettered installation
        if len(lane) == 1:
            self._lanes[key] = lane[0]

    def _release_lane(self, key: IssueKey, now: float) -> None:
        lane = self._lanes.get(key)
        if lane is None or key in self._busy:
            return
        front = _front(lane)
        if front.state is State.LANE:
            self._enter(front, now)

    def _enter(self, item: QueuedEvent, now: float) -> None:
        """``item`` is at the front of its lane: ready now, or once its not-before passes."""
        item.gen += 1
        if item.not_before > now:
            item.state = State.DELAYED
            self._delayed_count += 1
            heapq.heappush(self._delayed, (item.not_before, item.seq, item.gen, item))
        else:
            self._make_ready(item, now)

    def _make_ready(self, item: QueuedEvent, now: float) -> None:
        item.state = State.READY
        item.ready_since = now
        level = self._levels[item.priority]
        installation = item.envelope.installation_id
        heap = level.heaps.get(installation)
        if heap is None:
            heap = level.heaps[installation] = []
            level.live[installation] = 0
            level.rotation[installation] = None
        heapq.heappush(heap, item)
        level.live[installation] += 1
        level.ages.append(item)
        item.age_entries += 1

    def _release_due(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, _, gen, item = heapq.heappop(delayed)
            if _valid(item, gen, State.DELAYED):
                self._delayed_count -= 1
                item.gen += 1
                self._make_ready(item, now)

    def _first_waiting(self) -> QueuedEvent | None:
        """The first admitted of the waiting events, found without walking them all.

        ``stats`` runs on the event loop at every sampler tick and every scrape: a walk
        over 100,000 waiting events took 60-85 ms there, and an index of the events in
        arrival order would cost every queued event 8 bytes. The structures at hand
        suffice: a lane is in arrival order and its front waits ready or delayed, unless
        its issue is in flight; any other waiting event is ready or delayed. So the first
        admitted is the first of each installation's heap head on each level (a heap is
        in arrival order), the delayed events, and the fronts of the lanes of issues in
        flight. The cost is in installations, delayed events and events in flight.
        """
        candidates = [heap[0] for level in self._levels.values() for heap in level.heaps.values()]
        candidates.extend(
            item for _, _, gen, item in self._delayed if _valid(item, gen, State.DELAYED)
        )
        for key in self._busy:
            lane = self._lanes.get(key)
            if lane is not None:
                candidates.append(_front(lane))
        return min(candidates, default=None)

    def ready_by_priority(self) -> dict[Priority, int]:
        """How many events each level could hand out now (benchmarks check order with it)."""
        return {p: sum(level.live.values()) for p, level in self._levels.items()}

    def next_due_in(self) -> float | None:
        """Seconds until the next delayed event becomes eligible; ``None`` if none is delayed."""
        delayed = self._delayed
        while delayed and not _valid(delayed[0][3], delayed[0][2], State.DELAYED):
            heapq.heappop(delayed)
        if not delayed:
            return None
        return max(0.0, delayed[0][0] - self._clock())

    def stats(self) -> QueueStats:
        # Dead letters and re-drives are counted once, by the dead-letter queue; the totals
        # here are its numbers, kept in this snapshot for the status document's readers.
        dead_letters = self._dlq.stats()
        reasons = dead_letters.added_by_reason
        first = self._first_waiting()
        return QueueStats(
            depth=self._count,
            bytes=self._bytes,
            in_flight=self._in_flight,
            depth_by_priority={p.name: self._count_by[p] for p in Priority},
            bytes_by_priority={p.name: self._bytes_by[p] for p in Priority},
            admitted=self._admitted,
            refused_by_priority={p.name: self._refused[p] for p in Priority},
            taken=self._taken,
            delayed=self._delayed_count,
            processed=self._processed,
            retried=self._retried,
            deferred=self._deferred,
            expired=reasons.get(EXPIRED, 0),
            dead_lettered_by_reason=dict(reasons),
            redriven=dead_letters.redriven,
            aged=self._aged,
            dead_letters=dead_letters,
            oldest_wait=None if first is None else max(0.0, self._clock() - first.enqueued_at),
            waiting_by_installation=dict(self._waiting_by_installation),
        )
