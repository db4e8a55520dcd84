"""Recovery's memory in the spool: the checkpoint and the requests survive a restart.

Two tables in the spool's own SQLite file, beside its events and delivery
ids, created when missing (a spool from before recovery gets them at its
first start). They are read once at start-up; every change is kept in memory
and committed through the spool's commit writer, awaited, like an admission:
a request is on disk before the round goes on, so a restart never asks for a
guid twice in one window nor forgets how often it asked.

Whether a delivery was admitted is the queue's answer (``knows``), which the
spool replays at start-up from its own ``deliveries`` table.
"""

from __future__ import annotations

from collections.abc import Callable

from github_app.queue.spool import GroupCommitter, Op, SpoolStore
from github_app.recovery.store import RequestRecord

SCHEMA: tuple[Op, ...] = (
    (
        "CREATE TABLE IF NOT EXISTS recovery_checkpoint"
        " (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL)",
        (),
    ),
    (
        "CREATE TABLE IF NOT EXISTS recovery_requests (guid TEXT PRIMARY KEY,"
        " attempts INTEGER NOT NULL, last_at REAL NOT NULL, given_up INTEGER NOT NULL)"
        " WITHOUT ROWID",
        (),
    ),
)


class SpoolRecoveryStore:
    """``RecoveryStore`` on the spool's database (see the module docstring)."""

    def __init__(
        self, store: SpoolStore, committer: GroupCommitter, knows: Callable[[str], bool]
    ) -> None:
        store.apply(SCHEMA)  # at start-up, before the commit writer runs
        self._committer = committer
        self._knows = knows
        rows = store.rows("SELECT at FROM recovery_checkpoint WHERE id = 1")
        self._checkpoint: float | None = rows[0][0] if rows else None
        self._requests = {
            guid: RequestRecord(attempts, last_at, bool(given_up))
            for guid, attempts, last_at, given_up in store.rows(
                "SELECT guid, attempts, last_at, given_up FROM recovery_requests"
            )
        }

    def knows(self, delivery_id: str) -> bool:
        return self._knows(delivery_id)

    def checkpoint(self) -> float | None:
        return self._checkpoint

    def request_record(self, guid: str) -> RequestRecord | None:
        return self._requests.get(guid)

    async def save_checkpoint(self, at: float) -> None:
        await self._committer.commit(
            [("INSERT OR REPLACE INTO recovery_checkpoint (id, at) VALUES (1, ?)", (at,))]
        )
        self._checkpoint = at

    async def save_request(self, guid: str, record: RequestRecord) -> None:
        await self._committer.commit(
            [
                (
                    "INSERT OR REPLACE INTO recovery_requests VALUES (?, ?, ?, ?)",
                    (guid, record.attempts, record.last_at, int(record.given_up)),
                )
            ]
        )
        self._requests[guid] = record

    async def forget_requests(self, before: float) -> None:
        old = [guid for guid, record in self._requests.items() if record.last_at < before]
        if not old:
            return
        await self._committer.commit(
            [("DELETE FROM recovery_requests WHERE last_at < ?", (before,))]
        )
        for guid in old:
            self._requests.pop(guid, None)

    def __len__(self) -> int:
        return len(self._requests)
