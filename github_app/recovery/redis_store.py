"""Recovery's memory in Redis (``QUEUE_BACKEND=redis``): one checkpoint and one record of
requests for every replica, and one round at a time.

Keys (under the app's prefix):

- ``recovery:checkpoint``: the delivery-log time the next round reads back to;
- ``recovery:requests``: a hash, guid -> ``[attempts, last_at, given_up]``;
- ``recovery:lock``: the lease of the replica running a round (``redis_lease``).

A round takes the lease first, then reads the checkpoint and the requests into
this replica's copy, which the planner's synchronous reads answer from; every
change is written to Redis, awaited, before the copy takes it, as the spool
commits before it remembers. A replica that finds the lease taken skips its
round (the other is doing the work) but still reads the copy, so its status
shows the shared checkpoint. Whether a delivery was admitted is the queue's
answer (``knows``: what this replica saw) and, for the guids a round asks
about, the shared record of every replica's admissions (``admitted``, read by
``look_up`` before the plan).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import orjson
from redis.asyncio import Redis

from github_app.config import Settings
from github_app.queue.redis_queue import seen_in
from github_app.queue.redis_scripts import Keys
from github_app.queue.succeeded import REDELIVERY_WINDOW
from github_app.recovery.store import MemoryRecoveryStore, RequestRecord
from github_app.redis_lease import lease
from github_app.redis_link import PREFIX, answering

STORE = "recovery's record"
LOCK_TTL = 60.0  # a replica killed during a round holds recovery up at most this long

Admitted = Callable[[Sequence[str]], Awaitable[set[str]]]


class RedisRecoveryStore(MemoryRecoveryStore):
    """``RecoveryStore`` in Redis, shared by the replicas (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        knows: Callable[[str], bool],
        *,
        prefix: str,
        admitted: Admitted | None = None,
        lock_ttl: float = LOCK_TTL,
    ) -> None:
        """``admitted``: which of some delivery ids any replica admitted (the shared queue's
        record); without it, ``knows`` alone answers."""
        super().__init__(knows)
        self._redis = redis
        self._admitted = admitted
        self._admitted_elsewhere: set[str] = set()
        self._lock_ttl = lock_ttl
        self._checkpoint_key = f"{prefix}recovery:checkpoint"
        self._requests_key = f"{prefix}recovery:requests"
        self._lock_key = f"{prefix}recovery:lock"

    def knows(self, delivery_id: str) -> bool:
        return delivery_id in self._admitted_elsewhere or super().knows(delivery_id)

    async def look_up(self, guids: Collection[str]) -> None:
        if self._admitted is not None:
            with answering(STORE):
                self._admitted_elsewhere = await self._admitted(sorted(guids)) if guids else set()

    async def save_checkpoint(self, at: float) -> None:
        with answering(STORE):
            await self._redis.set(self._checkpoint_key, repr(at))
        await super().save_checkpoint(at)

    async def save_request(self, guid: str, record: RequestRecord) -> None:
        value = orjson.dumps([record.attempts, record.last_at, record.given_up])
        with answering(STORE):
            await self._redis.hset(self._requests_key, guid, value)
        await super().save_request(guid, record)

    async def forget_requests(self, before: float) -> None:
        old = self._older_than(before)
        if not old:
            return
        with answering(STORE):
            await self._redis.hdel(self._requests_key, *old)
        self._drop(old)

    def exclusive(self) -> AbstractAsyncContextManager[bool]:
        return self._exclusive()

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[bool]:
        with answering(STORE):
            async with lease(self._redis, self._lock_key, self._lock_ttl) as ours:
                await self.load()
                yield ours

    async def load(self) -> None:
        """Read the shared checkpoint and requests into this replica's copy."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self._checkpoint_key)
            pipe.hgetall(self._requests_key)
            checkpoint, requests = await pipe.execute()
        self._checkpoint = None if checkpoint is None else float(checkpoint)
        self._requests = {
            (guid.decode() if isinstance(guid, bytes) else guid): _record(raw)
            for guid, raw in requests.items()
        }


def _record(raw: bytes | str) -> RequestRecord:
    attempts, last_at, given_up = orjson.loads(raw)
    return RequestRecord(int(attempts), float(last_at), bool(given_up))


@asynccontextmanager
async def command_store(
    settings: Settings, *, clock: Callable[[], float] = time.time
) -> AsyncIterator[RedisRecoveryStore]:
    """The store ``python -m github_app redeliver`` uses with ``QUEUE_BACKEND=redis``: the
    replicas' own record (what they admitted, asked and read up to), written as theirs, its
    round taking turns with theirs."""
    assert settings.redis_url is not None  # the settings require it with this backend
    client = Redis.from_url(settings.redis_url.get_secret_value())
    keys = Keys(PREFIX)

    async def admitted(delivery_ids: Sequence[str]) -> set[str]:
        return await seen_in(client, keys, delivery_ids, clock() - REDELIVERY_WINDOW)

    try:
        yield RedisRecoveryStore(
            client, lambda delivery_id: False, prefix=PREFIX, admitted=admitted
        )
    finally:
        await client.aclose()
