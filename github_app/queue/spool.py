"""The spool: admitted events, dead letters and the delivery memory in SQLite, under STATE_DIR.

One file, ``spool.sqlite3``, in WAL mode, written by one connection:

- ``events``: one row per queued or dead-lettered event, keyed by its arrival
  number (``seq``), with what the queue knows about it (priority, attempts,
  not-before as wall-clock time, last error, the dead-letter reason);
  ``payloads`` holds its compressed body apart, so a start-up replay reads
  the small rows only and a take reads one payload by key.
- ``deliveries``: a log of the delivery ids remembered and forgotten in
  GitHub's redelivery window, in order (appended, never looked up: a row costs
  one sequential write on the request path).
- ``succeeded``: per delivery, the processors that already succeeded.

Writes are grouped: every write asked for while the previous transaction
commits, or within ``GROUP_EVERY`` of its start, goes into the next one
(``GroupCommitter``), which runs in a worker thread, never on the event loop.
A write that must be durable before the caller goes on (an admission, before
its 202) awaits its group; the others (attempts, deletes of finished events)
ride along. ``SPOOL_SYNC=normal`` survives a crash of the process (SQLite's
``synchronous=NORMAL`` in WAL mode); ``full`` also survives power loss (an
fsync per commit group).

The WAL is copied back into the database by a checkpoint on a connection of
its own, beside the writer (``PASSIVE``: it never blocks a commit), about
once a second while commits come; SQLite's automatic checkpoint is off,
since it would run inside whichever commit group crossed its threshold and
hold every delivery in that group for its duration.

A file that is not a readable spool stops start-up with one line naming it;
it is never overwritten.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from github_app.envelope import Envelope
from github_app.errors import SettingsError
from github_app.queue.state_lock import REPAIR, on_read_only_file_system

log = logging.getLogger(__name__)

FILE_NAME = "spool.sqlite3"
SCHEMA_VERSION = 1
APPLICATION_ID = 0x41495031  # "AIP1": this app's spool, not any SQLite file
SYNC_MODES = ("normal", "full")
WAL_LIMIT = 4 * 1024 * 1024  # the WAL file is cut back to this when it starts over
MAINTENANCE_EVERY = 30.0  # seconds between checkpoints, incremental vacuum and pruning
GROUP_EVERY = 0.002  # seconds from one group's start to the next's while deliveries keep coming
CHECKPOINT_EVERY = 1.0  # seconds between WAL checkpoints beside the writer while it commits
QUIET_WAIT = 0.1  # seconds a WAL-cutting checkpoint may wait for the writer (then gives up)
DELIVERY_LOG_ROWS = 400_000  # newest rows of the delivery log kept (the memory holds 100,000)
LAZY_WRITES = 0.02  # seconds a write nobody waits for may wait for a group to join
CACHE_KIB = 256  # page cache per connection (SQLite's default is 2 MiB)
RETRY_PAUSE = 1.0  # after a failed commit, before writes that need no answer are tried again

SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    event TEXT NOT NULL,
    action TEXT,
    installation_id INTEGER,
    repository TEXT,
    issue_number INTEGER,
    sender_login TEXT,
    sender_type TEXT,
    received_at REAL NOT NULL,
    raw_size INTEGER NOT NULL,
    size INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    dead_reason TEXT,
    dead_at REAL
);
CREATE TABLE payloads (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE deliveries (delivery_id TEXT NOT NULL, at REAL NOT NULL, seen INTEGER NOT NULL);
CREATE TABLE succeeded (
    delivery_id TEXT PRIMARY KEY, processors TEXT NOT NULL, at REAL NOT NULL
) WITHOUT ROWID;
"""

Op = tuple[str, Sequence[Any]]


class SpoolError(Exception):
    """The spool cannot store what it was given now (disk full, I/O error, read-only).

    ``advice`` says what an operator does about it, when there is more to do than wait.
    """

    def __init__(self, message: str, advice: str = "") -> None:
        super().__init__(message)
        self.advice = advice


class SpoolUnreadable(SettingsError):
    """The spool file is damaged or not a spool: start-up stops rather than overwrite it."""


@dataclass(frozen=True, slots=True)
class SpooledEvent:
    """One row of ``events`` as a previous process left it (no payload: it stays on disk)."""

    seq: int
    envelope: Envelope
    size: int
    priority: int
    attempts: int
    not_before: float  # wall clock; 0 when none
    last_error: str | None
    dead_reason: str | None
    dead_at: float | None


@dataclass(frozen=True)
class SpoolStats:
    path: str
    sync: str
    bytes: int  # database and WAL files on disk
    refused: int  # deliveries refused because a commit failed
    commits: int
    writes: int
    largest_group: int
    failed_commits: int
    problem: str | None


def _connect(path: Path) -> sqlite3.Connection:
    # Transactions are explicit (BEGIN ... COMMIT); one connection is used by one thread at a time.
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if "disk" in text or "full" in text else f"I/O error: {text}"


class SpoolStore:
    """The SQLite file: opening and checking it, reads, and applying one group of writes."""

    def __init__(self, directory: Path, *, sync: str = "normal") -> None:
        if sync not in SYNC_MODES:
            raise SettingsError(f"SPOOL_SYNC must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
        self.path = directory / FILE_NAME
        self.sync = sync
        if not self.path.exists():
            self._create()
        self._writer = self._open(self.path, check=True)
        self._reader = self._open(self.path, check=False)
        self._checkpointer = self._open(self.path, check=False)
        # a TRUNCATE checkpoint holds off the writer while it waits: briefly (``checkpoint``)
        self._checkpointer.execute(f"PRAGMA busy_timeout = {int(QUIET_WAIT * 1000)}")

    def _create(self) -> None:
        """A new spool is built under a temporary name and renamed: a file named like the
        spool is always one this app finished creating."""
        fresh = self.path.with_name(FILE_NAME + ".new")
        fresh.unlink(missing_ok=True)
        connection = _connect(fresh)
        try:
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.executescript(SCHEMA)
            connection.execute("PRAGMA journal_mode = WAL")
        finally:
            connection.close()
        os.chmod(fresh, 0o600)  # SQLite gives its WAL the database's mode
        os.replace(fresh, self.path)

    def _open(self, path: Path, *, check: bool) -> sqlite3.Connection:
        what_to_do = (
            "move it aside to start with an empty spool (its events are then lost "
            "unless redelivered from GitHub), or restore it from a backup"
        )
        if path.stat().st_size == 0:
            raise SpoolUnreadable(f"spool {path} is empty (truncated?): {what_to_do}")
        connection = _connect(path)
        try:
            application_id = connection.execute("PRAGMA application_id").fetchone()[0]
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if application_id != APPLICATION_ID:
                raise SpoolUnreadable(f"{path} is not a spool of this app: {what_to_do}")
            if version != SCHEMA_VERSION:
                raise SpoolUnreadable(
                    f"spool {path} has format {version}, this version reads {SCHEMA_VERSION}"
                )
            verdict = connection.execute("PRAGMA quick_check").fetchone()[0] if check else "ok"
            if verdict != "ok":
                raise SpoolUnreadable(f"spool {path} is damaged ({verdict}): {what_to_do}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(f"PRAGMA synchronous = {self.sync.upper()}")
            connection.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
            connection.execute("PRAGMA wal_autocheckpoint = 0")  # see ``checkpoint``
            connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise SpoolUnreadable(f"spool {path} cannot be read ({exc}): {what_to_do}") from None
        except BaseException:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        self._checkpointer.close()
        self._reader.close()
        self._writer.close()

    # --- reads (the event loop's connection) --------------------------------------------------

    def events(self) -> Iterator[SpooledEvent]:
        """Every event row in arrival order (queued, in flight when the process died, or dead).

        The names that repeat across events come back shared (``sys.intern``), and so do
        the installation ids; no payload and no raw size (a take reads them): as the
        scheduler's index keeps them.
        """
        intern = sys.intern
        installations: dict[int, int] = {}
        rows = self._reader.execute(
            "SELECT id, delivery_id, event, action, installation_id, repository, issue_number,"
            " sender_login, sender_type, received_at, raw_size, size, priority, attempts,"
            " not_before, last_error, dead_reason, dead_at FROM events ORDER BY id"
        )
        for row in rows:
            action, repository, login, kind = row[3], row[5], row[7], row[8]
            installation = row[4]
            if installation is not None:
                installation = installations.setdefault(installation, installation)
            envelope = Envelope(
                row[1],
                intern(row[2]),
                action and intern(action),
                installation,
                repository and intern(repository),
                row[6],
                login and intern(login),
                kind and intern(kind),
                row[9],
                b"",
                0,
            )
            yield SpooledEvent(
                row[0], envelope, row[11], row[12], row[13], row[14], row[15], row[16], row[17]
            )

    def deliveries(self, since: float) -> Iterator[tuple[str, bool]]:
        """(delivery id, remembered or forgotten) since ``since``, in the order it happened."""
        rows = self._reader.execute(
            "SELECT delivery_id, seen FROM deliveries WHERE at >= ? ORDER BY rowid", (since,)
        )
        return ((row[0], bool(row[1])) for row in rows)

    def succeeded(self, since: float) -> Iterator[tuple[str, tuple[str, ...], float]]:
        rows = self._reader.execute(
            "SELECT delivery_id, processors, at FROM succeeded WHERE at >= ? ORDER BY at", (since,)
        )
        return ((row[0], tuple(filter(None, row[1].split(","))), row[2]) for row in rows)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read of another part's tables in this file (recovery's), on the reader."""
        try:
            return self._reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise SpoolError(_describe(exc)) from None

    def taken(self, seq: int) -> tuple[bytes, int]:
        """What a take reads back of an event: its compressed payload and its raw size (the
        scheduler's index keeps neither)."""
        try:
            row = self._reader.execute(
                "SELECT p.data, e.raw_size FROM payloads p JOIN events e ON e.id = p.id"
                " WHERE p.id = ?",
                (seq,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise SpoolError(_describe(exc)) from None
        if row is None:
            raise SpoolError(f"payload of event {seq} is missing from the spool")
        return row[0], row[1]

    def payload(self, seq: int) -> bytes:
        return self.taken(seq)[0]

    def size_on_disk(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(str(self.path) + suffix).st_size
        return total

    # --- writes (a worker thread, one group at a time) ----------------------------------------

    def apply(self, ops: Sequence[Op]) -> None:
        """Run ``ops`` in one transaction; all or nothing.

        The inserts of a group go in one ``executemany`` per table (``batched``).
        """
        connection = self._writer
        try:
            _roll_back(connection)  # a ROLLBACK that failed last time: not in this group
            connection.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in batched(ops):
                    connection.executemany(sql, rows)
                connection.execute("COMMIT")
            except BaseException:
                # after an I/O error SQLite has often rolled back already: the error to report
                # is the one that failed the group, not "cannot rollback"
                with contextlib.suppress(sqlite3.Error):
                    _roll_back(connection)
                raise
        except (sqlite3.Error, OSError) as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: BaseException) -> SpoolError:
        """Why a write failed, in words an operator can act on: SQLite says "disk I/O error"
        when the kernel has turned the file system read-only under it."""
        text = _describe(exc)
        if on_read_only_file_system(self.path.parent):
            return SpoolError(
                f"STATE_DIR {self.path.parent} is on a read-only file system ({text})", REPAIR
            )
        return SpoolError(text)

    def maintain(self, prune_before: float, keep_deliveries: int = DELIVERY_LOG_ROWS) -> None:
        """Drop delivery memory older than the window, give free pages back, cut the WAL."""
        self.apply(
            [
                ("DELETE FROM deliveries WHERE at < ?", (prune_before,)),
                (
                    "DELETE FROM deliveries WHERE rowid <= (SELECT max(rowid) FROM deliveries) - ?",
                    (keep_deliveries,),
                ),
                ("DELETE FROM succeeded WHERE at < ?", (prune_before,)),
            ]
        )
        connection = self._writer
        try:
            free = connection.execute("PRAGMA freelist_count").fetchone()[0]
            if free > 256:
                # executescript steps the pragma to its end (execute frees one page)
                connection.executescript("PRAGMA incremental_vacuum;")
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            raise self._failed(exc) from None

    def checkpoint(self, *, truncate: bool = False) -> bool:
        """Copy committed WAL frames into the database without waiting for, or blocking, the
        writer (a worker thread, one at a time; the writer may commit meanwhile).

        ``truncate`` (when commits have stopped): also cut the WAL file to zero bytes. That
        needs a moment without a writer; if one comes, it waits at most ``QUIET_WAIT`` and
        the WAL is cut another time. True when every frame was copied (and the WAL cut).
        """
        mode = "TRUNCATE" if truncate else "PASSIVE"
        try:
            busy, _, _ = self._checkpointer.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        return not busy


def _roll_back(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def batched(ops: Sequence[Op]) -> Iterator[tuple[str, list[Sequence[Any]]]]:
    """``ops`` as (statement, rows) for ``executemany``, in an order with the same outcome.

    A run of plain inserts (``INSERT INTO``) is grouped by table, one statement per table:
    inserts into different tables do not depend on each other, and each table's rows keep
    their order. Anything else (updates, deletes, ``INSERT OR REPLACE``), or a second kind
    of insert into a table of the run, ends the run and goes alone, in its place.
    """
    run: dict[str, tuple[str, list[Sequence[Any]]]] = {}  # table -> (statement, rows)
    for sql, params in ops:
        table = _inserted_table(sql)
        if table is not None:
            entry = run.get(table)
            if entry is None:
                run[table] = (sql, [params])
                continue
            if entry[0] == sql:
                entry[1].append(params)
                continue
        yield from run.values()
        run = {}
        if table is not None:
            run[table] = (sql, [params])
        else:
            yield sql, [params]
    yield from run.values()


def _inserted_table(sql: str) -> str | None:
    if not sql.startswith("INSERT INTO "):
        return None
    return sql[12:].split(None, 1)[0]


# --- the writes, as statements ----------------------------------------------------------------


def insert_event(
    seq: int, envelope: Envelope, priority: int, payload: bytes, *, replaces: int | None = None
) -> list[Op]:
    """A new arrival; it replaces the dead letter ``replaces`` of the same delivery (GitHub
    redelivered it) in the same transaction."""
    e = envelope
    return [
        *(delete_event(replaces) if replaces is not None else ()),
        (
            "INSERT INTO events (id, delivery_id, event, action, installation_id, repository,"
            " issue_number, sender_login, sender_type, received_at, raw_size, size, priority)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                e.delivery_id,
                e.event,
                e.action,
                e.installation_id,
                e.repository,
                e.issue_number,
                e.sender_login,
                e.sender_type,
                e.received_at,
                e.raw_size,
                len(payload),
                priority,
            ),
        ),
        ("INSERT INTO payloads (id, data) VALUES (?, ?)", (seq, payload)),
    ]


def delete_event(seq: int) -> list[Op]:
    return [
        ("DELETE FROM payloads WHERE id = ?", (seq,)),
        ("DELETE FROM events WHERE id = ?", (seq,)),
    ]


def update_attempts(seq: int, attempts: int, not_before: float, last_error: str | None) -> Op:
    return (
        "UPDATE events SET attempts = ?, not_before = ?, last_error = ? WHERE id = ?",
        (attempts, not_before, last_error, seq),
    )


def mark_dead(seq: int, reason: str, at: float, attempts: int, last_error: str | None) -> Op:
    return (
        "UPDATE events SET dead_reason = ?, dead_at = ?, attempts = ?, last_error = ? WHERE id = ?",
        (reason, at, attempts, last_error, seq),
    )


def redrive_event(old_seq: int, new_seq: int) -> list[Op]:
    """A re-driven dead letter is a new arrival: new number, attempts start again."""
    return [
        (
            "UPDATE events SET id = ?, dead_reason = NULL, dead_at = NULL, attempts = 0,"
            " not_before = 0, last_error = NULL WHERE id = ?",
            (new_seq, old_seq),
        ),
        ("UPDATE payloads SET id = ? WHERE id = ?", (new_seq, old_seq)),
    ]


def remember_delivery(delivery_id: str, at: float) -> Op:
    return ("INSERT INTO deliveries VALUES (?, ?, 1)", (delivery_id, at))


def forget_delivery(delivery_id: str, at: float) -> Op:
    return ("INSERT INTO deliveries VALUES (?, ?, 0)", (delivery_id, at))


def record_succeeded(delivery_id: str, processors: Iterable[str], at: float) -> Op:
    return (
        "INSERT OR REPLACE INTO succeeded VALUES (?, ?, ?)",
        (delivery_id, ",".join(processors), at),
    )


def clear_succeeded(delivery_id: str) -> Op:
    return ("DELETE FROM succeeded WHERE delivery_id = ?", (delivery_id,))


# --- grouping ---------------------------------------------------------------------------------


class _Group:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: str | None = None


class GroupCommitter:
    """Collects writes and commits them in groups, one transaction at a time, off the loop.

    ``commit`` waits for the group its writes went into; ``write`` does not. A
    failed group fails every ``commit`` in it (their callers refuse the
    delivery); the writes nobody waits for are kept and tried again first, so
    a full disk that frees up loses none of them.
    """

    def __init__(self, store: SpoolStore, *, window: float, clock: Any = time.time) -> None:
        self._store = store
        self._window = window
        self._clock = clock
        self._ops: list[Op] = []  # nobody waits for these
        self._awaited: list[Op] = []
        self._retry: list[Op] = []
        self._group = _Group()
        self._wake = anyio.Event()
        self._running = False
        self._flushing = False
        self._idle = False  # the writer waits with nothing to write
        self._ops_since = 0.0  # when the oldest write nobody waits for was asked
        self._group_started = 0.0
        self._one_at_a_time = anyio.Lock()  # one connection: one transaction at a time
        self._checkpointing = anyio.Lock()  # maintenance's checkpoint and the periodic one
        self._failures: dict[str, str] = {}  # checkpoint or maintenance -> why, while failing
        self.problem: str | None = None
        self.commits = 0
        self.writes = 0
        self.largest_group = 0
        self.failed_commits = 0

    @property
    def pending(self) -> bool:
        """Writes asked for and not committed yet?"""
        return self._flushing or bool(self._ops or self._awaited or self._retry)

    def write(self, ops: Iterable[Op]) -> None:
        """Commit ``ops`` with the next group, or within ``LAZY_WRITES`` seconds if none comes:
        a write nobody waits for does not start a commit of its own during a burst."""
        if not self._ops:
            self._ops_since = time.monotonic()
        self._ops.extend(ops)
        if self._idle:
            self._wake.set()  # the writer sleeps until maintenance: it must count from now

    async def commit(self, ops: Iterable[Op]) -> None:
        """Return once ``ops`` are committed; ``SpoolError`` if their group failed."""
        if not self._running:
            raise SpoolError("the spool is closed")
        group = self._group
        self._awaited.extend(ops)
        self._wake.set()
        await group.done.wait()
        if group.error is not None:
            raise SpoolError(group.error)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Commit groups until cancelled; what was asked before the cancel is committed first.

        Checkpoints run beside, in a task of their own, so a commit never waits for one.
        """
        async with anyio.create_task_group() as beside:
            beside.start_soon(self._checkpoints)
            try:
                await self._commit_groups(task_status)
            finally:
                beside.cancel_scope.cancel()

    async def _commit_groups(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        self._running = True
        task_status.started()
        next_maintenance = time.monotonic() + MAINTENANCE_EVERY
        try:
            while True:
                if not self._awaited:
                    wait = max(0.0, next_maintenance - time.monotonic())
                    if self._retry:
                        wait = RETRY_PAUSE
                    elif self._ops:
                        wait = min(wait, max(0.0, self._ops_since + LAZY_WRITES - time.monotonic()))
                    self._idle = not self._ops and not self._retry
                    with anyio.move_on_after(wait):
                        await self._wake.wait()
                    self._idle = False
                self._wake = anyio.Event()
                if not self._awaited and self._ops and not self._retry and not self._lazy_due():
                    continue  # a lazy write woke the idle writer: it waits LAZY_WRITES now
                pause = self._group_started + GROUP_EVERY - time.monotonic()
                if self._awaited and pause > 0:
                    # Busy: the last group started moments ago. Waiting the rest of
                    # GROUP_EVERY lets the deliveries being read now join this group, so a
                    # burst pays a group's fixed cost (~100 us) once per few deliveries,
                    # not once per delivery; a lone delivery is committed at once.
                    await anyio.sleep(pause)
                if time.monotonic() >= next_maintenance:
                    next_maintenance = time.monotonic() + MAINTENANCE_EVERY
                    with anyio.CancelScope(shield=True):
                        await self._maintain()
                with anyio.CancelScope(shield=True):
                    await self.flush()
        finally:
            self._running = False
            with anyio.CancelScope(shield=True):
                await self.flush()
                self._fail_waiting("the spool is closed")

    def _lazy_due(self) -> bool:
        return time.monotonic() - self._ops_since >= LAZY_WRITES

    async def flush(self) -> None:
        """Commit what was asked so far (one group)."""
        async with self._one_at_a_time:
            await self._flush()

    async def _flush(self) -> None:
        ops, awaited, retry = self._ops, self._awaited, self._retry
        if not ops and not awaited and not retry:
            return
        group, self._group = self._group, _Group()
        self._group_started = time.monotonic()
        self._ops, self._awaited, self._retry = [], [], []
        batch = retry + ops + awaited
        self._flushing = True
        try:
            await anyio.to_thread.run_sync(self._store.apply, batch)
        except SpoolError as exc:
            self.failed_commits += 1
            if self.problem != str(exc):  # once, not at every retry (the first of a fault may
                # come before the kernel has turned the file system read-only: then again)
                advice = f": {exc.advice}" if exc.advice else ""
                log.error("spool %s: cannot commit: %s%s", self._store.path, exc, advice)
            self.problem = str(exc)
            group.error = str(exc)
            self._retry = retry + ops  # nobody waits for these: again; the awaited were refused
        else:
            if self.problem is not None:
                log.info("spool %s: commits succeed again", self._store.path)
            self.problem = None
            self.commits += 1
            self.writes += len(batch)
            self.largest_group = max(self.largest_group, len(batch))
        finally:
            self._flushing = False
        group.done.set()

    async def _maintain(self) -> None:
        async with self._checkpointing:
            try:
                await anyio.to_thread.run_sync(self._store.maintain, self._clock() - self._window)
            except SpoolError as exc:
                self._failing("maintenance", exc)
            else:
                self._failing("maintenance", None)

    def _failing(self, what: str, exc: SpoolError | None) -> None:
        """Log a failing checkpoint or maintenance when it starts failing, not at every try
        (a checkpoint is tried each second while the disk is full or read-only)."""
        if exc is None:
            self._failures.pop(what, None)
        elif self._failures.get(what) != str(exc):
            self._failures[what] = str(exc)
            log.warning("spool %s failed: %s", what, exc)

    async def _checkpoints(self) -> None:
        """A PASSIVE checkpoint every ``CHECKPOINT_EVERY`` seconds in which something was
        committed: the WAL stays short without a commit group ever running one. The first
        second without a commit (a burst is over) cuts the WAL file to nothing: bursts of
        small groups leave a WAL several times the size of what they wrote."""
        checkpointed = self.commits
        cut = True
        while True:
            await anyio.sleep(CHECKPOINT_EVERY)
            quiet = self.commits == checkpointed
            if quiet and cut:
                continue
            checkpointed = self.commits
            async with self._checkpointing:
                try:
                    complete = await anyio.to_thread.run_sync(
                        functools.partial(self._store.checkpoint, truncate=quiet)
                    )
                except SpoolError as exc:
                    self._failing("checkpoint", exc)
                else:
                    self._failing("checkpoint", None)
                    cut = quiet and complete and self.commits == checkpointed

    def _fail_waiting(self, reason: str) -> None:
        group = self._group
        group.error = reason
        group.done.set()
