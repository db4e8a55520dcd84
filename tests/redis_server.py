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
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

START_DEADLINE = 10.0
PORT_TRIES = 5  # a first start on a port another process took meanwhile tries a new one
PROCESS_ID = re.compile(rb"process_id:(\d+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answering_pid(port: int) -> int | None:
    """The process id of the Redis that answers a PING on the port (plain RESP, no client
    library needed; ``INFO server`` says who it is), or None while none does."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\nINFO server\r\n")
            answer = b""
            while b"process_id:" not in answer or not answer.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return None
    found = PROCESS_ID.search(answer)
    return int(found[1]) if found is not None and answer.startswith(b"+PONG") else None


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; ``url`` stays the same across stop/start.

    Its port is picked before ``redis-server`` binds it (Redis cannot be asked for a port the
    kernel gives), so another process may take it meanwhile: the server is only believed
    started when the Redis answering on the port says it is this process, and a first start
    that could not bind tries another port (a start again after ``stop`` cannot: ``url`` must
    stay, and it fails saying why).
    """

    def __init__(self, folder: Path, executable: str) -> None:
        self.folder = folder
        self.port = _free_port()
        self._executable = executable
        self._process: subprocess.Popen[bytes] | None = None
        self._started_once = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or start again, on the same port and data) and wait until it answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(1 if self._started_once else PORT_TRIES):
            if self._launch():
                self._started_once = True
                return
            self.port = _free_port()  # taken by someone else before redis-server bound it
        log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server could not listen on a port of its own: {log}")

    def _launch(self) -> bool:
        """Run redis-server on ``self.port``; False if it exited (the port was taken)."""
        process = self._process = subprocess.Popen(
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
        while _answering_pid(self.port) != process.pid:
            if process.poll() is not None:
                return False
            if time.monotonic() > deadline:
                process.kill()
                process.wait(timeout=10)
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)
        return True

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
