"""One process owns a state directory: an advisory lock on ``STATE_DIR/lock``.

The lock is ``flock``'d for the life of the process and released by the
kernel when the process ends, however it ends (kill -9 included), so a stale
lock never blocks a restart. The file holds the owner's pid and start time,
so a second process can say who holds it.

A state directory on a read-only file system (one the kernel turned
read-only after a disk error, as ext4's ``errors=remount-ro`` does) stops
start-up with one line saying so and what to do.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from pathlib import Path

from github_app.errors import SettingsError

LOCK_NAME = "lock"
# what an operator does when the kernel has turned the file system of STATE_DIR read-only
REPAIR = (
    "the kernel does this after a disk error (its log says why); deliveries are refused "
    "(503) and queued events still processed: once the queue is empty (/admin/status), "
    "stop the app, repair the file system (fsck), mount it read-write and start the app again"
)


class StateDirBusy(SettingsError):
    """Another process holds the state directory."""


def open_state_dir(directory: Path) -> StateLock:
    """Create the state directory (mode 0700: it holds every queued payload) and lock it."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise _unusable(directory, exc, f"cannot create {directory}") from None
    lock = StateLock(directory)
    try:
        lock.acquire()
    except StateDirBusy:
        raise
    except OSError as exc:
        raise _unusable(directory, exc, f"cannot lock {lock.path}") from None
    return lock


def _unusable(directory: Path, exc: OSError, failed: str) -> SettingsError:
    if exc.errno != errno.EROFS:
        return SettingsError(f"STATE_DIR: {failed}: {exc.strerror}")
    return SettingsError(
        f"STATE_DIR {directory} is on a read-only file system: if the kernel turned it "
        "read-only after a disk error (its log says so), repair it (fsck) and mount it "
        "read-write again; or give STATE_DIR a folder on a writable file system"
    )


def on_read_only_file_system(directory: Path) -> bool:
    """Is the file system of the state directory read-only now?

    Only opening a file for writing tells: after a disk error the kernel turns
    the file system read-only (``emergency_ro`` in ``/proc/mounts``) while its
    mount options, ``statvfs`` and ``access`` still say writable. The file
    opened is the lock (opening without truncating changes nothing), never the
    spool: closing any descriptor of a file drops the process's ``fcntl`` locks
    on it, SQLite's included; the lock's ``flock`` is not dropped.
    """
    try:
        os.close(os.open(directory / LOCK_NAME, os.O_WRONLY))
    except OSError as exc:
        return exc.errno == errno.EROFS
    return False


class StateLock:
    """Held from ``acquire`` until ``release`` (or the end of the process)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise StateDirBusy(
                f"{self.path.parent} is in use by {holder}; "
                "stop it, or give this one another STATE_DIR"
            ) from None
        except OSError:
            os.close(fd)
            raise
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"process {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0
        )
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
