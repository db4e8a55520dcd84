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
    WAL_LIMIT,
    GroupCommitter,
    SpoolError,
    SpoolStore,
    SpoolUnreadable,
    batched,
    delete_event,
    forget_delivery,
    insert_event,
    remember_delivery,
    update_attempts,
)
from github_app.queue.succeeded import REDELIVERY_WINDOW
from tests.conftest import wait_for
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
        # with the writer stopped: its checkpoints beside the writer no longer run
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
        # checkpointed: the next commits start it over, cut back to the limit
        assert wal.stat().st_size <= WAL_LIMIT < grown
        assert len(list(store.events())) == 1210
    finally:
        store.close()


def test_a_groups_inserts_go_one_statement_per_table_in_their_order_per_table() -> None:
    first = envelope("d-1", issue_number=1)
    second = envelope("d-2", issue_number=2)
    ops = [
        remember_delivery("d-1", 10.0),
        *insert_event(1, first, 2, first.payload),
        remember_delivery("d-2", 11.0),
        *insert_event(2, second, 2, second.payload),
    ]
    statements = list(batched(ops))
    assert [sql.split()[2] for sql, _ in statements] == ["deliveries", "events", "payloads"]
    assert statements[0][1] == [("d-1", 10.0), ("d-2", 11.0)]
    assert [row[0] for row in statements[1][1]] == [1, 2]
    assert [row[0] for row in statements[2][1]] == [1, 2]


def test_an_update_or_another_kind_of_insert_into_a_table_keeps_its_place_in_a_group() -> None:
    item = envelope("d-1", issue_number=1)
    ops = [
        remember_delivery("a", 1.0),
        forget_delivery("a", 2.0),  # the log's order is what a restart replays
        remember_delivery("a", 3.0),
        *insert_event(1, item, 2, item.payload),
        update_attempts(1, 1, 0.0, None),
        *insert_event(2, item._replace(delivery_id="d-2"), 2, item.payload),
    ]
    shape = [(" ".join(sql.split()[:3]), len(rows)) for sql, rows in batched(ops)]
    assert shape == [
        ("INSERT INTO deliveries", 1),
        ("INSERT INTO deliveries", 1),
        ("INSERT INTO deliveries", 1),
        ("INSERT INTO events", 1),
        ("INSERT INTO payloads", 1),
        ("UPDATE events SET", 1),
        ("INSERT INTO events", 1),
        ("INSERT INTO payloads", 1),
    ]


def test_a_group_written_with_batched_statements_reads_back_in_order(tmp_path: Path) -> None:
    store = SpoolStore(tmp_path)
    try:
        ops = []
        for seq in range(1, 6):
            item = envelope(f"d-{seq}", issue_number=seq, payload=bytes([seq]) * 50)
            ops += [remember_delivery(item.delivery_id, float(seq))]
            ops += insert_event(seq, item, 2, item.payload)
        ops.append(forget_delivery("d-2", 9.0))
        store.apply(ops)
        assert [row.seq for row in store.events()] == [1, 2, 3, 4, 5]
        assert store.payload(4) == bytes([4]) * 50
        seen = list(store.deliveries(0.0))
        assert seen == [(f"d-{n}", True) for n in range(1, 6)] + [("d-2", False)]
    finally:
        store.close()


async def test_a_quiet_second_after_commits_cuts_the_wal_to_nothing(tmp_path: Path) -> None:
    store = SpoolStore(tmp_path)
    wal = tmp_path / (FILE_NAME + "-wal")
    try:
        async with committing(store) as committer:
            for seq in range(1, 50):
                item = envelope(f"d-{seq}", issue_number=seq, payload=os.urandom(3000))
                await committer.commit(insert_event(seq, item, 2, item.payload))
            assert wal.stat().st_size > 49 * 3000
            await wait_for(lambda: wal.stat().st_size == 0, timeout=10, what="the WAL cut")
            assert len(list(store.events())) == 49  # copied into the database, not lost
    finally:
        store.close()
