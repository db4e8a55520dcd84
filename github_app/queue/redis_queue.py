"""The shared queue (``QUEUE_BACKEND=redis``): every replica admits to and takes from one Redis.

How the ``EventQueue`` contract is kept (layout and scripts: ``redis_scripts``):

- ``admit`` runs one script: the duplicate check against the delivery ids seen
  in the redelivery window, the admission bounds counted over all replicas,
  the event's record and its entry in its level's stream, all at once. The
  intake answers 202 only after Redis took it; a delivery seen by any replica
  is answered as a duplicate by every other (``DUPLICATE``). When Redis does
  not answer, ``admit`` refuses (``redis_unavailable``: 503 with Retry-After,
  GitHub keeps the delivery for recovery) and ``unavailable`` says why.
- Each replica reads the streams through one consumer group (one consumer per
  replica) into a local ``MemoryQueue``, which stays the scheduler: a pump
  task keeps a bounded prefetch of ready events there, so ``take`` stays
  synchronous and priorities, ageing, TTL and per-issue lanes are
  ``MemoryQueue``'s rules over what this replica holds. Round-robin across
  installations is therefore per replica, as are the local counters.
- One issue is never worked on by two replicas at once, and its events run in
  arrival order wherever they were read: each issue has a lane in Redis (its
  unfinished events in order) and a lease; a replica takes the lease only
  while the front of the lane is one of its own events, lets its events enter
  its scheduler from the front on, renews the lease while it has any there
  and releases it with the last (``redis_leases``). Its other events of the
  issue wait here, parked, and are looked at again every ``PARKED_RETRY`` s.
- Settles (``done``, ``retry``, ``defer``, ``dead_letter``) change the local
  scheduler at once and reach Redis through the ``Outbox``: a finished event's
  entry is acknowledged and deleted with its record; a retried or deferred one
  stays pending with its attempts, not-before and last error in its record,
  so a claim by another replica keeps them. Settles made while Redis is away
  are sent once it answers again; until its settle was sent a finished or
  dead-lettered event's entry stays this replica's (its upkeep touches it as
  one it holds), or another replica would claim it after an outage and do
  it again, the record of its succeeded processors waiting in the same outbox.
- A replica that dies leaves its entries pending: after ``claim_idle`` seconds
  without their owner touching them, another replica claims them
  (``XAUTOCLAIM``); the interrupted try was counted in the record when it was
  taken. A replica that shuts down gives its untaken and cut-off events back
  to the streams at once.
- The processors that succeeded per delivery live in Redis; a replica loads
  the record with the event, so a claimed event does not redo what another
  replica finished. Dead letters live in Redis too; each replica keeps a view
  of them (refreshed when they change) for ``/admin``'s list, re-drive and
  purge, which act on Redis.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from anyio.abc import TaskStatus
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from github_app.envelope import Envelope
from github_app.queue.dead_letters import DeadLetter, DeadLetterQueue
from github_app.queue.deliveries import RecentDeliveries
from github_app.queue.event import QueuedEvent
from github_app.queue.memory import (
    ADMITTED,
    DEFAULT_AGEING,
    DEFAULT_FILL_LIMITS,
    DEFAULT_TTL,
    DUPLICATE,
    Admission,
    MemoryQueue,
    QueueStats,
)
from github_app.queue.priority import Priority
from github_app.queue.redis_leases import IssueLeases
from github_app.queue.redis_outbox import Outbox
from github_app.queue.redis_scripts import (
    ADMIT,
    ATTEMPTS,
    DEAD,
    DROP_DEAD,
    FINISH,
    GIVE_BACK,
    GROUP,
    INDEX_FIELDS,
    REDRIVE,
    TOUCH,
    EventRecord,
    Keys,
    event_fields,
    read_index,
    read_record,
)
from github_app.queue.succeeded import REDELIVERY_WINDOW, SucceededProcessors
from github_app.redis_link import PREFIX, RedisLink, ReplicaSeen

log = logging.getLogger(__name__)

UNAVAILABLE = "redis_unavailable"
ADMIT_TIMEOUT = 5.0  # GitHub waits 10 s for the answer
PREFETCH = 32  # ready events a replica holds beyond those it is working on
HOLD_MAX = 2_000  # events a replica holds at most (ready, delayed, behind their issue, parked)
BLOCK = 1.0  # seconds a read waits for new entries
PARKED_RETRY = 0.2
SEEN_LOADED = 100_000  # delivery ids loaded at start-up for ``knows``
SHUTDOWN_TIMEOUT = 5.0

FORGET = "redis.call('ZREM', KEYS[1], ARGV[1])"
SUCCEEDED = "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])"
CLEARED = "redis.call('DEL', KEYS[1])"
DROP_ENTRY = """
if redis.call('XACK', KEYS[1], 'replicas', ARGV[1]) == 1 then
  redis.call('XDEL', KEYS[1], ARGV[1])
end
"""

_ERRORS = (RedisError, OSError)


@dataclass(frozen=True)
class SharedQueueStats:
    """The shared queue in Redis, over all replicas, and this replica's part in it."""

    replica_id: str
    problem: str | None
    replicas: list[ReplicaSeen] = field(default_factory=list)
    # entries in each level's stream: waiting to be read, or read and not settled yet
    depth_by_priority: dict[str, int] = field(default_factory=dict)
    pending_by_priority: dict[str, int] = field(default_factory=dict)  # read, not settled
    held_events: int = 0  # admitted and not finished, what the admission bounds count
    held_bytes: int = 0
    dead_letters: int = 0
    holding: int = 0  # events this replica holds (scheduled or parked)
    parked: int = 0  # waiting for an issue another replica works on
    leases: int = 0
    claimed: int = 0  # events claimed from replicas that stopped answering
    given_back: int = 0
    writes_waiting: int = 0
    settling: int = 0  # events settled here whose settles wait among those writes
    refused_unavailable: int = 0


@dataclass(frozen=True, slots=True)
class _Held:
    priority: Priority
    entry_id: bytes
    delivery_id: str


@dataclass(frozen=True, slots=True)
class _Settling:
    held: _Held
    write: int  # the outbox's count of writes once its settle was written


@dataclass(frozen=True, slots=True)
class _Entry:
    priority: Priority
    entry_id: bytes
    seq: int
    delivery_id: str


class RedisQueue:
    """``EventQueue`` over one Redis shared by every replica, scheduled by a local
    ``MemoryQueue``; ``run`` keeps it fed and its writes flowing."""

    def __init__(
        self,
        link: RedisLink,
        max_events: int,
        max_bytes: int,
        *,
        claim_idle: float = 60.0,
        dead_letter_max: int = 10_000,
        ttl: Mapping[Priority, float] = DEFAULT_TTL,
        ageing: float = DEFAULT_AGEING,
        fill_limits: Mapping[Priority, float] = DEFAULT_FILL_LIMITS,
        retry_after: int = 30,
        notify: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        prefix: str = PREFIX,
        window: float = REDELIVERY_WINDOW,
        prefetch: int = PREFETCH,
    ) -> None:
        self._link = link
        self._client = link.client
        self._me = link.replica_id
        self._keys = Keys(prefix)
        self._prefix = prefix
        self._claim_idle = claim_idle
        self._dead_letter_max = dead_letter_max
        self._retry_after = retry_after
        self._notify = notify
        self._clock = clock
        self._wall = wall_clock
        self._window = window
        self._prefetch = prefetch
        self._event_limit = {p: max(1, int(max_events * fill_limits[p])) for p in Priority}
        self._byte_limit = {p: max(1, int(max_bytes * fill_limits[p])) for p in Priority}
        self._outbox = Outbox(link)
        # EVALSHA, loaded again by itself after a Redis restart: the payload, not the script,
        # goes over the wire with each delivery
        self._admit_script = self._client.register_script(ADMIT)
        self._dlq = DeadLetterQueue(dead_letter_max, clock=wall_clock)
        records = _SharedRecords(self._outbox, self._keys, window)
        self._deliveries = RecentDeliveries(journal=records, clock=wall_clock)
        self.succeeded = SucceededProcessors(journal=records, clock=wall_clock, window=window)
        self._memory = MemoryQueue(
            max_events,
            max_bytes,
            clock=clock,
            fill_limits=fill_limits,
            retry_after=retry_after,
            ttl=ttl,
            ageing=ageing,
            dead_letters=self._dlq,
            deliveries=self._deliveries,
            journal=self,
        )
        self._held: dict[int, _Held] = {}  # seq -> where its entry is, for what this replica holds
        # seq -> the entry of an event settled here whose settle the outbox has not sent yet
        self._settling: dict[int, _Settling] = {}
        # a dead replica's leases time out when its events may be claimed
        self._leases = IssueLeases(self._client, self._keys, self._me, claim_idle, self._outbox)
        self._lost: set[int] = set()  # events another replica claimed from this one
        self._fresh_dead: set[str] = set()  # dead-lettered here since the view was last read
        self._dead_version: bytes | None = None
        self._room = anyio.Event()
        self._prepared = anyio.Event()  # the consumer groups exist: upkeep may start
        self._shared = SharedQueueStats(self._me, None)
        self._admitted = 0
        self._refused: Counter[Priority] = Counter()
        self._claimed = 0
        self._given_back = 0
        self.refused_unavailable = 0
        self._feeding: anyio.CancelScope | None = None
        self._fed = anyio.Event()

    def __len__(self) -> int:
        return len(self._memory)

    @property
    def replica_id(self) -> str:
        return self._me

    @property
    def unavailable(self) -> str | None:
        """Why events cannot be admitted now (Redis does not answer), or ``None``."""
        return self._link.problem

    # --- admission ----------------------------------------------------------------------------

    async def admit(self, envelope: Envelope, priority: Priority) -> Admission:
        keys = self._keys
        size = len(envelope.payload)
        now = self._wall()
        try:
            with anyio.CancelScope(shield=True), anyio.fail_after(ADMIT_TIMEOUT):
                answer: Any = await self._admit_script(
                    [
                        keys.seen,
                        keys.seq,
                        keys.held,
                        keys.stream(priority),
                        keys.dead,
                        keys.dead_ids,
                        keys.dead_version,
                    ],
                    [
                        envelope.delivery_id,
                        repr(now),
                        repr(self._window),
                        self._event_limit[priority],
                        self._byte_limit[priority],
                        size,
                        self._prefix,
                        keys.lane(envelope.issue_key),
                        *event_fields(envelope, priority, now),
                    ],
                )
        except (*_ERRORS, TimeoutError) as exc:
            self.refused_unavailable += 1
            reason = self._link.failed(exc)
            return Admission(False, reason, self._retry_after, UNAVAILABLE)
        self._link.answered()
        verdict = answer[0].decode()
        if verdict == "duplicate":
            self._deliveries.load(envelope.delivery_id)
            return DUPLICATE
        if verdict != "ok":
            self._refused[priority] += 1
            reason = f"queue full for {priority.name} ({verdict})"
            return Admission(False, reason, self._retry_after)
        self._deliveries.load(envelope.delivery_id)
        self._admitted += 1
        return ADMITTED

    def knows(self, delivery_id: str) -> bool:
        """Seen by this replica (admitted here, read here, loaded at start, or answered as a
        duplicate); ``admit`` asks Redis, which knows what every replica saw."""
        return delivery_id in self._deliveries

    async def seen(self, delivery_ids: Sequence[str]) -> set[str]:
        """Which of these deliveries any replica admitted in the redelivery window (recovery
        asks before it requests a redelivery); raises ``RedisError`` when Redis is away."""
        found = await seen_in(self._client, self._keys, delivery_ids, self._wall() - self._window)
        for delivery_id in found:
            self._deliveries.load(delivery_id)
        return found

    def accepts(self, priority: Priority, size: int = 0, events: int = 1) -> bool:
        """Would it fit, by the shared counts last read (every few seconds)?"""
        shared = self._shared
        return (
            shared.held_events + events <= self._event_limit[priority]
            and shared.held_bytes + size <= self._byte_limit[priority]
        )

    # --- taking and settling (the scheduler's rules; Redis hears through the journal) --------

    def take(self) -> QueuedEvent | None:
        item = self._memory.take()
        while item is not None and item.seq in self._lost:
            self._lost.discard(item.seq)
            self._memory.done(item)  # not this replica's any more: nothing is written for it
            item = self._memory.take()
        self._room.set()
        return item

    def done(self, item: QueuedEvent, *, failed: bool = False) -> None:
        self._memory.done(item, failed=failed)

    def retry(self, item: QueuedEvent, not_before: float, error: str) -> None:
        self._memory.retry(item, not_before, error)

    def defer(self, item: QueuedEvent, not_before: float) -> None:
        self._memory.defer(item, not_before)

    def dead_letter(self, item: QueuedEvent, reason: str, error: str | None) -> None:
        self._memory.dead_letter(item, reason, error)

    def dead_letter_installation(
        self, installation_id: int | None, reason: str, error: str | None
    ) -> int:
        """This replica's waiting events of the installation; those other replicas hold meet
        the same answer from GitHub there."""
        return self._memory.dead_letter_installation(installation_id, reason, error)

    def next_due_in(self) -> float | None:
        return self._memory.next_due_in()

    def ready_by_priority(self) -> dict[Priority, int]:
        return self._memory.ready_by_priority()

    def waiting_delivery_ids(self) -> list[str]:
        return self._memory.waiting_delivery_ids()

    # --- dead letters (a view of Redis's; changes go to Redis) --------------------------------

    def list_dead_letters(
        self, *, limit: int | None = None, reason: str | None = None
    ) -> list[DeadLetter]:
        return self._memory.list_dead_letters(limit=limit, reason=reason)

    def redrive(self, delivery_ids: Iterable[str] | None = None) -> int:
        """Back to the shared streams as new arrivals (bounded at CRITICAL's limit in Redis;
        what does not fit stays a dead letter and shows again in the view)."""
        entries = self._dlq.remove(delivery_ids)
        keys = self._keys
        now = self._wall()
        for entry in entries:
            item = entry.item
            self._deliveries.load(entry.delivery_id)
            self._outbox.write(
                REDRIVE,
                [
                    keys.dead,
                    keys.dead_ids,
                    keys.seq,
                    keys.held,
                    keys.seen,
                    keys.stream(item.priority),
                    keys.dead_version,
                ],
                [
                    item.seq,
                    entry.delivery_id,
                    self._event_limit[Priority.CRITICAL],
                    self._byte_limit[Priority.CRITICAL],
                    repr(now),
                    self._prefix,
                ],
                f"the re-drive of {entry.delivery_id}",
            )
        self._dlq.count_redriven(len(entries))
        return len(entries)

    def purge_dead_letters(self, delivery_ids: Iterable[str] | None = None) -> int:
        return self._memory.purge_dead_letters(delivery_ids)

    # --- QueueJournal: what the scheduler changed, written to Redis ---------------------------

    def _wall_of(self, queue_time: float) -> float:
        return 0.0 if queue_time <= 0 else self._wall() + (queue_time - self._clock())

    def _attempts(self, item: QueuedEvent) -> None:
        if item.seq not in self._held:
            return
        self._outbox.write(
            ATTEMPTS,
            [self._keys.event(item.seq)],
            [item.attempts, repr(self._wall_of(item.not_before)), item.last_error or ""],
            f"the attempts of {item.envelope.delivery_id}",
        )

    def taken(self, item: QueuedEvent) -> None:
        self._attempts(item)

    def requeued(self, item: QueuedEvent) -> None:
        self._attempts(item)

    def finished(self, item: QueuedEvent) -> None:
        held = self._held.pop(item.seq, None)
        if held is not None:
            keys = self._keys
            self._outbox.write(
                FINISH,
                [keys.stream(held.priority), keys.held, keys.event(item.seq)],
                [held.entry_id, item.size, keys.lane(item.envelope.issue_key), item.seq],
                f"the end of {held.delivery_id}",
            )
            self._settling[item.seq] = _Settling(held, self._outbox.written)
        self._left(item)

    def dead_lettered(self, entry: DeadLetter) -> None:
        item = entry.item
        held = self._held.pop(item.seq, None)
        if held is not None:
            keys = self._keys
            self._fresh_dead.add(entry.delivery_id)
            self._outbox.write(
                DEAD,
                [
                    keys.stream(held.priority),
                    keys.held,
                    keys.event(item.seq),
                    keys.dead,
                    keys.dead_ids,
                    keys.dead_version,
                ],
                [
                    held.entry_id,
                    item.size,
                    entry.reason,
                    repr(entry.dead_lettered_at),
                    item.attempts,
                    entry.last_error or "",
                    item.seq,
                    entry.delivery_id,
                    self._dead_letter_max,
                    self._prefix,
                    keys.lane(item.envelope.issue_key),
                ],
                f"the dead letter {entry.delivery_id}",
            )
            self._settling[item.seq] = _Settling(held, self._outbox.written)
        self._left(item)

    def redriven(self, old_seq: int, item: QueuedEvent) -> None:
        """Not used: a re-drive goes to Redis (``redrive``), not to this replica's scheduler."""

    def dropped(self, entries: Iterable[DeadLetter]) -> None:
        keys = self._keys
        for entry in entries:
            seq = entry.item.seq
            self._outbox.write(
                DROP_DEAD,
                [keys.dead, keys.dead_ids, keys.event(seq), keys.dead_version],
                [seq, entry.delivery_id],
                f"the purge of {entry.delivery_id}",
            )

    def _left(self, item: QueuedEvent) -> None:
        """``item`` left the scheduler: with its issue's last event here goes the lease."""
        self._room.set()
        key = item.envelope.issue_key
        if key is not None:
            self._leases.left(key, item.seq)

    # --- running: the pump, upkeep and the outbox ---------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Feed the scheduler from Redis and send its writes, for the life of the app."""
        async with anyio.create_task_group() as group:
            await group.start(self.send_writes)
            group.start_soon(self.feed)
            task_status.started()

    async def send_writes(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The outbox: this replica's writes sent in order, for the life of the app (``run``
        runs it with ``feed``; a test runs ``feed`` alone to hold the writes back)."""
        await self._outbox.run(task_status=task_status)

    async def feed(self) -> None:
        """The pump and the upkeep, until ``give_back`` stops them (the outbox goes on)."""
        with anyio.CancelScope() as self._feeding:
            async with anyio.create_task_group() as group:
                group.start_soon(self._pump)
                group.start_soon(self._upkeep)
        self._fed.set()

    async def _pump(self) -> None:
        prepared = False
        delay = 0.05
        while True:
            try:
                if not prepared:
                    await self._prepare()
                    prepared = True
                    self._prepared.set()
                await self._fetch(BLOCK)
                delay = 0.05
            except ResponseError as exc:
                prepared = False  # NOGROUP: Redis lost its data (no persistence); make them again
                log.error("reading the shared queue: %s", self._link.describe(exc))
                await anyio.sleep(delay)
            except _ERRORS as exc:
                self._link.failed(exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _prepare(self) -> None:
        """The consumer group on every stream, and the delivery ids seen recently (``knows``)."""
        for priority in Priority:
            try:
                await self._client.xgroup_create(
                    self._keys.stream(priority), GROUP, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        since = self._wall() - self._window
        seen: Any = await self._client.zrangebyscore(
            self._keys.seen, since, "+inf", start=0, num=SEEN_LOADED
        )
        for delivery_id in seen:
            self._deliveries.load(delivery_id.decode())
        self._link.answered()

    def _wanted(self) -> int:
        """How many more entries to read: ready events up to the prefetch, all held at most
        ``HOLD_MAX``. Parked events do not count: the earlier event they wait for may still
        be unread in a stream."""
        ready = sum(self._memory.ready_by_priority().values())
        return min(self._prefetch - ready, HOLD_MAX - len(self._held))

    async def _fetch(self, block: float | None) -> None:
        """One round: leases for parked events, then new entries while there is room."""
        parked = self._leases.parked
        if parked:
            await self._take_leases()
        wanted = self._wanted()
        if wanted <= 0:
            self._room = anyio.Event()
            with anyio.move_on_after(PARKED_RETRY if parked else BLOCK):
                await self._room.wait()
            return
        if block is not None and parked:
            block = PARKED_RETRY
        streams = {self._keys.stream(p): ">" for p in Priority}
        answer: Any = await self._client.xreadgroup(
            GROUP,
            self._me,
            streams,  # type: ignore[arg-type]
            count=wanted,
            block=None if block is None else int(block * 1000),
        )
        self._link.answered()
        entries = [
            _entry(stream, entry_id, fields)
            for stream, found in answer or []
            for entry_id, fields in found
            if fields
        ]
        if entries:
            await self._receive(entries)

    async def _receive(self, entries: list[_Entry]) -> None:
        """Read the records of entries now pending here; queue them, or park them."""
        keys = self._keys
        pipe = self._client.pipeline(transaction=False)
        for entry in entries:
            pipe.hgetall(keys.event(entry.seq))
            pipe.get(keys.succeeded(entry.delivery_id))
        answers = await pipe.execute()
        arrived: list[EventRecord] = []
        for index, entry in enumerate(entries):
            raw, done_by = answers[2 * index], answers[2 * index + 1]
            if not raw or b"dr" in raw:  # settled meanwhile (a late claim): only the entry is left
                self._outbox.write(
                    DROP_ENTRY, [keys.stream(entry.priority)], [entry.entry_id], "a stale entry"
                )
                continue
            if done_by:
                at, *names = done_by.decode().split("\n")
                self.succeeded.load(entry.delivery_id, names, float(at))
            self._held[entry.seq] = _Held(entry.priority, entry.entry_id, entry.delivery_id)
            arrived.append(read_record(entry.seq, raw))
        arrived.sort(key=lambda record: record.seq)
        for record in arrived:
            key = record.envelope.issue_key
            if key is None:
                self._place(record)
            else:  # it enters the scheduler when its issue's lease and turn are this replica's
                self._leases.park(key, record)
        if self._leases.parked:
            await self._take_leases()

    def _place(self, record: EventRecord) -> None:
        now = self._wall()
        envelope = record.envelope
        self._deliveries.load(envelope.delivery_id)
        if envelope.issue_key is not None:
            self._leases.placed(envelope.issue_key, record.seq)
        self._memory.restore(
            envelope,
            record.priority,
            record.size,
            seq=record.seq,
            age=max(0.0, now - record.admitted_at),
            attempts=record.attempts,
            not_before_in=record.not_before - now if record.not_before else 0.0,
            last_error=record.last_error,
        )
        self._notify()

    async def _take_leases(self) -> None:
        for record in await self._leases.take():
            self._place(record)

    async def _upkeep(self) -> None:
        """Keep what this replica holds its own, claim what dead replicas left, read stats.

        Claims wait until this replica has been connected for ``claim_idle``: the idle time
        of an entry grows while Redis is away too, and after an outage every live replica
        must have touched its entries again before any of them looks like a dead one's
        (those it settled meanwhile too: their settles wait in its outbox, sent up to
        ``RETRY_MAX`` after Redis answers again).
        """
        period = max(0.05, min(self._claim_idle / 3, 2.0))
        await self._prepared.wait()
        connected_at: float | None = None
        while True:
            try:
                await self._touch()
                await self._leases.renew()
                now = anyio.current_time()
                connected_at = now if connected_at is None else connected_at
                if now - connected_at >= self._claim_idle:
                    await self._claim()
                await self._refresh()
            except ResponseError as exc:  # NOGROUP after Redis lost its data: the pump mends it
                log.warning("shared queue upkeep: %s", self._link.describe(exc))
            except _ERRORS as exc:
                self._link.failed(exc)
                connected_at = None
            await anyio.sleep(period)

    async def _touch(self) -> None:
        """Reset the idle time of every entry held here, or settled here with its settle not
        sent yet, so no other replica claims it."""
        sent = self._outbox.sent
        self._settling = {s: e for s, e in self._settling.items() if e.write > sent}
        by_stream: dict[Priority, list[bytes]] = {}
        for held in (*self._held.values(), *(e.held for e in self._settling.values())):
            by_stream.setdefault(held.priority, []).append(held.entry_id)
        for priority, ids in by_stream.items():
            for start in range(0, len(ids), 500):
                lost: Any = await self._client.eval(
                    TOUCH, 1, self._keys.stream(priority), self._me, *ids[start : start + 500]
                )
                if lost:
                    self._let_go(priority, set(lost))

    def _let_go(self, priority: Priority, entry_ids: set[bytes]) -> None:
        """Entries another replica claimed (this one did not answer for ``claim_idle``): they
        are its events now; this replica drops them where they wait (``take`` skips them).
        A settled one is forgotten without a word: its settle was sent meanwhile (acknowledged
        and deleted, it is no longer pending), or it was claimed, and is left to its claimer."""

        def where(entries: Mapping[int, _Held]) -> set[int]:
            return {
                seq
                for seq, held in entries.items()
                if held.priority is priority and held.entry_id in entry_ids
            }

        for seq in where({s: e.held for s, e in self._settling.items()}):
            del self._settling[seq]
        seqs = where(self._held)
        if not seqs:
            return
        for seq in seqs:
            del self._held[seq]
        self._lost |= seqs
        self._leases.drop(seqs)
        log.warning(
            "%d event(s) held here were claimed by another replica (this one did not answer "
            "for %gs); they are left to it",
            len(seqs),
            self._claim_idle,
        )

    async def _claim(self) -> None:
        """Entries idle longer than ``claim_idle``: their replica stopped; take them over."""
        wanted = self._wanted()
        if wanted <= 0:
            return
        claimed: list[_Entry] = []
        for priority in Priority:
            stream = self._keys.stream(priority)
            answer = await self._client.xautoclaim(
                stream, GROUP, self._me, int(self._claim_idle * 1000), "0-0", count=wanted
            )
            claimed += [
                _entry(stream.encode(), entry_id, fields)
                for entry_id, fields in answer[1]
                if fields
            ]
        claimed = [
            entry
            for entry in claimed
            if entry.seq not in self._held and entry.seq not in self._settling
        ]
        if claimed:
            self._claimed += len(claimed)
            log.info(
                "claimed %d event(s) left pending for more than %gs by a replica that stopped: %s",
                len(claimed),
                self._claim_idle,
                ", ".join(entry.delivery_id for entry in claimed[:10]),
            )
            await self._receive(claimed)

    async def _refresh(self) -> None:
        """The shared counts, and this replica's view of the dead letters when they changed."""
        keys = self._keys
        pipe = self._client.pipeline(transaction=False)
        for priority in Priority:
            pipe.xlen(keys.stream(priority))
            pipe.xpending(keys.stream(priority), GROUP)
        pipe.zcard(keys.dead)
        pipe.hmget(keys.held, ["n", "b"])
        pipe.get(keys.dead_version)
        answers = await pipe.execute()
        depth = {p.name: int(answers[2 * p]) for p in Priority}
        pending = {p.name: int(answers[2 * p + 1]["pending"]) for p in Priority}
        dead, held, version = answers[8:]
        self._shared = SharedQueueStats(
            replica_id=self._me,
            problem=None,
            replicas=self._link.replicas,
            depth_by_priority=depth,
            pending_by_priority=pending,
            held_events=int(held[0] or 0),
            held_bytes=int(held[1] or 0),
            dead_letters=int(dead),
        )
        if version != self._dead_version:
            await self._read_dead_letters()
            self._dead_version = version

    async def _read_dead_letters(self) -> None:
        await self._outbox.flush()  # this replica's own dead letters are in Redis first
        self._fresh_dead = set()  # from here on, those made meanwhile may be missing there
        keys = self._keys
        found: Any = await self._client.zrange(keys.dead, 0, -1)
        seqs = [int(seq) for seq in found]
        pipe = self._client.pipeline(transaction=False)
        for seq in seqs:
            pipe.hmget(keys.event(seq), list(INDEX_FIELDS))
        answers = await pipe.execute()
        records = [read_index(seq, values) for seq, values in zip(seqs, answers, strict=True)]
        remote = {r.envelope.delivery_id: r for r in records if r.dead_reason is not None}
        local = {entry.delivery_id for entry in self._dlq.entries()}
        self._dlq.remove([d for d in local if d not in remote and d not in self._fresh_dead])
        for delivery_id, record in remote.items():
            if delivery_id in local:
                continue
            self._memory.restore_dead_letter(
                record.envelope,
                record.priority,
                record.size,
                seq=record.seq,
                attempts=record.attempts,
                reason=record.dead_reason or "",
                last_error=record.last_error,
                at=record.dead_at,
            )

    async def sync(self) -> None:
        """Catch up now (tests, and the CLI): writes sent, new entries read, views refreshed."""
        await self._outbox.flush()
        await self._prepare()
        await self._claim()
        await self._fetch(None)
        await self._outbox.flush()
        await self._refresh()

    async def give_back(self) -> int:
        """Shutdown: every event held here goes back to the streams for the other replicas,
        the leases are released, the writes sent; returns how many went back."""
        if self._feeding is not None:  # read nothing more: what comes now is for the others
            self._feeding.cancel()
            await self._fed.wait()
        keys = self._keys
        held, self._held = self._held, {}
        for seq, where in held.items():
            self._outbox.write(
                GIVE_BACK,
                [keys.stream(where.priority)],
                [where.entry_id, seq, where.delivery_id],
                f"the return of {where.delivery_id}",
            )
        self._leases.release_all()
        self._given_back += len(held)
        with anyio.move_on_after(SHUTDOWN_TIMEOUT):
            await self._outbox.flush()
        if self._outbox.written > self._outbox.sent:
            log.error(
                "shutdown: Redis did not answer; %d event(s) held here stay pending in Redis and "
                "are claimed by another replica after %gs",
                len(held),
                self._claim_idle,
            )
        return len(held)

    # --- stats --------------------------------------------------------------------------------

    def stats(self) -> QueueStats:
        shared = replace(
            self._shared,
            problem=self._link.problem,
            replicas=self._link.replicas,
            holding=len(self._held),
            parked=self._leases.parked,
            leases=len(self._leases),
            claimed=self._claimed,
            given_back=self._given_back,
            writes_waiting=len(self._outbox),
            settling=len(self._settling),
            refused_unavailable=self.refused_unavailable,
        )
        return replace(
            self._memory.stats(),
            admitted=self._admitted,
            refused_by_priority={p.name: self._refused[p] for p in Priority},
            shared=shared,
        )


async def seen_in(client: Redis, keys: Keys, delivery_ids: Sequence[str], since: float) -> set[str]:
    """Which of ``delivery_ids`` some replica admitted at or after ``since`` (wall clock)."""
    if not delivery_ids:
        return set()
    scores = await client.zmscore(keys.seen, list(delivery_ids))
    return {d for d, at in zip(delivery_ids, scores, strict=True) if at and at >= since}


class _SharedRecords:
    """``DeliveryJournal`` and ``SucceededJournal`` onto Redis: the delivery ids seen and the
    processors that succeeded per delivery, shared by every replica."""

    def __init__(self, outbox: Outbox, keys: Keys, window: float) -> None:
        self._outbox = outbox
        self._keys = keys
        self._window = window

    def remembered(self, delivery_id: str, at: float) -> None:
        """Nothing to write: ``admit``'s script recorded it."""

    def forgotten(self, delivery_id: str) -> None:
        self._outbox.write(FORGET, [self._keys.seen], [delivery_id], f"forget {delivery_id}")

    def succeeded(self, delivery_id: str, processors: tuple[str, ...], at: float) -> None:
        value = "\n".join((repr(at), *processors))
        self._outbox.write(
            SUCCEEDED,
            [self._keys.succeeded(delivery_id)],
            [value, max(1, int(self._window))],
            f"the processors done on {delivery_id}",
        )

    def cleared(self, delivery_id: str) -> None:
        self._outbox.write(CLEARED, [self._keys.succeeded(delivery_id)], [], "a cleared record")


def _entry(stream: bytes, entry_id: bytes, fields: dict[bytes, bytes]) -> _Entry:
    level = stream.decode().rsplit(":", 1)[1]
    return _Entry(Priority[level], entry_id, int(fields[b"s"]), fields[b"d"].decode())
