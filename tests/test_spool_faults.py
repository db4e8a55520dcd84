"""A 202 is a promise: faults against the real server (``serve`` as a subprocess, kill -9),
and the spool's faults while running (a full disk) and at start-up (damaged file, second owner).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import respx

from github_app.queue.spool import FILE_NAME
from processors.issue_api import marker
from tests.conftest import make_settings, running_app
from tests.deliveries import SECRET, Delivery, issue_event, signed
from tests.fake_github import FakeGitHub, fake_github
from tests.serve_process import clean_env, healthy, poll, refused_start, start_serve
from tests.test_spool import file_size_limit

WELCOME = marker("welcome")
ADMIN = "admin-token-for-fault-tests"
# Only a guard against a hang: the kill -9 test waits for the server to say it is done.
SETTLE_TIMEOUT = 300.0


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/github/webhooks"

    def status(self) -> dict[str, object]:
        answer = httpx.get(
            f"http://127.0.0.1:{self.port}/admin/status",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=5,
        )
        document: dict[str, object] = answer.json()
        return document

    def settled(self) -> bool:
        """Nothing waiting and nothing in flight: every event it holds was processed or given up."""
        queue = self.status()["queue"]
        assert isinstance(queue, dict)
        return bool(queue["depth"] == 0 and queue["in_flight"] == 0)

    def dead_letters(self) -> dict[str, dict[str, object]]:
        """Delivery id -> its dead letter (reason, attempts, last error)."""
        answer = httpx.get(
            f"http://127.0.0.1:{self.port}/admin/dead-letters",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=5,
        )
        return {entry["delivery_id"]: entry for entry in answer.json()["dead_letters"]}


def start(folder: Path, github: FakeGitHub, private_key: str, **env: str) -> Server:
    """``python -m github_app serve`` as an operator starts it, its log appended to a file, on
    a port the kernel gives it (``serve_process.start_serve``)."""
    log = folder / "serve.log"
    process, port = start_serve(
        folder,
        clean_env(
            **{
                "APP_ID": "12345",
                "PRIVATE_KEY": private_key,
                "WEBHOOK_SECRET": SECRET,
                "GITHUB_API_URL": github.url,
                "GITHUB_WRITE_INTERVAL": "0",
                # 120 welcome comments a minute: not GitHub's pace
                "GITHUB_SECONDARY_LIMITS": "off",
                "DRY_RUN": "false",
                "ADMIN_TOKEN": ADMIN,
                "STATE_DIR": str(folder / "state"),
            }
            | env
        ),
        log,
    )
    return Server(process, port, log)


@contextmanager
def stopped_at_the_end(servers: list[Server]) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait(10)


def newcomer_issue(number: int) -> Delivery:
    """``issues.opened`` by a first-time contributor: the welcome processor comments, with its
    hidden marker, after checking the issue's comments for that marker."""
    payload = issue_event(number=number)
    payload["issue"]["author_association"] = "FIRST_TIME_CONTRIBUTOR"
    return signed(payload, "issues")


def post(client: httpx.Client, url: str, delivery: Delivery) -> int:
    try:
        return client.post(url, content=delivery.body, headers=delivery.headers).status_code
    except httpx.HTTPError:
        return 0  # the server died mid-request: not acknowledged


@dataclass
class Chain:
    """Servers started one after another on one STATE_DIR, each killed during a burst."""

    folder: Path
    seed: int
    github: FakeGitHub = field(init=False)
    acknowledged: list[int] = field(default_factory=list)
    servers: list[Server] = field(default_factory=list)
    delivery_ids: dict[int, str] = field(default_factory=dict)

    def explain(self, numbers: list[int]) -> str:
        """For a failure: what the log and the spool say about these issues' deliveries."""
        ids = {self.delivery_ids[n]: n for n in numbers}
        log = self.servers[-1].log.read_text()
        lines = [line for line in log.splitlines() if any(i in line for i in ids)]
        spool = sqlite3.connect(f"file:{self.folder / 'state' / FILE_NAME}?mode=ro", uri=True)
        try:
            events = spool.execute(
                "SELECT id, delivery_id, attempts, not_before, last_error, dead_reason FROM events"
            ).fetchall()
            succeeded = spool.execute("SELECT * FROM succeeded").fetchall()
            remembered = spool.execute("SELECT * FROM deliveries").fetchall()
        finally:
            spool.close()
        tables = {
            "events": [row for row in events if row[1] in ids],
            "events in all": len(events),
            "succeeded": [row for row in succeeded if row[0] in ids],
            "deliveries": [row for row in remembered if row[0] in ids],
        }
        with self.github.lock:
            comments = {n: self.github.comments.get(n) for n in numbers}
        dead = self.servers[-1].dead_letters()
        return "\n".join(
            [
                f"chain {self.folder.name}: issues {numbers} ({ids})",
                f"comments: {comments}",
                f"dead letters: {[dead[i] for i in ids if i in dead]}",
                *(f"{table}: {rows}" for table, rows in tables.items()),
                "log lines:",
                *lines,
                "log tail:",
                log[-6000:],
            ]
        )

    def run(self, private_key: str, trials: int, first_issue: int, burst: int = 12) -> None:
        rng = random.Random(self.seed)  # fixed seed: the same kill moments each run
        number = first_issue
        with httpx.Client(timeout=10) as client, ThreadPoolExecutor(burst) as pool:
            for _trial in range(trials):
                server = start(self.folder, self.github, private_key)
                self.servers.append(server)
                numbers = list(range(number, number + burst))
                number += burst
                deliveries = [newcomer_issue(n) for n in numbers]
                for n, delivery in zip(numbers, deliveries, strict=True):
                    self.delivery_ids[n] = delivery.headers["X-GitHub-Delivery"]
                answers = [
                    pool.submit(post, client, server.webhook_url, delivery)
                    for delivery in deliveries
                ]
                time.sleep(rng.uniform(0.0, 0.25))  # a random moment of the burst or after it
                server.process.send_signal(signal.SIGKILL)
                server.process.wait(10)
                self.acknowledged += [
                    n for n, a in zip(numbers, answers, strict=True) if a.result() == 202
                ]
        self.servers.append(start(self.folder, self.github, private_key))


def test_kill_9_during_bursts_loses_no_acknowledged_delivery_and_repeats_no_marked_write(
    tmp_path: Path, private_key_pem: str
) -> None:
    """20 trials in two chains of 10 run side by side (each its own STATE_DIR and GitHub)."""
    chains = [Chain(tmp_path / "a", 11), Chain(tmp_path / "b", 12)]
    with (
        fake_github() as chains[0].github,
        fake_github() as chains[1].github,
        stopped_at_the_end(chains[0].servers),
        stopped_at_the_end(chains[1].servers),
    ):
        for chain in chains:
            chain.folder.mkdir()
        with ThreadPoolExecutor(2) as runner:
            for done in [
                runner.submit(chain.run, private_key_pem, 10, 1000 * n + 1)
                for n, chain in enumerate(chains)
            ]:
                done.result()
        for chain in chains:
            assert len(chain.acknowledged) >= 10  # the kills did not all land before the first 202
            last = chain.servers[-1]
            # However loaded the machine, the last server says when it is done; then the
            # outcome of every acknowledged delivery is final.
            poll(last.settled, "the last server to work off its spool", timeout=SETTLE_TIMEOUT)
            dead = last.dead_letters()
            lost = [
                n
                for n in chain.acknowledged
                if not chain.github.comment_count(n, WELCOME) and chain.delivery_ids[n] not in dead
            ]
            assert lost == [], chain.explain(lost)
            with chain.github.lock:
                doubled = [n for n, bodies in chain.github.comments.items() if len(bodies) > 1]
            assert doubled == []
            by_id = {delivery: n for n, delivery in chain.delivery_ids.items()}
            assert dead == {}, chain.explain([by_id[delivery] for delivery in dead])
            assert "recovered" in last.log.read_text()


def test_a_second_signal_stops_at_once_and_the_spool_keeps_the_rest(
    tmp_path: Path, private_key_pem: str
) -> None:
    servers: list[Server] = []
    with fake_github() as github, stopped_at_the_end(servers), httpx.Client(timeout=10) as client:
        github.holding = True  # every event stays in flight, on its comment read
        server = start(tmp_path, github, private_key_pem, SHUTDOWN_TIMEOUT="120", WORKERS_MAX="2")
        servers.append(server)
        for n in range(1, 6):
            assert post(client, server.webhook_url, newcomer_issue(n)) == 202
        poll(lambda: github.held >= 2, "two events to be in flight")
        server.process.send_signal(signal.SIGTERM)
        poll(lambda: "shutting down" in server.log.read_text(), "the shutdown to start")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(15) == 1  # far sooner than SHUTDOWN_TIMEOUT
        log = server.log.read_text()
        assert "second SIGTERM: stopping now" in log
        assert "5 queued event(s) stay in the spool" in log
        assert "Traceback" not in log

        github.holding = False
        github.release.set()
        again = start(tmp_path, github, private_key_pem)
        servers.append(again)
        poll(
            lambda: all(github.comment_count(n, WELCOME) == 1 for n in range(1, 6)),
            "the five events to be processed after the restart",
        )


def test_a_damaged_spool_stops_serve_with_one_line_and_is_not_overwritten(
    tmp_path: Path, private_key_pem: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    damaged = b"SQLite format 3\x00" + os.urandom(8000)
    (state / FILE_NAME).write_bytes(damaged)
    line = refused_start(tmp_path, state)  # stops before it listens
    assert line.startswith("error: spool ") and str(state / FILE_NAME) in line
    assert "move it aside" in line
    assert (state / FILE_NAME).read_bytes() == damaged


def test_a_second_serve_on_one_state_dir_refuses_naming_the_holder(
    tmp_path: Path, private_key_pem: str
) -> None:
    servers: list[Server] = []
    with fake_github() as github, stopped_at_the_end(servers):
        first = start(tmp_path, github, private_key_pem)
        servers.append(first)
        line = refused_start(tmp_path, tmp_path / "state")  # stops before it listens
        assert f"in use by process {first.process.pid}" in line
        assert first.process.poll() is None and healthy(first.port)


@pytest.mark.anyio
async def test_a_full_disk_answers_503_with_retry_after_and_readyz_says_why(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    async with running_app(make_settings(private_key_pem), paused=True) as app:
        big = signed(issue_event(number=7, body=os.urandom(600_000).hex()), "issues")
        with file_size_limit(256 * 1024):
            refused = await app.post(big)
            ready = await app.client.get(app.url + "/readyz")
            alive = await app.client.get(app.url + "/healthz")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "30"
        assert refused.json()["error"] == "spool_unavailable"
        assert ready.status_code == 503
        assert "spool cannot store events" in ready.json()["reason"]
        assert alive.status_code == 200
        assert len(app.runtime.queue) == 0
        # room again: the same delivery is accepted (GitHub's redelivery keeps its id)
        accepted = await app.post(big)
        assert accepted.status_code == 202
        ready = await app.client.get(app.url + "/readyz")
        assert ready.status_code == 200
        metrics = (await app.client.get(app.url + "/metrics")).text
        assert "auto_issue_processor_spool_bytes" in metrics
