"""The lease replicas take in a real Redis: one holder at a time, kept while held however long,
given back at the end, and a holder that lost it is stopped rather than working beside another."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from redis.asyncio import Redis

from github_app.redis_lease import LeaseLost, lease
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

KEY = "test:lease"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_server.url)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_one_holder_at_a_time_and_the_next_gets_it_once_given_back(client: Redis) -> None:
    async with lease(client, KEY, ttl=30) as first:
        async with lease(client, KEY, ttl=30) as second:
            assert first and not second
        assert await client.exists(KEY)  # the one that did not get it did not release it
    assert not await client.exists(KEY)
    async with lease(client, KEY, ttl=30) as third:
        assert third


async def test_a_lease_is_renewed_while_its_block_runs_past_the_ttl(client: Redis) -> None:
    async with lease(client, KEY, ttl=0.3) as held:
        assert held
        await anyio.sleep(1.0)  # time passing, three times the ttl: no synchronisation
        async with lease(client, KEY, ttl=0.3) as other:
            assert not other


async def test_a_dead_holders_lease_expires_and_another_replica_takes_it(client: Redis) -> None:
    await client.set(KEY, "a replica killed with -9", px=200)
    async with lease(client, KEY, ttl=30) as early:
        assert not early
    with anyio.fail_after(5):
        while True:
            async with lease(client, KEY, ttl=30) as taken:
                if taken:
                    break
            await anyio.sleep(0.02)
    assert not await client.exists(KEY)


async def test_a_holder_whose_lease_was_taken_is_stopped_and_does_not_delete_the_new_one(
    client: Redis,
) -> None:
    finished = False

    async def work() -> None:
        nonlocal finished
        async with lease(client, KEY, ttl=0.3) as held:
            assert held
            await client.set(KEY, "another replica's token")  # as after a stall past the ttl
            await anyio.Event().wait()  # work that would go on forever
            finished = True

    with anyio.fail_after(5), pytest.raises(LeaseLost, match="test:lease"):
        await work()
    assert not finished
    assert await client.get(KEY) == b"another replica's token"
