"""GitHub's limits shared by replicas in Redis: a real ``redis-server``, one connection per replica.

Each "replica" here is its own ``RedisLimits`` on its own Redis connection
(three gateways in one process). Bookings are judged by the instants Redis
booked (its own clock, the one the scripts read), the writes GitHub received by
the instants the fake GitHub recorded; no test judges a duration by the wall
clock of the test itself.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
import respx
from githubkit.exception import GitHubException
from redis.asyncio import Redis

from benchmarks.github_sim import GitHubSim, Limits
from github_app.errors import RetryableGitHubError
from github_app.github.gateway import GitHubGateway, as_github_error
from github_app.github.pace_store import Booking
from github_app.github.pacing import LATE_AFTER
from github_app.github.ratelimit import RateLimitLedger
from github_app.github.secondary_limits import SecondaryLimits
from github_app.github.shared_limits import RedisLimits, RedisPaceStore
from tests.conftest import API, make_settings
from tests.redis_server import RedisServer
from tests.test_transport import FakeTime, any_token

pytestmark = pytest.mark.anyio

EPSILON = 1e-6  # Redis keeps instants to the microsecond


@asynccontextmanager
async def replicas(
    server: RedisServer,
    count: int,
    clock: Callable[[], float] = time.monotonic,
    retry_every: float = 1.0,
) -> AsyncIterator[list[RedisLimits]]:
    """``count`` replicas' links to one Redis, each on its own connection."""
    clients = [Redis.from_url(server.url, socket_timeout=1) for _ in range(count)]
    try:
        yield [RedisLimits(client, clock=clock, retry_every=retry_every) for client in clients]
    finally:
        for client in clients:
            await client.aclose()


def store_of(shared: RedisLimits, principal: str, limits: SecondaryLimits) -> RedisPaceStore:
    return shared.store(principal, limits, RateLimitLedger(None, monotonic=shared.clock))


async def test_writes_booked_by_three_replicas_are_an_interval_apart_on_redis_clock(
    redis_server: RedisServer,
) -> None:
    limits = SecondaryLimits(write_interval=1.0)
    bookings: dict[str, list[Booking]] = {"7": [], "8": []}
    async with replicas(redis_server, 3) as shared:
        stores = [store_of(link, "7", limits) for link in shared]

        async def write(store: RedisPaceStore) -> None:
            for _ in range(4):
                bookings["7"].append(await store.book("POST"))

        async with anyio.create_task_group() as group:
            for store in stores:
                group.start_soon(write, store)
        bookings["8"].append(await store_of(shared[1], "8", limits).book("POST"))
    instants = sorted(booking.at for booking in bookings["7"])
    assert len(instants) == 12
    gaps = [later - earlier for earlier, later in itertools.pairwise(instants)]
    assert min(gaps) >= 1.0 - EPSILON  # one write a second, whichever replica asked
    assert instants[-1] - instants[0] == pytest.approx(11.0, abs=12 * EPSILON)
    assert bookings["8"][0].wait == 0.0  # installation 8 does not queue behind 7


async def redis_now(server: RedisServer) -> float:
    """Redis's clock, the one the scripts read."""
    client = Redis.from_url(server.url, socket_timeout=1)
    try:
        seconds, micros = await client.time()
    finally:
        await client.aclose()
    return seconds + micros / 1_000_000


async def test_a_write_answered_at_one_replica_pushes_the_next_booking_of_every_replica(
    redis_server: RedisServer,
) -> None:
    limits = SecondaryLimits(write_interval=1.0)
    async with replicas(redis_server, 2) as (first, second):
        a, b = store_of(first, "7", limits), store_of(second, "7", limits)
        sent = await a.book("POST")
        await anyio.sleep(0.05)  # the write on the wire: GitHub answers 50 ms later
        answered_after = await redis_now(redis_server)
        await a.answered()
        following = await b.book("POST")
        read = await b.book("GET")  # reads keep the points allowance only
    assert sent.wait == 0.0
    # GitHub may have counted the write as late as its answer: the next goes an interval
    # after that, not after the booked instant (which would be sent.at + 1.0).
    assert following.at >= answered_after + 1.0 - EPSILON
    assert following.at - sent.at >= 1.05 - EPSILON
    assert read.wait == 0.0


async def test_an_answer_while_redis_is_unreachable_spaces_the_fallbacks_next_write(
    redis_server: RedisServer,
) -> None:
    clock = FakeTime()
    limits = SecondaryLimits(write_interval=1.0)
    async with replicas(redis_server, 1, clock=clock.monotonic) as (link,):
        store = store_of(link, "7", limits)
        redis_server.stop()
        first = await store.book("POST")  # the fallback: as if it had just written
        clock.now += first.wait + 0.5  # sent, answered half a second later
        await store.answered()
        following = await store.book("POST")
    share = 1.0 * link.fallback_share()  # this replica's share of the pace
    assert following.at == pytest.approx(first.at + 0.5 + share)


async def test_content_and_points_allowances_count_every_replicas_requests(
    redis_server: RedisServer,
) -> None:
    content = SecondaryLimits(write_interval=0.0, content_per_minute=3)
    points = SecondaryLimits(write_interval=0.0, points_per_minute=16)  # a write is 5 points
    async with replicas(redis_server, 2) as (first, second):
        a, b = store_of(first, "7", content), store_of(second, "7", content)
        created = [await store.book("POST", content=True) for store in (a, b, a)]
        labelled = await a.book("POST")  # a write that creates nothing is not held
        fourth = await b.book("POST", content=True)  # a 4th creation within the minute
        c, d = store_of(first, "9", points), store_of(second, "9", points)
        writes = [await store.book("PATCH") for store in (c, d, c)]  # 15 points
        read = await d.book("GET")  # 16
        over = await c.book("GET")  # 17: until the first write's points age out
    assert [booking.wait for booking in created] == [0.0, 0.0, 0.0]
    assert fourth.at == pytest.approx(created[0].at + 60.0, abs=EPSILON)
    assert labelled.wait == 0.0
    assert b.stats().content_last_minute == 4  # the one booked ahead counts already
    assert [booking.wait for booking in writes] == [0.0, 0.0, 0.0] and read.wait == 0.0
    assert over.at == pytest.approx(writes[0].at + 60.0, abs=EPSILON)
    assert c.stats().points_last_minute == 17


async def test_a_lowered_pace_is_kept_by_every_replica(redis_server: RedisServer) -> None:
    limits = SecondaryLimits(write_interval=1.0)
    async with replicas(redis_server, 2) as (first, second):
        a, b = store_of(first, "7", limits), store_of(second, "7", limits)
        await a.lower()  # a secondary limit met by the first replica
        one, two = await b.book("POST"), await b.book("POST")
        await a.lower()  # met again within the hour: lower once more
        three = await b.book("POST")
    assert two.at - one.at == pytest.approx(2.0, abs=EPSILON)
    assert three.at - two.at == pytest.approx(4.0, abs=EPSILON)
    assert b.interval() == pytest.approx(4.0)
    stats = b.stats()
    assert stats.lowered_for is not None and stats.lowered_for > 3590


async def test_a_secondary_limit_met_by_one_replica_holds_the_installation_at_every_replica(
    redis_server: RedisServer, private_key_pem: str
) -> None:
    settings = make_settings(private_key_pem, GITHUB_WRITE_INTERVAL="0.01")
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        limited = router.post(f"{API}/repos/o/r/issues/1/labels").mock(
            return_value=httpx.Response(
                429, headers={"retry-after": "30"}, json={"message": "secondary rate limit"}
            )
        )
        read = router.get(f"{API}/repos/o/r/issues/1").mock(return_value=httpx.Response(200))
        async with replicas(redis_server, 3) as shared:
            first, second, third = (GitHubGateway(settings, shared=link) for link in shared)
            with pytest.raises(GitHubException):
                await first.installation(7).arequest("POST", "/repos/o/r/issues/1/labels")
            await second.refresh(7)  # what the runner does before an event of 7 runs
            hold = second.hold_until(7)
            with pytest.raises(GitHubException) as refused:  # nothing is sent meanwhile
                await third.installation(7).arequest("POST", "/repos/o/r/issues/1/labels")
            await second.installation(8).arequest("GET", "/repos/o/r/issues/1")  # 8 goes on
            for gateway in (first, second, third):
                await gateway.aclose()
    assert limited.call_count == 1 and read.call_count == 1
    assert hold is not None and hold[1] == "secondary rate limit pause"
    error = as_github_error(refused.value)
    assert isinstance(error, RetryableGitHubError)
    assert 28 < (error.retry_after or 0) <= 30


async def test_the_budget_one_replica_saw_holds_the_others_under_the_reserve(
    redis_server: RedisServer, private_key_pem: str
) -> None:
    wall = 1_700_000_000.0
    settings = make_settings(private_key_pem)
    low = {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "200",  # under the reserve of 5%: 250
        "x-ratelimit-reset": str(int(wall) + 600),
        "x-ratelimit-resource": "core",
    }
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        router.get(f"{API}/repos/o/r/issues/1").mock(return_value=httpx.Response(200, headers=low))
        async with replicas(redis_server, 2) as shared:
            first, second = (
                GitHubGateway(settings, shared=link, clock=lambda: wall) for link in shared
            )
            await first.installation(7).arequest("GET", "/repos/o/r/issues/1")
            before = second.hold_until(7)
            await second.refresh(7)
            hold = second.hold_until(7)
            seen = second.stats().installations[7]
            for gateway in (first, second):
                await gateway.aclose()
    assert before is None  # the second replica had not heard of it yet
    assert hold is not None and hold[1] == "rate-limit budget under its reserve (200 left)"
    assert (seen.limit, seen.remaining, seen.reset_at) == (5000, 200, wall + 600)


async def test_the_budget_a_replica_saw_reaches_the_others_with_its_next_booking(
    redis_server: RedisServer, private_key_pem: str
) -> None:
    wall = 1_700_000_000.0
    settings = make_settings(private_key_pem)

    def budget(remaining: int) -> httpx.Response:
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(int(wall) + 600),
        }
        return httpx.Response(200, headers=headers)

    seen: list[int | None] = []
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        router.get(f"{API}/repos/o/r/issues/1").mock(side_effect=[budget(4000), budget(3999)])
        async with replicas(redis_server, 2) as shared:
            first, second = (
                GitHubGateway(settings, shared=link, clock=lambda: wall) for link in shared
            )
            for _ in range(2):
                await first.installation(7).arequest("GET", "/repos/o/r/issues/1")
                await second.refresh(7)
                seen.append(second.stats().installations[7].remaining)
            for gateway in (first, second):
                await gateway.aclose()
    # Far above the reserve, a report waits for the replica's next request: one round trip
    # to Redis a request, not two.
    assert seen == [None, 4000]


async def test_redis_unreachable_falls_back_to_this_replicas_share_and_comes_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeTime()
    limits = SecondaryLimits(write_interval=1.0)
    async with replicas(redis_server, 1, clock=clock.monotonic, retry_every=5.0) as (link,):
        store = store_of(link, "7", limits)
        assert (await store.book("POST")).wait == 0.0
        redis_server.stop()
        with caplog.at_level(logging.INFO, logger="github_app.github.shared_limits"):
            alone = [await store.book("POST") for _ in range(2)]
            down = link.stats()
            clock.now += 5.0  # time to try Redis again
            redis_server.start()
            back = await store.book("POST")
        up = link.stats()
    # Alone, a third of the pace (three replicas assumed), as if it had just written.
    assert [booking.wait for booking in alone] == [3.0, 6.0]
    assert (down.kept_in, down.outages, up.kept_in) == ("this replica", 1, "redis")
    # Back on Redis, the first write keeps the interval after the last one sent alone.
    assert back.wait == pytest.approx(1000.0 + 6.0 + 1.0 - clock.now, abs=EPSILON)
    messages = [record.getMessage() for record in caplog.records]
    assert any("Redis is unreachable (ConnectionError)" in m and "1/3" in m for m in messages)
    assert any("Redis answers again" in m for m in messages)
    assert all(redis_server.url not in m for m in messages)


async def test_while_redis_is_down_a_replica_still_paces_its_writes_alone(
    redis_server: RedisServer, private_key_pem: str
) -> None:
    clock = FakeTime(advance=True)  # GitHub answers in no time; only the pacing waits
    sent: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now)
        return httpx.Response(200, json=[])

    settings = make_settings(private_key_pem, GITHUB_WRITE_INTERVAL="1")
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        router.post(f"{API}/repos/o/r/issues/1/labels").mock(side_effect=record)
        async with replicas(redis_server, 1, clock=clock.monotonic) as (link,):
            redis_server.stop()
            gateway = GitHubGateway(
                settings, monotonic=clock.monotonic, sleep=clock.sleep, shared=link
            )
            for _ in range(3):
                await gateway.installation(7).arequest("POST", "/repos/o/r/issues/1/labels")
            kept = gateway.shared_stats()
            await gateway.aclose()
    assert len(sent) == 3
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(sent))
    assert kept is not None and kept.kept_in == "this replica"


async def burst(gateways: list[GitHubGateway], writes: int, installation: int = 1) -> int:
    """Every gateway writes ``writes`` labels to one installation at once; the failures."""
    failed = 0

    async def write(gateway: GitHubGateway, number: int) -> None:
        nonlocal failed
        try:
            await gateway.installation(installation).arequest(
                "POST", f"/repos/o/r/issues/{number}/labels", json={"labels": ["bug"]}
            )
        except GitHubException:
            failed += 1

    async with anyio.create_task_group() as group:
        for index, gateway in enumerate(gateways):
            for number in range(writes):
                group.start_soon(write, gateway, index * writes + number)
    for gateway in gateways:
        await gateway.aclose()
    return failed


def simulated_github(interval: float) -> GitHubSim:
    """A GitHub that answers a secondary limit to a 4th write within 2.5 intervals: one
    write an interval passes even when a write comes a little late, three at once do not."""
    return GitHubSim(Limits(installation_writes=3, write_window=2.5 * interval))


async def test_three_replicas_keep_one_installation_at_one_write_an_interval(
    redis_server: RedisServer, private_key_pem: str
) -> None:
    interval = 0.25
    sim = simulated_github(interval)
    settings = make_settings(private_key_pem, GITHUB_WRITE_INTERVAL=str(interval))
    async with replicas(redis_server, 3) as shared:
        gateways = [
            GitHubGateway(settings, transport=httpx.ASGITransport(app=sim), shared=link)
            for link in shared
        ]
        failed = await burst(gateways, writes=4)
    arrived = sorted(label[0] for label in sim.labels)  # when each write reached GitHub
    assert failed == 0 and sim.counts["violations"] == 0  # no secondary-limit answer
    assert len(arrived) == 12
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrived)]
    # Booked an interval apart on Redis's clock; sent at its instant or up to LATE_AFTER
    # late (a later instant is given up), plus the way to GitHub.
    assert min(gaps) >= interval - LATE_AFTER - 0.05
    assert arrived[-1] - arrived[0] >= 11 * interval - LATE_AFTER - 0.05


async def test_three_replicas_pacing_alone_meet_the_secondary_limit(private_key_pem: str) -> None:
    """The same burst without Redis: each replica keeps the pace, together they break it."""
    interval = 0.25
    sim = simulated_github(interval)
    settings = make_settings(private_key_pem, GITHUB_WRITE_INTERVAL=str(interval))
    gateways = [GitHubGateway(settings, transport=httpx.ASGITransport(app=sim)) for _ in range(3)]
    failed = await burst(gateways, writes=4)
    assert sim.counts["write_limit_hits"] > 0 and failed > 0
