"""Where backfill jobs and their checkpoints are kept between saves and across restarts.

A store keeps each job as the JSON-ready dict ``Job.as_json`` gives, so every
backend (memory here, the spool's SQLite database) holds the same record and
a restored job is the one that was saved.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from github_app.backfill.job import Job


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
