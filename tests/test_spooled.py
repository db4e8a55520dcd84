"""The spooled queue: commit before admission, payloads on disk, replay after a restart."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from github_app.queue.dead_letters import EXHAUSTED, DeadLetterQueue
from github_app.queue.deliveries import RecentDeliveries
from github_app.queue.journal import SpoolJournal
from github_app.queue.memory import MemoryQueue
from github_app.queue.priority import Priority
from github_app.queue.spool import GroupCommitter, SpoolStore
from github_app.queue.spooled import SpooledQueue, replay
from github_app.queue.succeeded import REDELIVERY_WINDOW, SucceededProcessors
from tests.helpers_unit import envelope
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


async def test_an_admitted_event_is_on_disk_and_its_payload_is_not_in_memory(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with spooled(tmp_path, clock) as s:
        body = os.urandom(500)
        admission = await s.queue.admit(envelope("d-1", payload=body), Priority.NORMAL)
        assert admission.admitted
        # committed: another connection sees it before anything else is written
        other = SpoolStore(tmp_path)
        try:
            assert [row.envelope.delivery_id for row in other.events()] == ["d-1"]
        finally:
            other.close()
        assert s.queue.stats().bytes == 500  # admission still counts the compressed size
        item = s.queue.take()
        assert item is not None and item.envelope.payload == body
        s.queue.retry(item, clock.now + 5, "502")
        assert item.envelope.payload == b""  # let go again while it waits


async def test_a_restart_queues_again_what_was_queued_or_in_flight_in_arrival_order(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with spooled(tmp_path, clock) as s:
        for n in range(1, 5):
            await s.queue.admit(
                envelope(f"d-{n}", issue_number=n, received_at=clock.now), Priority.NORMAL
            )
        first = s.queue.take()
        second = s.queue.take()
        assert first is not None and second is not None
        s.queue.done(first)  # finished: deleted
        s.succeeded.add("d-3", "labeler")
        s.queue.retry(second, clock.now + 30, "GitHub answered 502")
        third = s.queue.take()  # d-3: in flight when the process dies
        assert third is not None and third.envelope.delivery_id == "d-3"
        await s.committer.flush()
    # the process died here: nothing more was settled
    clock.now += 10
    async with spooled(tmp_path, clock) as s:
        assert len(s.queue) == 3
        assert s.queue.knows("d-1") and s.queue.knows("d-4")  # redeliveries are duplicates
        assert s.succeeded.of("d-3") == ("labeler",)
        order = []
        while (item := s.queue.take()) is not None:
            order.append((item.envelope.delivery_id, item.attempts, item.envelope.payload))
        # d-2 waits out its back-off (20 s more); d-3 counted its interrupted try
        assert order == [("d-3", 2, b"x" * 10), ("d-4", 1, b"x" * 10)]
        clock.now += 21
        retried = s.queue.take()
        assert retried is not None
        assert (retried.envelope.delivery_id, retried.attempts, retried.last_error) == (
            "d-2",
            2,
            "GitHub answered 502",
        )


async def test_dead_letters_survive_a_restart_and_can_be_redriven_with_their_payload(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    body = os.urandom(300)
    async with spooled(tmp_path, clock) as s:
        await s.queue.admit(envelope("d-dead", payload=body), Priority.HIGH)
        item = s.queue.take()
        assert item is not None
        s.queue.dead_letter(item, EXHAUSTED, "GitHub answered 502")
        await s.committer.flush()
    async with spooled(tmp_path, clock) as s:
        [entry] = s.queue.list_dead_letters()
        assert (entry.delivery_id, entry.reason, entry.attempts) == ("d-dead", EXHAUSTED, 1)
        assert s.queue.redrive() == 1
        await s.committer.flush()
        again = s.queue.take()
        assert again is not None
        assert (again.envelope.payload, again.attempts, again.priority) == (body, 1, Priority.HIGH)
        s.queue.done(again)
        await s.committer.flush()
    async with spooled(tmp_path, clock) as s:
        assert len(s.queue) == 0 and s.queue.list_dead_letters() == []


async def test_a_redelivery_replaces_the_dead_letter_on_disk_too(tmp_path: Path) -> None:
    clock = FakeClock()
    async with spooled(tmp_path, clock) as s:
        await s.queue.admit(envelope("d-1"), Priority.NORMAL)
        item = s.queue.take()
        assert item is not None
        s.queue.dead_letter(item, EXHAUSTED, "boom")
        await s.committer.flush()
        await s.queue.admit(envelope("d-1"), Priority.NORMAL)  # GitHub redelivered it
        await s.committer.flush()
    async with spooled(tmp_path, clock) as s:
        assert s.queue.list_dead_letters() == []
        assert len(s.queue) == 1


async def test_admission_counts_events_still_being_committed(tmp_path: Path) -> None:
    clock = FakeClock()
    async with spooled(tmp_path, clock, max_events=4) as s:
        results = []

        async def offer(n: int) -> None:
            admission = await s.queue.admit(envelope(f"d-{n}", issue_number=n), Priority.CRITICAL)
            results.append(admission.admitted)

        async with anyio.create_task_group() as group:
            for n in range(6):
                group.start_soon(offer, n)
        assert sorted(results) == [False, False, True, True, True, True]
        assert len(s.queue) == 4


async def test_a_delivery_the_spool_cannot_store_is_refused_and_not_queued(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with spooled(tmp_path, clock) as s:
        with file_size_limit(1024 * 1024):
            refused = await s.queue.admit(
                envelope("d-big", payload=os.urandom(2 * 1024 * 1024)), Priority.NORMAL
            )
        assert not refused.admitted
        assert refused.error == "spool_unavailable" and refused.retry_after > 0
        assert s.queue.unavailable is not None and "spool" in s.queue.unavailable
        assert len(s.queue) == 0 and s.queue.take() is None
        assert s.queue.stats().spool is not None
        admitted = await s.queue.admit(envelope("d-small"), Priority.NORMAL)
        assert admitted.admitted and s.queue.unavailable is None
