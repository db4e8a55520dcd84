"""This process's one connection to the Redis that replicas share, and whether it answers.

With ``QUEUE_BACKEND=redis`` every replica keeps its shared state (the queue,
the GitHub discipline, recovery and backfill records) in one Redis. The
runtime makes one ``RedisLink`` from ``REDIS_URL`` (TLS and password through
the URL; the URL is never logged or shown) and hands its ``client`` and
``replica_id`` to every part that needs them.

redis-py reconnects by itself (a bounded retry with back-off on every
command); ``watch`` runs for the life of the app, pings every ``interval``
and keeps ``problem`` (why Redis does not answer, for ``/readyz``) and this
replica's heartbeat: a sorted set of replica ids scored by their last beat,
from which ``/admin/status`` shows the replicas seen recently.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
import redis.asyncio as redis
from anyio.abc import TaskStatus
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from github_app.errors import StoreUnavailable

log = logging.getLogger(__name__)

PREFIX = "aip:"  # every key of ours starts with it, so one Redis may also serve other things
REPLICAS_KEY = PREFIX + "replicas"
BEAT_INTERVAL = 2.0
RECENT = 60.0  # a replica with no beat for this long is no longer shown (and forgotten)
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0


def new_replica_id() -> str:
    """host-pid-random: unique per process, and readable by an operator."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class ReplicaSeen:
    replica_id: str
    beat_age: float  # seconds since its last heartbeat


class RedisLink:
    """One ``redis.asyncio.Redis`` per process, its reachability and this replica's heartbeat."""

    def __init__(
        self,
        url: str,
        *,
        replica_id: str | None = None,
        interval: float = BEAT_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.replica_id = replica_id if replica_id is not None else new_replica_id()
        self.client: redis.Redis = redis.Redis.from_url(
            url,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            health_check_interval=30,
        )
        self._password = self.client.connection_pool.connection_kwargs.get("password")
        self._interval = interval
        self._clock = clock
        self.problem: str | None = None
        self.replicas: list[ReplicaSeen] = []
        self._answered = anyio.Event()

    def describe(self, exc: BaseException) -> str:
        """An error as one line for logs and ``/readyz``, never with the password in it."""
        text = f"{type(exc).__name__}: {exc}".strip()
        if self._password:
            text = text.replace(str(self._password), "***")
        return text

    def failed(self, exc: BaseException) -> str:
        """A command failed for want of Redis: remember why (``/readyz``) until it answers."""
        problem = f"Redis unreachable: {self.describe(exc)}"
        if self.problem is None:
            log.error("%s; retrying by itself", problem)
        self.problem = problem
        return problem

    def answered(self) -> None:
        """A command succeeded: Redis is back (if it was away)."""
        if self.problem is not None:
            log.info("Redis answers again")
        self.problem = None
        self._answered.set()

    async def wait_answered(self) -> None:
        """Until some command has succeeded since the last failure (a paused loop resumes)."""
        if self.problem is None:
            return
        self._answered = anyio.Event()
        with anyio.move_on_after(self._interval):
            await self._answered.wait()

    async def beat(self) -> None:
        """Ping by recording this replica's heartbeat, and read the replicas seen recently."""
        now = self._clock()
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(REPLICAS_KEY, {self.replica_id: now})
        pipe.zremrangebyscore(REPLICAS_KEY, "-inf", now - RECENT)
        pipe.zrange(REPLICAS_KEY, 0, -1, withscores=True)
        *_, seen = await pipe.execute()
        self.replicas = [
            ReplicaSeen(member.decode(), round(max(0.0, now - score), 3)) for member, score in seen
        ]

    async def watch(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Beat every ``interval`` for the life of the app; ``problem`` says when Redis is away."""
        task_status.started()
        while True:
            try:
                await self.beat()
            except (RedisError, OSError) as exc:
                self.failed(exc)
            else:
                self.answered()
            await anyio.sleep(self._interval)

    async def leave(self) -> None:
        """Shutdown: this replica is no longer one of those seen (best effort)."""
        try:
            with anyio.move_on_after(COMMAND_TIMEOUT):
                await self.client.zrem(REPLICAS_KEY, self.replica_id)
        except (RedisError, OSError) as exc:
            log.warning("could not leave the replicas' list: %s", self.describe(exc))

    async def aclose(self) -> None:
        await self.client.aclose()


REDIS_ERRORS = (RedisError, OSError)


@contextmanager
def answering(store: str) -> Iterator[None]:
    """Redis not answering inside the block, as ``StoreUnavailable`` naming ``store`` (the
    error's kind only: no URL, no password)."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise StoreUnavailable(f"{store}: Redis does not answer ({type(exc).__name__})") from exc
