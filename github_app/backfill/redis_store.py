"""Backfill jobs in Redis (``QUEUE_BACKEND=redis``): every replica sees every job, one runs it.

Keys (under the app's prefix):

- ``backfill:jobs``: a hash, job id -> the job's JSON record (``Job.as_json``);
- ``backfill:updated``: job ids scored by the save that last changed them
  (``backfill:version`` counts saves), so a replica reads only the records
  changed since it last looked, not every job ever run;
- ``backfill:claim:{id}``: the lease of the replica running the job
  (``redis_lease``; a replica killed with -9 lets go after ``CLAIM_TTL``, and
  another resumes the job from its checkpoint);
- ``backfill:reports:{id}``: a list of outcomes of the job's issues that other
  replicas' dispatchers processed, for the replica running the job to count.

``save`` stays synchronous, as the service calls it between awaits: the
record is kept in this replica's copy at once and written behind by ``run``
(a task of the runtime, stopped last so the shutdown's saves are written),
which retries while Redis is away. A save never replaces a record in a final
state with another state (a script checks), so a job cancelled on one replica
stays cancelled while the replica running it has not noticed yet.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast

import anyio
import orjson
from redis.asyncio import Redis

from github_app.backfill.job import Job
from github_app.backfill.store import Outcome, StoredJob, json_object
from github_app.redis_lease import lease
from github_app.redis_link import REDIS_ERRORS, answering

log = logging.getLogger(__name__)

CLAIM_TTL = 30.0
RETRY = 1.0  # seconds between writes while Redis is away
FINAL_WRITE = 5.0  # at shutdown, how long the last saves may wait for Redis
REPORTS_TTL = 7 * 24 * 3600  # reports of a job nobody runs any more are dropped after a week

# Keep a final record (finished, failed, cancelled) unless the new one has the same state.
SAVE = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
    local state = cjson.decode(old)['state']
    if (state == 'finished' or state == 'failed' or state == 'cancelled') and state ~= ARGV[3] then
        return 0
    end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
return 1
"""

STORE = "backfill jobs"


class RedisJobStore:
    """``JobStore`` in Redis, shared by the replicas (see the module docstring)."""

    def __init__(self, redis: Redis, *, prefix: str, claim_ttl: float = CLAIM_TTL) -> None:
        self._redis = redis
        self._claim_ttl = claim_ttl
        self._jobs_key = f"{prefix}backfill:jobs"
        self._updated_key = f"{prefix}backfill:updated"
        self._version_key = f"{prefix}backfill:version"
        self._claim_prefix = f"{prefix}backfill:claim:"
        self._reports_prefix = f"{prefix}backfill:reports:"
        self._records: dict[str, bytes] = {}  # this replica's copy: last read or saved
        self._open: set[str] = set()  # jobs not finished as far as this replica knows
        self._version = 0.0  # the last save whose record this replica read
        self._unsaved: dict[str, tuple[bytes, str]] = {}  # job id -> record, state
        self._unreported: list[tuple[str, bytes]] = []  # job id, outcome
        self._pending = anyio.Event()

    # --- what the service calls between awaits ------------------------------------------

    def save(self, job: Job) -> None:
        raw = orjson.dumps(job.as_json())
        self._keep(job, raw)
        self._unsaved[job.id] = (raw, str(job.state))
        self._pending.set()

    def _keep(self, job: Job, raw: bytes) -> None:
        self._records[job.id] = raw
        if job.state.final:
            self._open.discard(job.id)
        else:
            self._open.add(job.id)

    def jobs(self) -> list[Job]:
        found = [Job.from_json(json_object(raw)) for raw in self._records.values()]
        return sorted(found, key=lambda job: job.created_at)

    def report(self, job_id: str, outcome: Outcome) -> None:
        self._unreported.append((job_id, orjson.dumps(outcome.as_json())))
        self._pending.set()

    # --- reads of what every replica saved ------------------------------------------------

    async def shared(self) -> list[StoredJob]:
        """The jobs saved since the last call (all of them at the first), and every job not
        finished, each with whether a replica holds its claim now."""
        with answering(STORE):
            changed = cast(
                list[tuple[bytes | str, float]],
                await self._redis.zrangebyscore(
                    self._updated_key, f"({self._version!r}", "+inf", withscores=True
                ),
            )
            ids = [_text(member) for member, _ in changed]
            raws = await self._redis.hmget(self._jobs_key, ids) if ids else []
            records = {
                job_id: self._newest(job_id, raw)
                for job_id, raw in zip(ids, raws, strict=True)
                if raw is not None
            }
            jobs = {job_id: Job.from_json(json_object(raw)) for job_id, raw in records.items()}
            for job_id in self._open - set(jobs):  # unchanged, unfinished: a claim may lapse
                jobs[job_id] = Job.from_json(json_object(self._records[job_id]))
            claimed = await self._claimed([i for i, job in jobs.items() if not job.state.final])
        if changed:
            self._version = max(self._version, max(score for _, score in changed))
        for job_id, raw in records.items():
            self._keep(jobs[job_id], raw)
        found = [StoredJob(job, job.id in claimed) for job in jobs.values()]
        return sorted(found, key=lambda stored: stored.job.created_at)

    async def current(self, job_id: str) -> StoredJob | None:
        with answering(STORE):
            raw = await self._redis.hget(self._jobs_key, job_id)
            claimed = await self._claimed([job_id]) if raw is not None else set()
        if raw is None:
            return None
        raw = self._newest(job_id, raw)
        job = Job.from_json(json_object(raw))
        self._keep(job, raw)
        return StoredJob(job, job_id in claimed)

    async def _claimed(self, job_ids: list[str]) -> set[str]:
        if not job_ids:
            return set()
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(self._claim_prefix + job_id)
            held = await pipe.execute()
        return {job_id for job_id, exists in zip(job_ids, held, strict=True) if exists}

    def _newest(self, job_id: str, stored: bytes | str) -> bytes:
        """This replica's unwritten save of a job is newer than what Redis has."""
        unsaved = self._unsaved.get(job_id)
        if unsaved is not None:
            return unsaved[0]
        return stored.encode() if isinstance(stored, str) else stored

    # --- running a job here ----------------------------------------------------------------

    def claim(self, job: Job) -> AbstractAsyncContextManager[Job | None]:
        return self._claim(job)

    @asynccontextmanager
    async def _claim(self, job: Job) -> AsyncIterator[Job | None]:
        with answering(STORE):
            async with lease(self._redis, self._claim_prefix + job.id, self._claim_ttl) as ours:
                if not ours:
                    yield None
                    return
                # another replica may have run it since this one read it: its record says how far
                stored = await self.current(job.id)
                yield job if stored is None else stored.job

    async def reports(self, job_id: str) -> list[Outcome]:
        key = self._reports_prefix + job_id
        with answering(STORE):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.lrange(key, 0, -1)
                pipe.delete(key)
                raw, _ = await pipe.execute()
        return [Outcome.from_json(json_object(item)) for item in raw]

    # --- the writer ------------------------------------------------------------------------

    async def run(self) -> None:
        """Write saves and reports behind, for the life of the app; at cancellation, what is
        left (the shutdown's saves) within ``FINAL_WRITE``."""
        try:
            while True:
                await self._pending.wait()
                self._pending = anyio.Event()
                await self._write_until_done()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(FINAL_WRITE):
                await self._write_until_done()
            if self._unsaved or self._unreported:
                log.error(
                    "backfill: %d job record(s) and %d report(s) not written: Redis is away",
                    len(self._unsaved),
                    len(self._unreported),
                )

    async def _write_until_done(self) -> None:
        failing = False
        while self._unsaved or self._unreported:
            try:
                await self.write()
            except REDIS_ERRORS as exc:
                if not failing:
                    log.warning("backfill: cannot write to Redis (%s), retrying", exc)
                failing = True
                await anyio.sleep(RETRY)

    async def write(self) -> None:
        """Write what was saved or reported since the last write (what fails is kept)."""
        unsaved, self._unsaved = self._unsaved, {}
        unreported, self._unreported = self._unreported, []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id, (raw, state) in unsaved.items():
                    keys = (self._jobs_key, self._updated_key, self._version_key)
                    pipe.eval(SAVE, 3, *keys, job_id, raw, state)
                for job_id, outcome in unreported:
                    pipe.rpush(self._reports_prefix + job_id, outcome)
                    pipe.expire(self._reports_prefix + job_id, REPORTS_TTL)
                await pipe.execute()
        except BaseException:
            for job_id, record in unsaved.items():
                self._unsaved.setdefault(job_id, record)  # unless saved again meanwhile
            self._unreported[:0] = unreported
            raise


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
