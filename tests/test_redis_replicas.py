"""Replicas sharing one Redis, as operators run them: ``serve`` subprocesses against a fake
GitHub. A delivery is admitted once whichever replica gets it; a replica killed with -9 loses
no admitted event; Redis down during a burst is answered 503 and recovered from by itself."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
import redis

from tests.fake_github import FakeGitHub, fake_github
from tests.redis_server import RedisServer, running_redis
from tests.serve_process import poll
from tests.test_spool_faults import (
    WELCOME,
    Server,
    newcomer_issue,
    post,
    start,
    stopped_at_the_end,
)

CLAIM_IDLE = "1"


@dataclass
class Cluster:
    """Three replicas on one Redis against one fake GitHub, started once for this module
    (a replica's start costs seconds of CPU): the tests below run in order and the one that
    kills a replica runs last; each uses its own issue numbers."""

    redis: RedisServer
    github: FakeGitHub
    servers: list[Server]
    client: httpx.Client

    def all_welcomed(self, numbers: list[int]) -> bool:
        return all(self.github.comment_count(n, WELCOME) for n in numbers)

    def doubled(self) -> list[int]:
        with self.github.lock:
            return [n for n, bodies in self.github.comments.items() if len(bodies) > 1]

    def ready(self, server: Server) -> httpx.Response:
        return self.client.get(f"http://127.0.0.1:{server.port}/readyz")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, private_key_pem: str) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("replicas")
    started: list[Server] = []
    with (
        running_redis(folder / "redis") as server,
        fake_github() as github,
        stopped_at_the_end(started),
        httpx.Client(timeout=10) as client,
        ThreadPoolExecutor(3) as pool,
    ):
        for n in range(3):
            (folder / f"replica-{n}").mkdir()
        started += pool.map(
            lambda n: start(
                folder / f"replica-{n}",
                github,
                private_key_pem,
                QUEUE_BACKEND="redis",
                REDIS_URL=server.url,
                REDIS_CLAIM_IDLE=CLAIM_IDLE,
                WORKERS_MAX="4",
            ),
            range(3),
        )
        yield Cluster(server, github, started, client)


def test_a_delivery_admitted_by_one_replica_is_a_duplicate_at_the_others(
    cluster: Cluster,
) -> None:
    one, two, three = cluster.servers
    delivery = newcomer_issue(1)
    assert post(cluster.client, one.webhook_url, delivery) == 202
    for other in (two, three):
        again = cluster.client.post(
            other.webhook_url, content=delivery.body, headers=delivery.headers
        )
        assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    poll(lambda: cluster.all_welcomed([1]), "the event to be processed")

    def replicas_seen() -> set[str]:
        shared = two.status()["queue"]["shared"]  # type: ignore[index]
        return {replica["replica_id"] for replica in shared["replicas"]}

    poll(lambda: len(replicas_seen()) == 3, "every replica in the status (2 s heartbeats)")
    assert cluster.doubled() == []


def test_redis_down_during_a_burst_is_answered_503_and_the_replicas_recover_by_themselves(
    cluster: Cluster,
) -> None:
    # every write reaches the disk before Redis answers it: a kill -9 of Redis loses nothing
    # acknowledged (with ``everysec`` the last second could go; README says which to choose)
    with redis.Redis.from_url(cluster.redis.url) as direct:
        direct.config_set("appendfsync", "always")
    servers = cluster.servers
    acknowledged: list[int] = []
    refused: list[int] = []
    number = 100

    def send(count: int) -> None:
        nonlocal number
        for _ in range(count):
            number += 1
            answer = post(cluster.client, servers[number % 3].webhook_url, newcomer_issue(number))
            (acknowledged if answer == 202 else refused).append(number)

    send(20)
    cluster.redis.stop()
    send(10)
    assert len(refused) >= 8  # a replica may need one request to notice
    for server in servers:
        ready = cluster.ready(server)
        assert ready.status_code == 503
        assert "Redis" in ready.json()["reason"]
    time.sleep(1.0)  # the outage lasts a while: the replicas keep trying meanwhile
    cluster.redis.start()
    poll(
        lambda: all(cluster.ready(s).status_code == 200 for s in servers),
        "the replicas to be ready again",
    )
    send(10)
    assert refused[-1] <= 130  # after the outage every delivery is admitted again
    poll(lambda: cluster.all_welcomed(acknowledged), "every admitted event", timeout=30)
    assert cluster.doubled() == []
    for server in servers:
        assert "Traceback" not in server.log.read_text()


def test_a_replica_killed_mid_burst_loses_no_admitted_event(cluster: Cluster) -> None:
    github, servers = cluster.github, cluster.servers
    github.release.clear()
    github.holding = True  # events stay in flight on their comment read until released
    numbers = list(range(200, 260))
    with ThreadPoolExecutor(12) as pool:
        answers = [
            pool.submit(post, cluster.client, servers[n % 3].webhook_url, newcomer_issue(n))
            for n in numbers
        ]
        poll(lambda: github.held >= 6, "events in flight on every replica")
        victim = servers[0]
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        acknowledged = [n for n, a in zip(numbers, answers, strict=True) if a.result() == 202]
    assert len(acknowledged) >= 40  # the victim's share after the kill was not admitted
    github.holding = False
    github.release.set()
    poll(lambda: cluster.all_welcomed(acknowledged), "every admitted event", timeout=30)
    assert cluster.doubled() == []
    claimed = sum(
        server.status()["queue"]["shared"]["claimed"]  # type: ignore[index]
        for server in servers[1:]
    )
    assert claimed >= 1  # the victim's in-flight events were taken over
