"""Where backfill jobs and their checkpoints are kept between saves and across restarts.

A store keeps each job as the JSON-ready dict ``Job.as_json`` gives, so every
backend holds the same record and a restored job is the one that was saved:
``SpoolJobStore`` in the spool's SQLite database (the default, ``QUEUE_BACKEND=sqlite``),
``MemoryJobStore`` for the life of the process (``QUEUE_BACKEND=memory``),
``RedisJobStore`` (``redis_store``) shared by every replica (``QUEUE_BACKEND=redis``).

Replicas sharing a store share their jobs: any of them shows every job, one
of them runs each (``claim``), and when another replica's dispatcher processes
one of its issues, the outcome is ``report``-ed to the one running the job
(``reports``). A store only this process uses (``ProcessLocal``) shares
nothing: every job is its own, every outcome comes to it directly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from github_app.backfill.job import Job
from github_app.processor import BackfillChange
from github_app.queue.spool import GroupCommitter, SpoolStore


@dataclass(frozen=True)
class StoredJob:
    """A job's latest saved record, and whether a replica holds its claim (is running it)."""

    job: Job
    claimed: bool


@dataclass(frozen=True)
class Outcome:
    """What the processors did to one backfilled issue, told to the replica running its job."""

    delivery_id: str
    ok: bool
    changes: Mapping[str, BackfillChange] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "ok": self.ok,
            "changes": {
                name: [list(change.labels_added), change.comments, change.writes]
                for name, change in self.changes.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outcome:
        return cls(
            delivery_id=data["delivery_id"],
            ok=bool(data["ok"]),
            changes={
                name: BackfillChange(tuple(labels), int(comments), int(writes))
                for name, (labels, comments, writes) in (data.get("changes") or {}).items()
            },
        )


class JobStore(Protocol):
    def save(self, job: Job) -> None:
        """Keep the job's current record (replacing the previous one)."""

    def jobs(self) -> list[Job]:
        """Every kept job, oldest first."""

    async def shared(self) -> list[StoredJob]:
        """Jobs as any replica saved them: those changed since the last call (all at the
        first) and every unfinished one; ``[]`` when no other process shares the store.
        ``errors.StoreUnavailable`` when the store does not answer."""

    async def current(self, job_id: str) -> StoredJob | None:
        """One job as last saved by any replica (``None``: unknown, or nothing shared)."""

    def claim(self, job: Job) -> AbstractAsyncContextManager[Job | None]:
        """Run ``job`` here for the block: yields its latest record, or ``None`` while another
        replica runs it."""

    def report(self, job_id: str, outcome: Outcome) -> None:
        """Tell the replica running ``job_id`` what became of one of its issues here."""

    async def reports(self, job_id: str) -> list[Outcome]:
        """Outcomes other replicas reported for ``job_id`` since the last call."""

    async def run(self) -> None:
        """Write saves behind for the life of the app, the last ones when cancelled (the
        runtime stops it last); returns at once for a store that writes otherwise."""


class ProcessLocal:
    """The sharing half of ``JobStore`` for a store this process alone uses: nothing to share."""

    async def shared(self) -> list[StoredJob]:
        return []

    async def current(self, job_id: str) -> StoredJob | None:
        return None

    def claim(self, job: Job) -> AbstractAsyncContextManager[Job | None]:
        return _alone(job)

    def report(self, job_id: str, outcome: Outcome) -> None:
        """Never needed: every issue of this process's jobs is processed here."""

    async def reports(self, job_id: str) -> list[Outcome]:
        return []

    async def run(self) -> None:
        """Memory needs no writer; the spool's is its commit writer."""


def json_object(raw: bytes | str) -> dict[str, Any]:
    """A stored JSON record (a job's, an outcome's)."""
    data = orjson.loads(raw)
    assert isinstance(data, dict)
    return data


@asynccontextmanager
async def _alone(job: Job) -> AsyncIterator[Job | None]:
    yield job


class MemoryJobStore(ProcessLocal):
    """Jobs kept for the life of the process (serialised, as a lasting store would)."""

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}

    def save(self, job: Job) -> None:
        self._records[job.id] = orjson.dumps(job.as_json())

    def jobs(self) -> list[Job]:
        found = [Job.from_json(json_object(raw)) for raw in self._records.values()]
        return sorted(found, key=lambda job: job.created_at)


TABLE = (
    "CREATE TABLE IF NOT EXISTS backfill_jobs ("
    " id TEXT PRIMARY KEY, created_at REAL NOT NULL, record BLOB NOT NULL) WITHOUT ROWID"
)

SAVE = "INSERT OR REPLACE INTO backfill_jobs (id, created_at, record) VALUES (?, ?, ?)"


class SpoolJobStore(ProcessLocal):
    """Jobs in the spool's database, table ``backfill_jobs``, one JSON record per job.

    Writes keep the spool's discipline: they go through its ``GroupCommitter``
    (one writer, grouped transactions, off the event loop) and ride the next
    group without being waited for; a shutdown commits them before the spool
    closes. The table is made when the store is built, before the committer runs.
    """

    def __init__(self, spool: SpoolStore, committer: GroupCommitter) -> None:
        spool.apply([(TABLE, ())])
        self._path = spool.path
        self._committer = committer

    def save(self, job: Job) -> None:
        self._committer.write([(SAVE, (job.id, job.created_at, orjson.dumps(job.as_json())))])

    def jobs(self) -> list[Job]:
        """Read at start-up, on a read-only connection of its own (WAL lets it read beside
        the writer)."""
        connection = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True)
        try:
            rows = connection.execute(
                "SELECT record FROM backfill_jobs ORDER BY created_at"
            ).fetchall()
        finally:
            connection.close()
        return [Job.from_json(json_object(row[0])) for row in rows]
