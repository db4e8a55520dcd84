"""Where backfill jobs are kept: the same tests for memory, the spool and Redis where they test
the store's contract, and what only a store shared by replicas does (claims, reports, a
cancellation that a stale save does not undo)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis

from github_app.backfill.job import Checkpoint, Job, JobSpec, JobState
from github_app.backfill.redis_store import RedisJobStore
from github_app.backfill.store import JobStore, MemoryJobStore, Outcome, SpoolJobStore
from github_app.processor import BackfillChange
from github_app.queue.spool import GroupCommitter, SpoolStore
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

DAY = 86_400.0
PREFIX = "test:"
OpenStore = Callable[[], AbstractAsyncContextManager[JobStore]]


@asynccontextmanager
async def spool_store(folder: Path) -> AsyncIterator[JobStore]:
    """The spool's job store with its commit writer, which commits the last saves at the end."""
    spool = SpoolStore(folder)
    try:
        committer = GroupCommitter(spool, window=3 * DAY)
        async with anyio.create_task_group() as group:
            await group.start(committer.run)
            yield SpoolJobStore(spool, committer)
            group.cancel_scope.cancel()
    finally:
        spool.close()


@asynccontextmanager
async def redis_store(url: str) -> AsyncIterator[RedisJobStore]:
    """One replica's store on its own connection, its writer running; it reads the shared
    jobs first, as the service does when it starts."""
    client = Redis.from_url(url)
    try:
        store = RedisJobStore(client, prefix=PREFIX, claim_ttl=30)
        async with anyio.create_task_group() as group:
            group.start_soon(store.run)
            await store.shared()
            yield store
            group.cancel_scope.cancel()  # the writer writes what is left
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Opens the backend's store again (a restart; with Redis, as well another replica)."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return lambda: redis_store(server.url)
    if request.param == "sqlite":
        return lambda: spool_store(tmp_path)
    memory = MemoryJobStore()  # lives as long as the process: the same one each time

    @asynccontextmanager
    async def same() -> AsyncIterator[JobStore]:
        yield memory

    return same


def a_job(job_id: str = "j", created_at: float = 3.0) -> Job:
    spec = JobSpec(installation=7, processors=("labeler",), dry_run=True)
    job = Job(job_id, spec, created_at=created_at)
    job.start(4.0)
    job.checkpoint = Checkpoint(
        installation=7,
        repositories=("o/a", "o/b"),
        repository_index=1,
        page_url="https://api.github.com/repos/o/b/issues?page=3",
        done=frozenset({201, 205}),
    )
    job.note(201, {"labeler": BackfillChange(labels_added=("bug",))}, ok=True)
    return job


async def test_a_stored_job_comes_back_with_its_checkpoint_and_counters(
    open_store: OpenStore,
) -> None:
    job = a_job()
    async with open_store() as store:
        store.save(a_job("younger", created_at=9.0))
        store.save(job)
    async with open_store() as store:
        restored, younger = store.jobs()  # oldest first
    assert restored == job and younger.id == "younger"
    assert restored.stats(5.0).repositories_done == 1
    assert restored.stats(5.0).repositories_total == 2


async def test_a_job_is_claimed_with_its_latest_record(open_store: OpenStore) -> None:
    job = a_job()
    async with open_store() as store:
        store.save(job)
        async with store.claim(job) as claimed:
            assert claimed == job


# --- a store shared by replicas ---------------------------------------------------------------


async def test_one_replica_runs_a_job_and_the_next_resumes_from_what_the_first_saved(
    redis_server: RedisServer,
) -> None:
    job = a_job()
    async with redis_store(redis_server.url) as one, redis_store(redis_server.url) as other:
        one.save(job)
        await one.write()
        async with one.claim(job) as first:
            assert first == job
            async with other.claim(job) as second:
                assert second is None  # one replica at a time
            [seen] = await other.shared()
            assert seen.claimed and seen.job == job
            job.note(205, {}, ok=True)
            one.save(job)
            await one.write()
        stale = Job.from_json(a_job().as_json())  # the other replica's older copy
        async with other.claim(stale) as resumed:
            assert resumed is not None and resumed.progress.processed == 2
        [after] = await other.shared()
        assert not after.claimed


async def test_a_cancelled_job_stays_cancelled_when_its_runner_saves_a_stale_record(
    redis_server: RedisServer,
) -> None:
    running = a_job()
    async with redis_store(redis_server.url) as one, redis_store(redis_server.url) as other:
        one.save(running)
        await one.write()
        [entry] = await other.shared()
        entry.job.cancel(10.0)
        other.save(entry.job)
        await other.write()
        running.note(206, {}, ok=True)
        one.save(running)  # written before the runner learns of the cancellation
        await one.write()
        [shared] = await other.shared()
    assert shared.job.state == JobState.CANCELLED


async def test_outcomes_reported_by_one_replica_reach_the_one_running_the_job_once(
    redis_server: RedisServer,
) -> None:
    labelled = Outcome("backfill-j-1-o/a#3", True, {"labeler": BackfillChange(("bug",), 0, 1)})
    failed = Outcome("backfill-j-1-o/a#4", False)
    async with redis_store(redis_server.url) as one, redis_store(redis_server.url) as other:
        other.report("j", labelled)
        other.report("j", failed)
        other.report("another-job", failed)
        await other.write()
        assert await one.reports("j") == [labelled, failed]
        assert await one.reports("j") == []


async def test_saves_made_while_redis_is_down_are_written_once_it_is_back(
    redis_server: RedisServer,
) -> None:
    job = a_job()
    async with redis_store(redis_server.url) as one:
        redis_server.stop()
        one.save(job)
        one.report("j", Outcome("backfill-j-1-o/a#3", True))
        with pytest.raises(Exception, match="onnect"):
            await one.write()
        redis_server.start()
    async with redis_store(redis_server.url) as other:
        assert other.jobs() == [job]
        assert [o.delivery_id for o in await other.reports("j")] == ["backfill-j-1-o/a#3"]


async def test_a_replica_reads_again_only_what_changed_and_the_jobs_not_finished(
    redis_server: RedisServer,
) -> None:
    done, running = a_job("done"), a_job("running", created_at=5.0)
    done.finish(6.0)
    async with redis_store(redis_server.url) as one, redis_store(redis_server.url) as other:
        one.save(done)
        one.save(running)
        await one.write()
        assert [s.job.id for s in await other.shared()] == ["done", "running"]
        assert [s.job.id for s in await other.shared()] == ["running"]  # a claim may lapse
        running.note(206, {}, ok=True)
        one.save(running)
        await one.write()
        [again] = await other.shared()
        assert again.job.progress.processed == 2
        running.finish(9.0)
        one.save(running)
        await one.write()
        [last] = await other.shared()
        assert last.job.state == JobState.FINISHED
        assert await other.shared() == []
        assert [job.id for job in other.jobs()] == ["done", "running"]  # still shown
