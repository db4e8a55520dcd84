"""Three ``serve`` replicas on one Redis write to one installation like one process.

The replicas run as operators run them, GitHub's secondary limits on, writes an
interval apart (``GITHUB_WRITE_INTERVAL``); deliveries for one installation are
spread over them round-robin, as a proxy would. The fake GitHub records when each
write arrived, and answers a secondary limit to a write that comes less than half an
interval after the previous one (three replicas pacing alone would send theirs
together).
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from github_app.github.pacing import LATE_AFTER
from tests.fake_github import fake_github
from tests.redis_server import RedisServer
from tests.serve_process import poll
from tests.test_spool_faults import (
    SETTLE_TIMEOUT,
    WELCOME,
    newcomer_issue,
    post,
    start,
    stopped_at_the_end,
)

INTERVAL = 0.3
EVENTS = 12


def test_three_replicas_keep_one_installation_at_one_write_an_interval(
    tmp_path: Path, private_key_pem: str, redis_server: RedisServer
) -> None:
    servers = []
    with (
        fake_github() as github,
        stopped_at_the_end(servers),
        httpx.Client(timeout=10) as client,
        ThreadPoolExecutor(3) as pool,
    ):
        github.min_write_gap = INTERVAL / 2
        for n in range(3):
            (tmp_path / f"replica-{n}").mkdir()
        servers += pool.map(
            lambda n: start(
                tmp_path / f"replica-{n}",
                github,
                private_key_pem,
                QUEUE_BACKEND="redis",
                REDIS_URL=redis_server.url,
                GITHUB_WRITE_INTERVAL=str(INTERVAL),
                GITHUB_SECONDARY_LIMITS="github",
            ),
            range(3),
        )
        numbers = list(range(1, EVENTS + 1))
        answers = [post(client, servers[n % 3].webhook_url, newcomer_issue(n)) for n in numbers]
        assert answers == [202] * EVENTS

        def finished() -> bool:
            """Every event welcomed and every replica's queue empty (nothing waiting, nothing in
            flight), or already a reason to fail: a secondary-limit answer, a dead letter."""
            if github.too_soon or any(server.dead_letters() for server in servers):
                return True
            welcomed = all(github.comment_count(n, WELCOME) for n in numbers)
            return welcomed and all(server.settled() for server in servers)

        # However loaded the machine, the replicas say when they are done.
        poll(finished, "the replicas to welcome every event", timeout=SETTLE_TIMEOUT)
        statuses = [server.status()["github"] for server in servers]
        dead = [server.dead_letters() for server in servers]
        arrived = list(github.arrivals)
    assert github.too_soon == 0  # no secondary-limit answer
    assert dead == [{}, {}, {}]
    assert all(github.comment_count(n, WELCOME) for n in numbers)  # every event welcomed
    assert len(arrived) >= EVENTS  # a welcome comment each (and any label the defaults add)
    # Booked an interval apart on Redis's clock, sent at the instant or up to LATE_AFTER
    # late, and the way to GitHub.
    assert arrived[-1] - arrived[0] >= (len(arrived) - 1) * INTERVAL - LATE_AFTER - 0.05
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrived)]
    assert min(gaps) >= INTERVAL / 2
    for status in statuses:
        assert status["shared_limits"]["kept_in"] == "redis"  # type: ignore[index]
        assert status["rate_limits"]["total"]["secondary_limit_hits"] == 0  # type: ignore[index]
