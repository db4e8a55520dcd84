"""``python -m github_app serve`` in a real process, on a port the kernel gives it.

A port picked beforehand (bind to port 0, close, pass the number on) is free only
until someone binds it: under load another server started meanwhile took it first,
answered this one's health check and then its deliveries. So ``serve`` is started
with ``--port 0`` and the port is read back from its log (uvicorn's "running on"
line), and only then is it asked whether it is healthy.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx

SETTINGS = (
    "APP_ID",
    "PRIVATE_KEY",
    "PRIVATE_KEY_PATH",
    "WEBHOOK_SECRET",
    "DRY_RUN",
    "PORT",
    "HOST",
    "ADMIN_TOKEN",
    "GITHUB_API_URL",
    "WEBHOOK_PATH",
)
LISTENING = re.compile(r"Uvicorn running on http://[^\s:]+:(\d+) ")
START_TIMEOUT = 60.0  # a guard against a hang only: a loaded machine starts slowly


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any of the app's settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env.update(extra)
    return env


def poll(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def serve_command(port: int = 0, *, host: str | None = "127.0.0.1") -> list[str]:
    """``python -m github_app serve``, as a user would start it (``host`` None: no ``--host``)."""
    where = [] if host is None else ["--host", host]
    return [sys.executable, "-m", "github_app", "serve", *where, "--port", str(port)]


def refused_start(cwd: Path, state_dir: Path) -> str:
    """The one line ``serve`` writes when it refuses to start on ``state_dir`` (exit status 2).

    For a start that stops before it listens (a damaged spool, a held or read-only STATE_DIR).
    """
    result = subprocess.run(
        serve_command(),
        cwd=cwd,
        env=clean_env(STATE_DIR=str(state_dir)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.strip()]
    return line


def listening_port(log: Path, begin: int = 0) -> int | None:
    """The port uvicorn says it listens on, in what the log got from ``begin`` on."""
    with log.open("rb") as text:
        text.seek(begin)
        found = LISTENING.search(text.read().decode("utf-8", "replace"))
    return None if found is None else int(found[1])


def start_serve(
    cwd: Path,
    env: dict[str, str],
    log: Path,
    *,
    stdout: IO[bytes] | int = subprocess.DEVNULL,
    host: str | None = "127.0.0.1",
) -> tuple[subprocess.Popen[bytes], int]:
    """``serve --port 0`` in ``cwd``, its log (stderr) appended to ``log``; returns the process
    and its port once it listens and answers. A server that fails to start is killed (no one
    else knows it) and its log's tail is in the error."""
    begin = log.stat().st_size if log.exists() else 0
    with log.open("ab") as sink:
        process = subprocess.Popen(
            serve_command(0, host=host), cwd=cwd, env=env, stdout=stdout, stderr=sink
        )
    try:
        poll(
            lambda: listening_port(log, begin) is not None or process.poll() is not None,
            "the server to start",
            START_TIMEOUT,
        )
        port = listening_port(log, begin)
        assert process.poll() is None and port is not None, log.read_text()[-3000:]
        poll(lambda: healthy(port), "the server to answer")
    except AssertionError:
        process.kill()
        process.wait(10)
        raise
    return process, port
