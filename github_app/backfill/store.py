"""Where backfill jobs and their checkpoints are kept between saves and across restarts.

A store keeps each job as the JSON-ready dict ``Job.as_json`` gives, so every
backend holds the same record and a restored job is the one that was saved:
``SpoolJobStore`` in the spool's SQLite database (the default, ``QUEUE_BACKEND=sqlite``),
``MemoryJobStore`` for the life of the process (``QUEUE_BACKEND=memory``).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

import orjson

from github_app.backfill.job import Job
from github_app.queue.spool import GroupCommitter, SpoolStore


class JobStore(Protocol):
    def save(self, job: Job) -> None:
        """Keep the job's current record (replacing the previous one)."""

    def jobs(self) -> list[Job]:
        """Every kept job, oldest first."""


class MemoryJobStore:
    """Jobs kept for the life of the process (serialised, as a lasting store would)."""

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}

    def save(self, job: Job) -> None:
        self._records[job.id] = orjson.dumps(job.as_json())

    def jobs(self) -> list[Job]:
        found = [Job.from_json(self._load(raw)) for raw in self._records.values()]
        return sorted(found, key=lambda job: job.created_at)

    @staticmethod
    def _load(raw: bytes) -> dict[str, Any]:
        data = orjson.loads(raw)
        assert isinstance(data, dict)
        return data


TABLE = (
    "CREATE TABLE IF NOT EXISTS backfill_jobs ("
    " id TEXT PRIMARY KEY, created_at REAL NOT NULL, record BLOB NOT NULL) WITHOUT ROWID"
)

SAVE = "INSERT OR REPLACE INTO backfill_jobs (id, created_at, record) VALUES (?, ?, ?)"


class SpoolJobStore:
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
        return [Job.from_json(MemoryJobStore._load(row[0])) for row in rows]
