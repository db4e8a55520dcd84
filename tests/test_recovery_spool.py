"""Recovery's memory in the spool and in Redis: the checkpoint and the requests survive a
restart (the same test for both stores), and a restarted app does not ask GitHub twice in one
window."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import pytest
import respx
from redis.asyncio import Redis

from github_app.queue.spool import GroupCommitter, SpoolStore
from github_app.recovery.plan import Skip
from github_app.recovery.redis_store import RedisRecoveryStore
from github_app.recovery.spool_store import SpoolRecoveryStore
from github_app.recovery.store import RequestRecord
from tests.conftest import RunningApp, make_settings, running_app, wait_for
from tests.fake_hook_log import FakeHookLog
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

DAY = 86_400.0
PREFIX = "test:"
StoreUnderTest = SpoolRecoveryStore | RedisRecoveryStore


OpenStore = Callable[[Callable[[str], bool]], AbstractAsyncContextManager[StoreUnderTest]]


@asynccontextmanager
async def spool_store(
    folder: Path, knows: Callable[[str], bool]
) -> AsyncIterator[SpoolRecoveryStore]:
    """The spool's store with its commit writer running, closed after the block."""
    store = SpoolStore(folder)
    try:
        committer = GroupCommitter(store, window=3 * DAY)
        async with anyio.create_task_group() as group:
            await group.start(committer.run)
            yield SpoolRecoveryStore(store, committer, knows)
            group.cancel_scope.cancel()
    finally:
        store.close()


@asynccontextmanager
async def redis_store(url: str, knows: Callable[[str], bool]) -> AsyncIterator[RedisRecoveryStore]:
    """A replica's Redis store on its own connection (what a restarted or other replica has)."""
    client = Redis.from_url(url)
    try:
        store = RedisRecoveryStore(client, knows, prefix=PREFIX)
        async with store.exclusive():  # a round reads the shared record first
            pass
        yield store
    finally:
        await client.aclose()


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Opens the backend's store afresh each time (a restart, or with Redis another replica)."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return lambda knows: redis_store(server.url, knows)
    return lambda knows: spool_store(tmp_path, knows)


async def test_checkpoint_and_requests_are_read_back_after_a_restart(open_store: OpenStore) -> None:
    async with open_store(lambda guid: False) as memory:
        assert memory.checkpoint() is None and len(memory) == 0
        await memory.save_checkpoint(1_700_000_000.0)
        await memory.save_request("asked", RequestRecord(2, 1_700_000_100.0))
        await memory.save_request("given-up", RequestRecord(3, 1_700_000_200.0, given_up=True))
        await memory.save_request("old", RequestRecord(1, 1_600_000_000.0))
        await memory.forget_requests(before=1_650_000_000.0)

    async with open_store({"x"}.__contains__) as again:
        assert again.checkpoint() == 1_700_000_000.0
        assert again.request_record("asked") == RequestRecord(2, 1_700_000_100.0)
        assert again.request_record("given-up") == RequestRecord(3, 1_700_000_200.0, given_up=True)
        assert again.request_record("old") is None
        assert again.knows("x") and not again.knows("asked")
        assert len(again) == 2


async def first_round(app: RunningApp) -> None:
    recovery = app.runtime.recovery
    await wait_for(lambda: recovery.stats().rounds >= 1, timeout=10, what="the first round")


@pytest.fixture(params=["sqlite", "redis"])
def lasting(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The settings of a backend that outlives the app: the spool, or the replicas' Redis."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return {"QUEUE_BACKEND": "redis", "REDIS_URL": server.url}
    return {"QUEUE_BACKEND": "sqlite", "STATE_DIR": str(tmp_path / "state")}


async def test_a_restarted_app_keeps_its_checkpoint_and_does_not_ask_twice_in_a_window(
    github: respx.MockRouter, private_key_pem: str, lasting: dict[str, str]
) -> None:
    hook_log = FakeHookLog(github)
    hook_log.log("lost", status_code=0)
    hook_log.log("fine", status_code=202)
    settings = make_settings(private_key_pem, RECOVERY_INTERVAL="300", **lasting)
    async with running_app(settings) as app:
        await first_round(app)
        first = app.runtime.recovery.stats()
    assert hook_log.requested_guids() == ["lost"]
    assert first.checkpoint is not None
    # a probe older than the checkpoint: read (and asked for) only if the checkpoint were lost
    hook_log.log("probe", status_code=0, at=first.checkpoint - 30)

    async with running_app(settings) as app:
        await first_round(app)
        second = app.runtime.recovery.stats()
    assert hook_log.requested_guids() == ["lost"]  # not again: requested this window
    assert second.checkpoint == first.checkpoint
    assert second.last_round is not None and second.last_round.since == first.checkpoint
    assert second.last_round.skipped == {Skip.REQUESTED: 1, Skip.DELIVERED: 1}
