"""What hostile input costs the app (issue 13): a worst-case config push, slow clients, big bodies.

Command (from the repository root; not part of CI)::

    .venv/bin/python -m benchmarks.hostile [--only config,slowloris,bodies]

config     The configs a pusher can build within the caps (256 KiB, no YAML aliases,
           200 labeler rules of 100 keywords, 1,000-character RE2 patterns) are timed
           through the app's parser; the costliest is then served by a fake GitHub
           (an httpx MockTransport) to the real server in this process, for three
           repositories at once. Side by side, idle and while those configs are read:
           the event loop's lag (a task sleeping 1 ms, how late it wakes), /healthz
           latency (a client in another thread, every 20 ms) and the process's RSS
           (sampled every 5 ms in another thread).
slowloris  ``python -m github_app serve`` with its defaults: one connection trickles its
           headers one byte a second, another its body after complete headers; the
           seconds until the server closes each.
bodies     20 connections at once each announce 24 MB of unsigned JSON and send all
           but its last byte, against the server with the default
           WEBHOOK_MAX_READING_BYTES (64 MiB) and, side by side, with the cap lifted
           (2 GiB); the server's peak RSS growth in each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil

from benchmarks.client import free_port, private_key_file, wait_http
from github_app.dispatch.repo_config import CONFIG_TIME_BUDGET, Budget, ConfigParser
from processors import BUILTINS
from processors.labeler import MAX_KEYWORDS, MAX_RULES

REPO = Path(__file__).resolve().parent.parent
CAP = 256 * 1024
BODY = 24 * 1024 * 1024


# --- config -----------------------------------------------------------------------------------


def _rules(make: Callable[[int], str]) -> str:
    return "labeler:\n  rules:\n" + "".join(make(i) + "\n" for i in range(MAX_RULES))


def candidates() -> dict[str, str]:
    """Configs within the caps, each aimed at one cost (validation, compile, errors)."""
    words = lambda i: ",".join(f"w{i}x{j}" for j in range(MAX_KEYWORDS))  # noqa: E731
    heavy = "(?i)(?:\\pL|\\pN){1,80}" * 40  # fails RE2's memory bound, slowly
    classes = "(?i)" + "\\w{1,30}" * 100
    return {
        f"{MAX_RULES} rules x {MAX_KEYWORDS} keywords": _rules(
            lambda i: f"    - {{label: l{i}, keywords: [{words(i)}]}}"
        ),
        f"{MAX_RULES} rules x a counted-repetition pattern": _rules(
            lambda i: f"    - {{label: l{i}, pattern: '(?:[a-z]{{1,50}}\\s){{1,20}}{i}'}}"
        ),
        f"{MAX_RULES} rules x a 900-char class-repetition pattern": _rules(
            lambda i: f"    - {{label: l{i}, pattern: '{classes}{i}'}}"
        ),
        f"{MAX_RULES} rules x a pattern past RE2's memory bound": _rules(
            lambda i: f"    - {{label: l{i}, pattern: '{heavy}{i}'}}"
        ),
        "7,000 one-keyword rules (past the rule cap)": "labeler:\n  rules:\n"
        + "".join(f"    - {{label: l{i}, keywords: [a]}}\n" for i in range(7000)),
        "one keyword list of 50,000 values": "labeler:\n  rules:\n    - label: a\n"
        "      keywords: [" + ",".join("k" for _ in range(49_990)) + "]\n",
    }


def time_candidates() -> tuple[str, str, list[dict[str, Any]]]:
    """Each candidate through the parser, unbudgeted and budgeted; the costliest's name and text."""
    rows = []
    for name, text in candidates().items():
        assert len(text.encode()) <= CAP, (name, len(text))
        started = time.perf_counter()
        raw = ConfigParser(BUILTINS).parse(text, "x", Budget(600.0))
        unbudgeted = time.perf_counter() - started
        started = time.perf_counter()
        ConfigParser(BUILTINS).parse(text, "x", Budget(CONFIG_TIME_BUDGET))
        budgeted = time.perf_counter() - started
        rows.append(
            {
                "config": name,
                "bytes": len(text),
                "unbudgeted_s": round(unbudgeted, 3),
                "budgeted_s": round(budgeted, 3),
                "result": raw.errors[0][:70] if raw.errors else "valid",
            }
        )
    worst = max(rows, key=lambda row: row["unbudgeted_s"])
    return worst["config"], candidates()[worst["config"]], rows


class Probe:
    """Loop lag (in the loop), /healthz latency and RSS (in threads), tagged by phase."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.phase = "idle"
        self.stop = False
        self.lags: dict[str, list[float]] = {}
        self.health: dict[str, list[float]] = {}
        self.rss: dict[str, list[int]] = {}

    async def lag(self) -> None:
        while not self.stop:
            started = time.perf_counter()
            await anyio.sleep(0.001)
            late = time.perf_counter() - started - 0.001
            self.lags.setdefault(self.phase, []).append(late)

    def healthz(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop:
                phase = self.phase
                started = time.perf_counter()
                client.get(self.url + "/healthz")
                self.health.setdefault(phase, []).append(time.perf_counter() - started)
                time.sleep(0.02)

    def memory(self) -> None:
        me = psutil.Process()
        while not self.stop:
            self.rss.setdefault(self.phase, []).append(me.memory_info().rss)
            time.sleep(0.005)


def fake_github(config: bytes) -> httpx.MockTransport:
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/app":
            return httpx.Response(200, json={"id": 1, "slug": "hostile-bench"})
        if path.endswith("/access_tokens"):
            return httpx.Response(201, json={"token": "ghs_bench", "expires_at": expires})
        if "/contents/" in path:
            return httpx.Response(200, content=config)
        if path.endswith("/labels"):
            return httpx.Response(200, json=[])
        return httpx.Response(404, json={"message": "Not Found"})

    return httpx.MockTransport(answer)


async def config_scenario(text: str, key: str, repositories: int = 3) -> dict[str, Any]:
    from tests.conftest import make_settings, running_app, wait_for
    from tests.deliveries import issue_event, signed

    settings = make_settings(key, DRY_RUN="false")
    async with running_app(settings, transport=fake_github(text.encode())) as app:
        probe = Probe(app.url)
        threads = [threading.Thread(target=t, daemon=True) for t in (probe.healthz, probe.memory)]
        async with anyio.create_task_group() as group:
            group.start_soon(probe.lag)
            for thread in threads:
                thread.start()
            await anyio.sleep(2.0)
            probe.phase = "config"
            for n in range(repositories):
                payload = issue_event(repository=f"octo/hostile-{n}", labels=[])
                assert (await app.post(signed(payload, "issues"))).status_code == 202
            stats = app.runtime.runner.stats
            await wait_for(
                lambda: stats.events_ok + stats.events_failed >= repositories,
                timeout=300,
                what="the events",
            )
            probe.phase = "after"
            await anyio.sleep(0.2)
            probe.stop = True
        for thread in threads:
            thread.join()
        errors = {repo: list(e)[:1] for repo, e in app.runtime.configs.errors.items()}
    base = statistics.median(probe.rss["idle"])
    return {
        "repositories": repositories,
        "config_errors": errors,
        "loop_lag_ms": {p: _summary(v) for p, v in probe.lags.items() if p != "after"},
        "healthz_ms": {p: _summary(v) for p, v in probe.health.items() if p != "after"},
        "healthz_answers": {p: len(v) for p, v in probe.health.items() if p != "after"},
        "rss_idle_MiB": round(base / 2**20, 1),
        "rss_peak_growth_MiB": round((max(probe.rss["config"]) - base) / 2**20, 1),
    }


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered) * 1000, 2),
        "p99": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 2),
        "max": round(ordered[-1] * 1000, 2),
    }


# --- slow and greedy clients against `serve` -------------------------------------------------


def serve(port: int, **env: str) -> Any:
    environ = {k: v for k, v in os.environ.items() if k not in ("APP_ID", "PRIVATE_KEY")}
    environ |= {"PORT": str(port), "LOG_LEVEL": "WARNING", **env}
    args = [sys.executable, "-m", "github_app", "serve", "--host", "127.0.0.1"]
    args += ["--env-file", os.devnull]
    return psutil.Popen(
        args, env=environ, cwd=str(REPO), stdout=open(os.devnull, "wb"), stderr=None
    )


def stop(process: Any) -> None:
    process.terminate()
    process.wait(timeout=30)


REQUEST = b"POST /api/github/webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def head(length: int) -> bytes:
    return REQUEST + (
        b"Content-Type: application/json\r\nX-GitHub-Event: issues\r\n"
        b"X-GitHub-Delivery: bench\r\nX-Hub-Signature-256: sha256=00\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


async def trickle(port: int, first: bytes, piece: bytes) -> float:
    """Seconds from connecting until the server closes, sending ``piece`` once a second."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(first)
    try:
        while time.monotonic() - started < 120:
            writer.write(piece)
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                    break
            except TimeoutError:
                continue
    except ConnectionError:
        pass
    writer.close()
    return round(time.monotonic() - started, 2)


async def slowloris() -> dict[str, float]:
    port = free_port()
    process = serve(port)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        headers, body = await asyncio.gather(
            trickle(port, REQUEST, b"X"), trickle(port, head(1000), b" ")
        )
    finally:
        stop(process)
    return {"headers_trickled_closed_after_s": headers, "body_trickled_closed_after_s": body}


async def hold_bodies(port: int, count: int, process: Any) -> dict[str, Any]:
    """``count`` connections each sending all but the last byte of a 24 MB body, at once."""
    payload = b'{"x": "' + b"a" * (BODY - 10) + b'"}'
    assert len(payload) == BODY - 1
    base = process.memory_info().rss
    peak = base
    answers: list[bytes] = []

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head(BODY))
        view = memoryview(payload)
        try:
            for start in range(0, len(view), 1 << 20):
                writer.write(view[start : start + (1 << 20)])
                await writer.drain()
            answers.append(await asyncio.wait_for(reader.read(200), 15))
        except (ConnectionError, TimeoutError):
            answers.append(b"closed")
        writer.close()

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(one() for _ in range(count)))
    sampler.cancel()
    statuses: dict[str, int] = {}
    for answer in answers:
        status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "rss_before_MiB": round(base / 2**20, 1),
        "rss_peak_growth_MiB": round((peak - base) / 2**20, 1),
        "answers": statuses,
    }


async def bodies(count: int = 20) -> dict[str, Any]:
    found = {}
    for name, env in (
        ("default cap (64 MiB)", {}),
        ("cap lifted (2 GiB)", {"WEBHOOK_MAX_READING_BYTES": str(2 << 30)}),
    ):
        port = free_port()
        process = serve(port, **env)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            found[name] = await hold_bodies(port, count, process)
        finally:
            stop(process)
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__)
    parser.add_argument("--only", default="config,slowloris,bodies")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    result: dict[str, Any] = {}
    if "config" in parts:
        name, text, rows = time_candidates()
        result["config_candidates"] = rows
        result["config_worst"] = name
        with tempfile.TemporaryDirectory() as directory:
            key = Path(private_key_file(directory)).read_text()
        result["config_server"] = anyio.run(config_scenario, text, key)
    if "slowloris" in parts:
        result["slowloris"] = asyncio.run(slowloris())
    if "bodies" in parts:
        result["bodies_20_x_24MB"] = asyncio.run(bodies())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
