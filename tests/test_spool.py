"""The SQLite spool file: creation, checks at opening, grouped commits, bounded size."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import pytest

from github_app.errors import SettingsError
from github_app.queue.spool import (
    FILE_NAME,
    GroupCommitter,
    SpoolError,
    SpoolStore,
    SpoolUnreadable,
    delete_event,
    insert_event,
    remember_delivery,
)
from github_app.queue.succeeded import REDELIVERY_WINDOW
from tests.helpers_unit import envelope

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def committing(store: SpoolStore) -> AsyncIterator[GroupCommitter]:
    committer = GroupCommitter(store, window=REDELIVERY_WINDOW)
    async with anyio.create_task_group() as group:
        await group.start(committer.run)
        yield committer
        group.cancel_scope.cancel()


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """The kernel refuses writes past ``limit`` bytes in any file (EFBIG): a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


async def test_a_new_spool_is_readable_by_its_owner_only_and_in_wal_mode(tmp_path: Path) -> None:
    store = SpoolStore(tmp_path, sync="full")
    try:
        mode = stat.S_IMODE((tmp_path / FILE_NAME).stat().st_mode)
        assert mode == 0o600
        with sqlite3.connect(tmp_path / FILE_NAME) as probe:
            assert probe.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()
    assert not (tmp_path / (FILE_NAME + ".new")).exists()


async def test_committed_events_come_back_in_arrival_order_without_their_payloads(
    tmp_path: Path,
) -> None:
    store = SpoolStore(tmp_path)
    async with committing(store) as committer:
        for seq in (1, 2, 3):
            item = envelope(f"d-{seq}", issue_number=seq, payload=b"p" * seq)
            await committer.commit(insert_event(seq, item, 2, item.payload))
        await committer.commit(delete_event(2))
    store.close()

    reopened = SpoolStore(tmp_path)
    try:
        rows = list(reopened.events())
        assert [(r.seq, r.envelope.delivery_id, r.size) for r in rows] == [
            (1, "d-1", 1),
            (3, "d-3", 3),
        ]
        assert all(r.envelope.payload == b"" for r in rows)
        assert reopened.payload(3) == b"ppp"
        with pytest.raises(SpoolError, match="missing"):
            reopened.payload(2)
    finally:
        reopened.close()


async def test_deliveries_arriving_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    store = SpoolStore(tmp_path)
    try:
        async with committing(store) as committer:
            async with anyio.create_task_group() as group:
                for seq in range(1, 51):
                    item = envelope(f"d-{seq}", issue_number=seq)
                    group.start_soon(committer.commit, insert_event(seq, item, 2, item.payload))
            assert committer.writes == 50 * 2  # an event row and its payload each
            assert committer.commits <= 2  # the first, and everything that came during it
            assert committer.largest_group >= 49 * 2
        assert len(list(store.events())) == 50
    finally:
        store.close()


async def test_a_failed_commit_refuses_its_writers_and_keeps_the_writes_nobody_awaits(
    tmp_path: Path,
) -> None:
    store = SpoolStore(tmp_path)
    try:
        async with committing(store) as committer:
            small = envelope("d-small", issue_number=1)
            await committer.commit(insert_event(1, small, 2, small.payload))
            huge = envelope("d-huge", issue_number=2, payload=os.urandom(2 * 1024 * 1024))
            with file_size_limit(1024 * 1024):
                committer.write([remember_delivery("d-small", 1.0)])
                with pytest.raises(SpoolError):
                    await committer.commit(insert_event(2, huge, 2, huge.payload))
                assert committer.problem is not None
            # room again: the kept write goes first, the next delivery is stored
            other = envelope("d-other", issue_number=3)
            await committer.commit(insert_event(3, other, 2, other.payload))
            assert committer.problem is None
        assert [r.envelope.delivery_id for r in store.events()] == ["d-small", "d-other"]
        assert list(store.deliveries(0.0)) == [("d-small", True)]
    finally:
        store.close()


def test_a_file_that_is_not_a_database_stops_start_up_naming_it(tmp_path: Path) -> None:
    spool = tmp_path / FILE_NAME
    garbage = b"this is not sqlite at all\n" * 400
    spool.write_bytes(garbage)
    with pytest.raises(SpoolUnreadable) as raised:
        SpoolStore(tmp_path)
    message = str(raised.value)
    assert str(spool) in message and "move it aside" in message
    assert "\n" not in message
    assert spool.read_bytes() == garbage  # nothing overwritten


async def test_a_truncated_spool_stops_start_up_and_is_left_as_it_is(tmp_path: Path) -> None:
    store = SpoolStore(tmp_path)
    async with committing(store) as committer:
        for seq in range(1, 200):
            item = envelope(f"d-{seq}", issue_number=seq, payload=os.urandom(3000))
            await committer.commit(insert_event(seq, item, 2, item.payload))
    store.close()  # the last connection's close checkpoints the WAL into the file
    spool = tmp_path / FILE_NAME
    data = spool.read_bytes()
    spool.write_bytes(data[: len(data) // 2])
    with pytest.raises(SpoolUnreadable) as raised:
        SpoolStore(tmp_path)
    assert str(spool) in str(raised.value)
    assert spool.read_bytes() == data[: len(data) // 2]


def test_an_empty_spool_file_is_refused_not_reused(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"")
    with pytest.raises(SpoolUnreadable, match="empty"):
        SpoolStore(tmp_path)


def test_another_sqlite_database_is_not_taken_for_a_spool(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / FILE_NAME) as other:
        other.execute("CREATE TABLE t (x)")
    with pytest.raises(SpoolUnreadable, match="not a spool of this app"):
        SpoolStore(tmp_path)


def test_sync_must_be_normal_or_full(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SPOOL_SYNC"):
        SpoolStore(tmp_path, sync="sometimes")


async def test_maintenance_prunes_old_deliveries_and_gives_deleted_pages_back(
    tmp_path: Path,
) -> None:
    store = SpoolStore(tmp_path)
    try:
        async with committing(store) as committer:
            for seq in range(1, 400):
                item = envelope(f"d-{seq}", issue_number=seq, payload=os.urandom(4000))
                await committer.commit(insert_event(seq, item, 2, item.payload))
            committer.write([remember_delivery("old", 100.0), remember_delivery("new", 900.0)])
            full = store.size_on_disk()
            for seq in range(1, 400):
                committer.write(delete_event(seq))
            await committer.flush()
            await anyio.to_thread.run_sync(store.maintain, 500.0)
        assert list(store.deliveries(0.0)) == [("new", True)]
        assert store.size_on_disk() < full / 4
    finally:
        store.close()


def test_commits_leave_the_wal_to_the_checkpoint_beside_them(tmp_path: Path) -> None:
    store = SpoolStore(tmp_path)
    wal = tmp_path / (FILE_NAME + "-wal")
    try:
        for seq in range(1, 1201):
            item = envelope(f"d-{seq}", issue_number=seq, payload=os.urandom(4000))
            store.apply(insert_event(seq, item, 2, item.payload))
        # 1,200 commits of two pages or more: SQLite's automatic checkpoint (every 1,000
        # pages) would have started the WAL over at about 4 MiB.
        grown = wal.stat().st_size
        assert grown > 2 * 1200 * 4096
        store.checkpoint()
        for seq in range(1201, 1211):
            item = envelope(f"d-{seq}", issue_number=seq, payload=os.urandom(4000))
            store.apply(insert_event(seq, item, 2, item.payload))
        assert wal.stat().st_size == grown  # checkpointed: the next commits start it over
        assert len(list(store.events())) == 1210
    finally:
        store.close()
