"""A bounded in-memory priority queue with per-issue order.

Pure and synchronous: the dispatcher calls ``offer``, ``take`` and ``done``
from the event loop; tests call them directly with an injected clock.

Rules it keeps:

- Admission is bounded by event count and compressed bytes. Each level may fill
  the queue only up to its own fraction, so LOW is refused first and CRITICAL
  keeps headroom. An admitted event is never evicted.
- ``take`` serves strict priority across levels, arrival order within a level.
- Events of one issue form a lane: only the oldest of a lane is eligible, and
  not while another event of that issue is being processed. So one issue's
  events run one at a time, in arrival order, whatever their priorities.

Another backend (a spool, Redis Streams) implements the ``EventQueue`` protocol.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from github_app.envelope import Envelope, IssueKey
from github_app.priority import Priority

Clock = Callable[[], float]

DEFAULT_FILL_LIMITS: Mapping[Priority, float] = {
    Priority.CRITICAL: 1.0,
    Priority.HIGH: 0.9,
    Priority.NORMAL: 0.75,
    Priority.LOW: 0.5,
}


@dataclass(slots=True)
class QueuedEvent:
    """An admitted envelope and the queue's bookkeeping about it."""

    envelope: Envelope
    priority: Priority
    seq: int
    enqueued_at: float
    attempts: int = 0
    not_before: float = 0.0  # held until this instant (queue clock) after a defer or retry

    def __lt__(self, other: QueuedEvent) -> bool:
        return self.seq < other.seq


@dataclass(frozen=True, slots=True)
class Admission:
    """The queue's answer to an offer; a refusal says why and when to come back."""

    admitted: bool
    reason: str = ""
    retry_after: int = 0


ADMITTED = Admission(True)


@dataclass(frozen=True)
class QueueStats:
    """A snapshot for the status endpoint and metrics."""

    depth: int
    bytes: int
    in_flight: int
    depth_by_priority: dict[str, int] = field(default_factory=dict)
    bytes_by_priority: dict[str, int] = field(default_factory=dict)
    admitted: int = 0
    refused_by_priority: dict[str, int] = field(default_factory=dict)
    taken: int = 0
    held: int = 0
    dead_lettered: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event that will not be processed, and why (minimal; see ``MemoryQueue.dead_letter``)."""

    item: QueuedEvent
    reason: str
    error: str
    at: float


class EventQueue(Protocol):
    """What the intake and the dispatcher need from a queue backend."""

    def offer(self, envelope: Envelope, priority: Priority) -> Admission: ...

    def take(self) -> QueuedEvent | None: ...

    def done(self, item: QueuedEvent) -> None: ...

    def accepts(self, priority: Priority) -> bool: ...

    def __len__(self) -> int: ...

    def stats(self) -> QueueStats: ...

    def defer(self, item: QueuedEvent, not_before: float) -> None: ...

    def retry(self, item: QueuedEvent, not_before: float, error: str) -> None: ...

    def dead_letter(self, item: QueuedEvent, reason: str, error: str) -> None: ...

    def seconds_until_ready(self) -> float | None: ...


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
        max_attempts: int = 5,
    ) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("queue bounds must be positive")
        self._clock = clock
        self._retry_after = retry_after
        self._event_limit = {p: max(1, int(max_events * fill_limits[p])) for p in Priority}
        self._byte_limit = {p: max(1, int(max_bytes * fill_limits[p])) for p in Priority}
        self._ready: dict[Priority, list[QueuedEvent]] = {p: [] for p in Priority}
        self._lanes: dict[IssueKey, deque[QueuedEvent]] = {}
        self._busy: set[IssueKey] = set()
        self._seq = 0
        self._count = 0
        self._bytes = 0
        self._in_flight = 0
        self._count_by: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self._bytes_by: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self._admitted = 0
        self._taken = 0
        self._refused: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self._held: list[tuple[float, int, QueuedEvent]] = []
        self._max_attempts = max_attempts
        self.dead_letters: deque[DeadLetter] = deque(maxlen=1000)
        self._dead_lettered = 0

    def __len__(self) -> int:
        return self._count

    def accepts(self, priority: Priority, size: int = 0) -> bool:
        """Would an event of this level (and compressed size) be admitted now?"""
        return (
            self._count + 1 <= self._event_limit[priority]
            and self._bytes + size <= self._byte_limit[priority]
        )

    def offer(self, envelope: Envelope, priority: Priority) -> Admission:
        size = len(envelope.payload)
        if not self.accepts(priority, size):
            self._refused[priority] += 1
            full = "events" if self._count + 1 > self._event_limit[priority] else "bytes"
            return Admission(False, f"queue full for {priority.name} ({full})", self._retry_after)
        self._seq += 1
        item = QueuedEvent(envelope, priority, self._seq, self._clock())
        self._count += 1
        self._bytes += size
        self._count_by[priority] += 1
        self._bytes_by[priority] += size
        self._admitted += 1
        key = envelope.issue_key
        if key is None:
            heapq.heappush(self._ready[priority], item)
            return ADMITTED
        lane = self._lanes.get(key)
        if lane is None:
            self._lanes[key] = deque((item,))
            if key not in self._busy:
                heapq.heappush(self._ready[priority], item)
        else:
            lane.append(item)
        return ADMITTED

    def take(self) -> QueuedEvent | None:
        """The next eligible event, highest priority first; ``None`` if nothing is eligible."""
        self._release_held()
        for priority in Priority:
            ready = self._ready[priority]
            if ready:
                item = heapq.heappop(ready)
                self._count -= 1
                self._bytes -= len(item.envelope.payload)
                self._count_by[priority] -= 1
                self._bytes_by[priority] -= len(item.envelope.payload)
                self._in_flight += 1
                self._taken += 1
                key = item.envelope.issue_key
                if key is not None:
                    lane = self._lanes[key]
                    lane.popleft()
                    if not lane:
                        del self._lanes[key]
                    self._busy.add(key)
                return item
        return None

    def done(self, item: QueuedEvent) -> None:
        """Processing of ``item`` ended (either way): its issue's next event becomes eligible."""
        self._in_flight -= 1
        key = item.envelope.issue_key
        if key is None:
            return
        self._busy.discard(key)
        lane = self._lanes.get(key)
        if lane:
            self._schedule(lane[0])

    # --- Minimal hold and re-offer (issue 3), built to the shared contract so the rate-limit
    # --- tests run end to end. Issue 4's fuller queue (backoff policy, DLQ operations,
    # --- counters) replaces this block.

    def _schedule(self, item: QueuedEvent) -> None:
        if item.not_before > self._clock():
            heapq.heappush(self._held, (item.not_before, item.seq, item))
        else:
            heapq.heappush(self._ready[item.priority], item)

    def _release_held(self) -> None:
        now = self._clock()
        while self._held and self._held[0][0] <= now:
            _, _, item = heapq.heappop(self._held)
            heapq.heappush(self._ready[item.priority], item)

    def seconds_until_ready(self) -> float | None:
        """How long until the earliest held event becomes eligible (``None``: none is held)."""
        if not self._held:
            return None
        return max(0.0, self._held[0][0] - self._clock())

    def defer(self, item: QueuedEvent, not_before: float) -> None:
        """Put a taken event back at the front of its issue lane, held until ``not_before``.

        Called before ``done(item)``; no attempt is counted.
        """
        item.not_before = not_before
        size = len(item.envelope.payload)
        self._count += 1
        self._bytes += size
        self._count_by[item.priority] += 1
        self._bytes_by[item.priority] += size
        key = item.envelope.issue_key
        if key is None:
            self._schedule(item)
            return
        lane = self._lanes.get(key)
        if lane is None:
            self._lanes[key] = deque((item,))
        else:
            lane.appendleft(item)
        # ``done(item)`` follows: it frees the lane and schedules its head, this item.

    def retry(self, item: QueuedEvent, not_before: float, error: str) -> None:
        """A retryable failure: back in its place after ``not_before``, or dead-lettered."""
        item.attempts += 1
        if item.attempts >= self._max_attempts:
            self.dead_letter(item, "exhausted", error)
        else:
            self.defer(item, not_before)

    def dead_letter(self, item: QueuedEvent, reason: str, error: str) -> None:
        """Keep a taken event that will not be processed, with the reason (never silently lost)."""
        self._dead_lettered += 1
        self.dead_letters.append(DeadLetter(item, reason, error, self._clock()))

    def stats(self) -> QueueStats:
        return QueueStats(
            depth=self._count,
            bytes=self._bytes,
            in_flight=self._in_flight,
            depth_by_priority={p.name: self._count_by[p] for p in Priority},
            bytes_by_priority={p.name: self._bytes_by[p] for p in Priority},
            admitted=self._admitted,
            refused_by_priority={p.name: self._refused[p] for p in Priority},
            taken=self._taken,
            held=len(self._held),
            dead_lettered=self._dead_lettered,
        )
