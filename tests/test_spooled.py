"""The queue backends' contract (``EventQueue``): the same tests against the SQLite spool and
the shared Redis queue (and memory where no restart is involved): admission, duplicates,
take and settle, attempts, dead letters, re-drive, and a restart that keeps everything.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import redis.asyncio as redis

from github_app.queue.dead_letters import EXHAUSTED, DeadLetterQueue
from github_app.queue.deliveries import RecentDeliveries
from github_app.queue.journal import SpoolJournal
from github_app.queue.memory import MemoryQueue
from github_app.queue.priority import Priority
from github_app.queue.redis_queue import RedisQueue
from github_app.queue.redis_scripts import GROUP, Keys
from github_app.queue.spool import GroupCommitter, SpoolStore
from github_app.queue.spooled import SpooledQueue, replay
from github_app.queue.succeeded import REDELIVERY_WINDOW, SucceededProcessors
from github_app.redis_link import PREFIX, RedisLink
from tests.helpers_unit import envelope
from tests.redis_server import RedisServer
from tests.test_spool import file_size_limit

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Spooled:
    queue: SpooledQueue
    memory: MemoryQueue
    store: SpoolStore
    committer: GroupCommitter
    deliveries: RecentDeliveries
    succeeded: SucceededProcessors


@dataclass
class Opened:
    """A backend's queue as the runtime builds it, its tasks running.

    ``sync``: until the backend caught up (writes stored; for Redis, entries admitted or
    left pending by a replica that died read into this one); ``unavailable``: storage fails
    inside the block (disk full; Redis down)."""

    queue: SpooledQueue | RedisQueue | MemoryQueue
    succeeded: SucceededProcessors
    sync: Callable[[], Awaitable[None]]
    unavailable: Callable[[], AbstractAsyncContextManager[None]]


Open = Callable[..., AbstractAsyncContextManager[Opened]]


@asynccontextmanager
async def spooled(
    folder: Path, clock: FakeClock, *, max_events: int = 100
) -> AsyncIterator[Spooled]:
    """A spooled queue on ``folder`` as the runtime builds it, replayed, its writer running."""
    store = SpoolStore(folder)
    committer = GroupCommitter(store, window=REDELIVERY_WINDOW, clock=clock)
    journal = SpoolJournal(committer, queue_clock=clock, wall_clock=clock)
    deliveries = RecentDeliveries(journal=journal, clock=clock)
    succeeded = SucceededProcessors(journal=journal, clock=clock)
    memory = MemoryQueue(
        max_events,
        10**8,
        clock=clock,
        dead_letters=DeadLetterQueue(clock=clock),
        deliveries=deliveries,
        journal=journal,
    )
    replay(store, memory, deliveries, succeeded, window=REDELIVERY_WINDOW, clock=clock)
    queue = SpooledQueue(memory, store, committer, clock=clock)
    try:
        async with anyio.create_task_group() as group:
            await group.start(committer.run)
            yield Spooled(queue, memory, store, committer, deliveries, succeeded)
            group.cancel_scope.cancel()
    finally:
        store.close()


@asynccontextmanager
async def opened_spool(
    folder: Path, clock: FakeClock, *, max_events: int = 100
) -> AsyncIterator[Opened]:
    async with spooled(folder, clock, max_events=max_events) as s:

        @asynccontextmanager
        async def full_disk() -> AsyncIterator[None]:
            with file_size_limit(1024 * 1024):
                yield

        yield Opened(s.queue, s.succeeded, s.committer.flush, full_disk)


@asynccontextmanager
async def opened_redis(
    server: RedisServer, clock: FakeClock, *, max_events: int = 100
) -> AsyncIterator[Opened]:
    """A new replica on ``server``; leaving the block is a replica that died (nothing given
    back): a later one claims what it held."""
    link = RedisLink(server.url, clock=clock)
    queue = RedisQueue(link, max_events, 10**8, claim_idle=0.05, clock=clock, wall_clock=clock)
    keys = Keys(PREFIX)

    async def pending_elsewhere() -> int:
        """Entries read by a replica that died, not yet claimed by this one."""
        count = 0
        async with redis.Redis.from_url(server.url) as direct:  # fresh: Redis may have restarted
            for priority in Priority:
                summary = await direct.xpending(keys.stream(priority), GROUP)
                count += sum(
                    int(c["pending"])
                    for c in summary["consumers"]
                    if c["name"].decode() != link.replica_id
                )
        return count

    async def sync() -> None:
        with anyio.fail_after(10):
            while True:
                await queue.sync()
                shared = queue.stats().shared
                parked = getattr(shared, "parked", 0)
                if not parked and not await pending_elsewhere():
                    return
                await anyio.sleep(0.02)

    @asynccontextmanager
    async def redis_down() -> AsyncIterator[None]:
        server.stop()
        try:
            yield
        finally:
            server.start()

    try:
        async with anyio.create_task_group() as group:
            await group.start(queue.run)
            await sync()
            yield Opened(queue, queue.succeeded, sync, redis_down)
            group.cancel_scope.cancel()
    finally:
        await link.aclose()


@asynccontextmanager
async def opened_memory(
    folder: Path, clock: FakeClock, *, max_events: int = 100
) -> AsyncIterator[Opened]:
    deliveries = RecentDeliveries(clock=clock)
    succeeded = SucceededProcessors(clock=clock)
    memory = MemoryQueue(
        max_events,
        10**8,
        clock=clock,
        dead_letters=DeadLetterQueue(clock=clock),
        deliveries=deliveries,
    )

    async def nothing() -> None:
        pass

    @asynccontextmanager
    async def never() -> AsyncIterator[None]:
        pytest.skip("memory cannot fail to store")
        yield

    yield Opened(memory, succeeded, nothing, never)


def backend_fixture(*names: str) -> Callable[..., Iterator[Open]]:
    @pytest.fixture(params=names)
    def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Open]:
        if request.param == "sqlite":
            yield lambda clock, **kw: opened_spool(tmp_path, clock, **kw)
        elif request.param == "memory":
            yield lambda clock, **kw: opened_memory(tmp_path, clock, **kw)
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            yield lambda clock, **kw: opened_redis(server, clock, **kw)

    return backend


durable = backend_fixture("sqlite", "redis")
any_backend = backend_fixture("memory", "sqlite", "redis")


async def test_an_admitted_event_is_on_disk_and_its_payload_is_not_in_memory(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with spooled(tmp_path, clock) as s:
        body = os.urandom(500)
        sent = envelope("d-1", payload=body)
        admission = await s.queue.admit(sent, Priority.NORMAL)
        assert admission.admitted
        # committed: another connection sees it before anything else is written
        other = SpoolStore(tmp_path)
        try:
            assert [row.envelope.delivery_id for row in other.events()] == ["d-1"]
        finally:
            other.close()
        assert s.queue.stats().bytes == 500  # admission still counts the compressed size
        item = s.queue.take()
        assert item is not None and item.envelope == sent  # payload and raw size read back
        s.queue.retry(item, clock.now + 5, "502")
        assert item.envelope == sent._replace(payload=b"", raw_size=0)  # let go while it waits


async def test_a_restart_queues_again_what_was_queued_or_in_flight_in_arrival_order(
    durable: Open,
) -> None:
    clock = FakeClock()
    async with durable(clock) as s:
        for n in range(1, 5):
            await s.queue.admit(
                envelope(f"d-{n}", issue_number=n, received_at=clock.now), Priority.NORMAL
            )
        await s.sync()
        first = s.queue.take()
        second = s.queue.take()
        assert first is not None and second is not None
        s.queue.done(first)  # finished: deleted
        s.succeeded.add("d-3", "labeler")
        s.queue.retry(second, clock.now + 30, "GitHub answered 502")
        third = s.queue.take()  # d-3: in flight when the process dies
        assert third is not None and third.envelope.delivery_id == "d-3"
        await s.sync()
    # the process died here: nothing more was settled
    clock.now += 10
    async with durable(clock) as s:
        assert len(s.queue) == 3
        assert s.queue.knows("d-1") and s.queue.knows("d-4")  # redeliveries are duplicates
        assert s.succeeded.of("d-3") == ("labeler",)
        order = []
        while (item := s.queue.take()) is not None:
            envelope_ = item.envelope
            order.append(
                (envelope_.delivery_id, item.attempts, envelope_.payload, envelope_.raw_size)
            )
        # d-2 waits out its back-off (20 s more); d-3 counted its interrupted try
        assert order == [("d-3", 2, b"x" * 10, 10), ("d-4", 1, b"x" * 10, 10)]
        clock.now += 21
        retried = s.queue.take()
        assert retried is not None
        assert (retried.envelope.delivery_id, retried.attempts, retried.last_error) == (
            "d-2",
            2,
            "GitHub answered 502",
        )


async def test_a_delivery_admitted_once_is_a_duplicate_after_a_restart(
    durable: Open,
) -> None:
    clock = FakeClock()
    async with durable(clock) as s:
        assert (await s.queue.admit(envelope("d-1"), Priority.NORMAL)).admitted
        await s.sync()
    async with durable(clock) as s:
        assert s.queue.knows("d-1")  # the intake answers GitHub's redelivery as a duplicate
        assert len(s.queue) == 1


async def test_dead_letters_survive_a_restart_and_can_be_redriven_with_their_payload(
    durable: Open,
) -> None:
    clock = FakeClock()
    body = os.urandom(300)
    async with durable(clock) as s:
        await s.queue.admit(envelope("d-dead", payload=body), Priority.HIGH)
        await s.sync()
        item = s.queue.take()
        assert item is not None
        s.queue.dead_letter(item, EXHAUSTED, "GitHub answered 502")
        await s.sync()
    async with durable(clock) as s:
        [entry] = s.queue.list_dead_letters()
        assert (entry.delivery_id, entry.reason, entry.attempts) == ("d-dead", EXHAUSTED, 1)
        assert s.queue.redrive() == 1
        await s.sync()
        again = s.queue.take()
        assert again is not None
        assert (again.envelope.payload, again.attempts, again.priority) == (body, 1, Priority.HIGH)
        s.queue.done(again)
        await s.sync()
    async with durable(clock) as s:
        assert len(s.queue) == 0 and s.queue.list_dead_letters() == []


async def test_purged_dead_letters_are_gone_after_a_restart(any_backend: Open) -> None:
    clock = FakeClock()
    async with any_backend(clock) as s:
        for name in ("a", "b"):
            await s.queue.admit(envelope(name), Priority.LOW)
        await s.sync()
        for _ in range(2):
            item = s.queue.take()
            assert item is not None
            s.queue.dead_letter(item, EXHAUSTED, "502")
        await s.sync()
        assert s.queue.purge_dead_letters(["a"]) == 1
        await s.sync()
        assert [e.delivery_id for e in s.queue.list_dead_letters()] == ["b"]
        assert not s.queue.knows("a")  # given up: GitHub's redelivery is accepted again


async def test_a_redelivery_replaces_the_dead_letter_on_disk_too(durable: Open) -> None:
    clock = FakeClock()
    async with durable(clock) as s:
        await s.queue.admit(envelope("d-1"), Priority.NORMAL)
        await s.sync()
        item = s.queue.take()
        assert item is not None
        s.queue.dead_letter(item, EXHAUSTED, "boom")
        await s.sync()
        assert (await s.queue.admit(envelope("d-1"), Priority.NORMAL)).admitted  # redelivered
        await s.sync()
    async with durable(clock) as s:
        assert s.queue.list_dead_letters() == []
        assert len(s.queue) == 1


async def test_admission_counts_events_still_being_committed(any_backend: Open) -> None:
    clock = FakeClock()
    async with any_backend(clock, max_events=4) as s:
        results = []

        async def offer(n: int) -> None:
            admission = await s.queue.admit(envelope(f"d-{n}", issue_number=n), Priority.CRITICAL)
            results.append(admission.admitted)

        async with anyio.create_task_group() as group:
            for n in range(6):
                group.start_soon(offer, n)
        assert sorted(results) == [False, False, True, True, True, True]
        await s.sync()
        assert len(s.queue) == 4


async def test_a_delivery_the_backend_cannot_store_is_refused_and_not_queued(
    durable: Open,
) -> None:
    clock = FakeClock()
    async with durable(clock) as s:
        async with s.unavailable():
            refused = await s.queue.admit(
                envelope("d-big", payload=os.urandom(2 * 1024 * 1024)), Priority.NORMAL
            )
        assert not refused.admitted
        assert refused.error.endswith("_unavailable") and refused.retry_after > 0
        assert s.queue.unavailable is not None  # /readyz says why
        await s.sync()
        assert len(s.queue) == 0 and s.queue.take() is None
        stats = s.queue.stats()
        assert stats.spool is not None or stats.shared is not None
        admitted = await s.queue.admit(envelope("d-small"), Priority.NORMAL)
        assert admitted.admitted and s.queue.unavailable is None
