"""One process owns a state directory: an advisory lock on ``STATE_DIR/lock``.

The lock is ``flock``'d for the life of the process and released by the
kernel when the process ends, however it ends (kill -9 included), so a stale
lock never blocks a restart. The file holds the owner's pid and start time,
so a second process can say who holds it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from github_app.errors import SettingsError

LOCK_NAME = "lock"


class StateDirBusy(SettingsError):
    """Another process holds the state directory."""


def open_state_dir(directory: Path) -> StateLock:
    """Create the state directory (mode 0700: it holds every queued payload) and lock it."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"STATE_DIR: cannot create {directory}: {exc.strerror}") from None
    lock = StateLock(directory)
    try:
        lock.acquire()
    except StateDirBusy:
        raise
    except OSError as exc:
        raise SettingsError(f"STATE_DIR: cannot lock {lock.path}: {exc.strerror}") from None
    return lock


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
