"""A lease in Redis: one replica at a time does a thing, and a dead replica lets go by itself.

Replicas sharing one Redis must not run the same recovery round or the same
backfill job twice. The holder of a lease is whoever set its key (``SET NX PX``
with a random token); the key expires after ``ttl`` seconds unless the holder
renews it, which it does every third of ``ttl`` while its block runs. So a
replica killed with -9 holds nothing for longer than ``ttl``, and a live one
keeps its lease however long its work takes. Renewal and release only touch
the key while it still holds this holder's token (a Lua script each), so a
holder that stalled past ``ttl`` never takes back or deletes a lease another
replica has taken since; it finds the lease lost, its block is cancelled and
``LeaseLost`` raised, so the work stops instead of running twice.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseLost(Exception):
    """The lease expired or was taken while its holder was still working."""

    def __init__(self, key: str) -> None:
        super().__init__(f"lost the lease {key!r} (expired while held)")
        self.key = key


@asynccontextmanager
async def lease(redis: Redis, key: str, ttl: float) -> AsyncIterator[bool]:
    """Hold ``key`` for the block: yields ``True`` when taken, ``False`` when another has it
    (the block then runs without it). Redis errors while taking it propagate."""
    token = secrets.token_hex(12)
    milliseconds = max(1, round(ttl * 1000))
    if not await redis.set(key, token, nx=True, px=milliseconds):
        yield False
        return
    lost = False
    try:
        async with anyio.create_task_group() as group:

            async def keep() -> None:
                nonlocal lost
                while True:
                    await anyio.sleep(ttl / 3)
                    try:
                        renewed = await redis.eval(RENEW, 1, key, token, milliseconds)
                    except RedisError as exc:  # it may still hold until ttl: try again
                        log.warning("could not renew the lease %s: %s", key, exc)
                        continue
                    if not renewed:
                        lost = True
                        group.cancel_scope.cancel()
                        return

            group.start_soon(keep)
            yield True
            group.cancel_scope.cancel()
    except BaseExceptionGroup as raised:  # the block's own error (``keep`` raises none)
        if len(raised.exceptions) == 1:
            raise raised.exceptions[0] from None
        raise
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await redis.eval(RELEASE, 1, key, token)
            except RedisError as exc:  # it expires by itself
                log.warning("could not release the lease %s: %s", key, exc)
    if lost:
        raise LeaseLost(key)
