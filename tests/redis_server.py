"""A real ``redis-server`` for the tests: Debian's package, on a free port in its own folder.

Tests of the Redis backend never share a server with each other or touch one
the machine already runs: each ``RedisServer`` has its own port and data
folder, appendonly on (``everysec``, as README advises), and can be stopped and
started again on the same port and data (Redis down during a burst). Where
``redis-server`` is not installed the tests that need it are skipped, except
under ``REQUIRE_REDIS=1`` (CI installs it), where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

START_DEADLINE = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    """True when a PING on the port gets +PONG (plain RESP, no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; ``url`` stays the same across stop/start."""

    def __init__(self, folder: Path, executable: str) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._executable = executable
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or start again, on the same port and data) and wait until it answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                self._executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.folder),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--daemonize", "no",
                "--logfile", str(self.folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_DEADLINE
        while not _answers(self.port):
            if self._process.poll() is not None:
                log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop it (SIGKILL: what an outage looks like to the app); the data folder stays."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


def redis_executable() -> str | None:
    return shutil.which("redis-server")


@contextmanager
def running_redis(folder: Path) -> Iterator[RedisServer]:
    """A fresh, empty Redis in ``folder``, stopped at the end; the test is skipped where none is
    installed (failed under ``REQUIRE_REDIS=1``, as in CI)."""
    executable = redis_executable()
    if executable is None:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is not installed (REQUIRE_REDIS=1)")
        pytest.skip("redis-server is not installed")
    server = RedisServer(folder, executable)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty Redis of the test's own."""
    with running_redis(tmp_path / "redis") as server:
        yield server
