"""The Redis the tests start is real, empty, keeps its data across a stop, and can be down."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from tests.redis_server import RedisServer


@pytest.mark.anyio
async def test_a_fresh_server_answers_and_keeps_its_data_across_a_restart(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert await client.dbsize() == 0
        await client.set("kept", "yes")
        await client.execute_command("BGREWRITEAOF")
        await client.execute_command("SAVE")  # flush now: the restart below must find it
    finally:
        await client.aclose()
    redis_server.stop()
    assert not redis_server.running
    down = redis.Redis.from_url(redis_server.url)
    try:
        with pytest.raises(redis.ConnectionError):
            await down.ping()
    finally:
        await down.aclose()
    redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert await client.get("kept") == b"yes"
    finally:
        await client.aclose()
