"""This replica's leases on issues, against a real Redis: parked events come out once however
the pump and the claims ask for their issues' leases at the same moment."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from github_app.envelope import Envelope
from github_app.queue.priority import Priority
from github_app.queue.redis_leases import IssueLeases
from github_app.queue.redis_outbox import Outbox
from github_app.queue.redis_scripts import EventRecord, Keys
from github_app.redis_link import RedisLink
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

KEY = ("octo-org/big", 7)


def record(seq: int) -> EventRecord:
    envelope = Envelope(
        delivery_id=f"d-{seq}",
        event="issues",
        action="opened",
        installation_id=1,
        repository=KEY[0],
        issue_number=KEY[1],
        sender_login=None,
        sender_type=None,
        received_at=0.0,
        payload=b"",
        raw_size=0,
    )
    return EventRecord(seq, envelope, Priority.NORMAL, 0, 0.0, 0, 0.0, None, None, 0.0)


@pytest.fixture
async def link(redis_server: RedisServer) -> AsyncIterator[RedisLink]:
    link = RedisLink(redis_server.url, replica_id="me")
    try:
        yield link
    finally:
        await link.aclose()


async def test_the_pump_and_a_claim_asking_for_one_issue_at_once_free_its_event_once(
    link: RedisLink,
) -> None:
    keys = Keys("t:")
    await link.client.zadd(keys.lane(KEY), {"1": 1})
    await link.client.hset(keys.event(1), "d", "d-1")
    leases = IssueLeases(link.client, keys, "me", 30.0, Outbox(link))
    leases.park(KEY, record(1))
    freed: list[list[EventRecord]] = []

    async def take() -> None:  # as the queue does: what comes out enters the scheduler
        found = await leases.take()
        for event in found:
            leases.placed(KEY, event.seq)
        freed.append(found)

    async with anyio.create_task_group() as group:
        group.start_soon(take)  # both ask before either has its answer
        group.start_soon(take)
    assert sorted(len(found) for found in freed) == [0, 1]
    assert [r.seq for found in freed for r in found] == [1]
    assert leases.parked == 0 and len(leases) == 1  # the lease stays with the placed event
