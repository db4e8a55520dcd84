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

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, closing
from typing import Any

import anyio

from github_app.config import Settings
from github_app.queue.spool import FILE_NAME, GroupCommitter, Op, SpoolStore
from github_app.queue.state_lock import StateDirBusy, open_state_dir
from github_app.queue.succeeded import REDELIVERY_WINDOW
from github_app.recovery.redis_store import command_store as redis_command_store
from github_app.recovery.store import MemoryRecoveryStore, RecoveryStore, RequestRecord

CHECKPOINT_SQL = "SELECT at FROM recovery_checkpoint WHERE id = 1"
REQUESTS_SQL = "SELECT guid, attempts, last_at, given_up FROM recovery_requests"

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


class SpoolRecoveryStore(MemoryRecoveryStore):
    """``RecoveryStore`` on the spool's database (see the module docstring). One writer: the app
    that holds STATE_DIR, so a round needs no lock (``exclusive`` is the base's ``alone``)."""

    def __init__(
        self, store: SpoolStore, committer: GroupCommitter, knows: Callable[[str], bool]
    ) -> None:
        store.apply(SCHEMA)  # at start-up, before the commit writer runs
        super().__init__(
            knows,
            checkpoint=_checkpoint(store.rows(CHECKPOINT_SQL)),
            requests=_requests(store.rows(REQUESTS_SQL)),
        )
        self._committer = committer

    async def save_checkpoint(self, at: float) -> None:
        await self._committer.commit(
            [("INSERT OR REPLACE INTO recovery_checkpoint (id, at) VALUES (1, ?)", (at,))]
        )
        await super().save_checkpoint(at)

    async def save_request(self, guid: str, record: RequestRecord) -> None:
        await self._committer.commit(
            [
                (
                    "INSERT OR REPLACE INTO recovery_requests VALUES (?, ?, ?, ?)",
                    (guid, record.attempts, record.last_at, int(record.given_up)),
                )
            ]
        )
        await super().save_request(guid, record)

    async def forget_requests(self, before: float) -> None:
        old = self._older_than(before)
        if not old:
            return
        await self._committer.commit(
            [("DELETE FROM recovery_requests WHERE last_at < ?", (before,))]
        )
        self._drop(old)


def _checkpoint(rows: list[tuple[Any, ...]]) -> float | None:
    return float(rows[0][0]) if rows else None


def _requests(rows: list[tuple[Any, ...]]) -> dict[str, RequestRecord]:
    return {
        guid: RequestRecord(attempts, last_at, bool(given_up))
        for guid, attempts, last_at, given_up in rows
    }


@asynccontextmanager
async def command_store(
    settings: Settings, *, clock: Callable[[], float] = time.time
) -> AsyncIterator[tuple[RecoveryStore, str | None]]:
    """The store ``python -m github_app redeliver`` uses, and a note when it is not the spool.

    With the spool backend and no app running on STATE_DIR: the spool itself (its delivery
    ids, checkpoint and requests; what the round asks is remembered). With the app running
    (it holds the lock): a read-only copy of the same, whose changes stay in this process,
    since the spool has one writer. With Redis: the replicas' shared record (``redis_store``).
    With the memory backend: nothing is known.
    """
    if settings.queue_backend == "redis":
        async with redis_command_store(settings, clock=clock) as shared:
            yield shared, None
        return
    if settings.queue_backend != "sqlite":
        yield MemoryRecoveryStore(lambda delivery_id: False), "QUEUE_BACKEND=memory: no record"
        return
    since = clock() - REDELIVERY_WINDOW
    try:
        lock = open_state_dir(settings.state_dir)
    except StateDirBusy as exc:
        yield _read_only_copy(settings, since), f"{exc}: its record is read, not written"
        return
    try:
        store = SpoolStore(settings.state_dir, sync=settings.spool_sync)
        try:
            admitted = _admitted(store.deliveries(since))
            committer = GroupCommitter(store, window=REDELIVERY_WINDOW, clock=clock)
            async with anyio.create_task_group() as group:
                await group.start(committer.run)
                yield SpoolRecoveryStore(store, committer, admitted.__contains__), None
                group.cancel_scope.cancel()
        finally:
            store.close()
    finally:
        lock.release()


def _admitted(log: Iterable[tuple[str, bool]]) -> set[str]:
    """The delivery ids admitted, from the spool's log of ids remembered and forgotten."""
    admitted: set[str] = set()
    for delivery_id, seen in log:
        if seen:
            admitted.add(delivery_id)
        else:
            admitted.discard(delivery_id)
    return admitted


def _read_only_copy(settings: Settings, since: float) -> MemoryRecoveryStore:
    """The running app's record as it is now, opened read-only (WAL lets a reader in)."""
    path = (settings.state_dir / FILE_NAME).resolve()
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)) as db:
        admitted = _admitted(
            (row[0], bool(row[1]))
            for row in db.execute(
                "SELECT delivery_id, seen FROM deliveries WHERE at >= ? ORDER BY rowid", (since,)
            )
        )
        try:
            checkpoint = _checkpoint(db.execute(CHECKPOINT_SQL).fetchall())
            requests = _requests(db.execute(REQUESTS_SQL).fetchall())
        except sqlite3.OperationalError:  # an app from before recovery: no such tables
            checkpoint, requests = None, {}
    return MemoryRecoveryStore(admitted.__contains__, checkpoint=checkpoint, requests=requests)
