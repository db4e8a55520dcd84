"""Rounds of recovery through the real gateway, GitHub's delivery log faked at the HTTP layer:
what is requested, in which order, and how each fault stops a round without losing anything."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio
import httpx
import pytest
import respx
from redis.asyncio import Redis

from github_app.config import Settings
from github_app.github.gateway import GitHubGateway
from github_app.logs import install_context
from github_app.recovery.loop import DAY, ELSEWHERE, Recovery
from github_app.recovery.plan import Skip
from github_app.recovery.redis_store import RedisRecoveryStore
from github_app.recovery.store import MemoryRecoveryStore, RequestRecord
from tests.conftest import make_settings, wait_for
from tests.fake_hook_log import FakeHookLog
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

START = 1_800_000_000.0
INTERVAL = 300.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hook_log(github: respx.MockRouter, clock: Clock) -> FakeHookLog:
    return FakeHookLog(github, clock=clock)


@pytest.fixture
def settings(private_key_pem: str) -> Settings:
    return make_settings(private_key_pem, GITHUB_WRITE_INTERVAL="0")


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[GitHubGateway]:
    gateway = GitHubGateway(settings)
    try:
        yield gateway
    finally:
        await gateway.aclose()


def recovery_of(
    gateway: GitHubGateway,
    clock: Clock,
    knows: Callable[[str], bool] = lambda guid: False,
    **options: Any,
) -> tuple[Recovery, MemoryRecoveryStore]:
    store = MemoryRecoveryStore(knows)
    recovery = Recovery(
        gateway,
        store,
        interval=INTERVAL,
        lookback=3 * DAY,
        retention=3 * DAY,
        max_attempts=3,
        clock=clock,
        **options,
    )
    return recovery, store


async def test_requests_failed_unadmitted_events_oldest_first_across_pages_then_only_new_ones(
    gateway: GitHubGateway, hook_log: FakeHookLog, clock: Clock
) -> None:
    for i in range(120):
        hook_log.log(f"ok-{i}", status_code=202, at=START - 3000 + i)
    hook_log.log("down-1", status_code=0, at=START - 2990)
    hook_log.log("busy-1", status_code=503, at=START - 2950)
    hook_log.log("admitted", status_code=503, at=START - 2900)
    hook_log.log("busy-1", status_code=503, at=START - 2800, redelivery=True)
    hook_log.log("ok-5", status_code=503, at=START - 2700)  # an earlier attempt succeeded
    # what the queue admitted: the deliveries GitHub saw succeed, and one it did not
    recovery, store = recovery_of(
        gateway, clock, knows=lambda guid: guid == "admitted" or guid.startswith("ok-")
    )

    report = await recovery.round()

    assert hook_log.requested_guids() == ["down-1", "busy-1"]
    assert report.pages == 2 and report.seen == 125
    assert (report.failed, report.requested, report.outcome) == (3, 2, "complete")
    assert report.skipped == {Skip.DELIVERED: 120, Skip.ADMITTED: 1}
    first_checkpoint = store.checkpoint()
    assert first_checkpoint is not None and first_checkpoint > START - 2990

    clock.now += INTERVAL
    hook_log.log("later", status_code=0)
    report = await recovery.round()
    assert report.pages == 1
    assert report.seen == 2  # the new attempt, and the last one again (the overlap)
    assert hook_log.requested_guids() == ["down-1", "busy-1", "later"]
    assert recovery.stats().requested == 3


@pytest.mark.parametrize(
    "fault",
    [httpx.Response(502, json={"message": "Server Error"}), httpx.ReadTimeout("slow")],
    ids=["5xx", "timeout"],
)
async def test_a_failing_page_stops_the_round_keeps_the_checkpoint_and_the_next_round_retries(
    gateway: GitHubGateway,
    hook_log: FakeHookLog,
    clock: Clock,
    fault: httpx.Response | Exception,
) -> None:
    for i in range(150):
        hook_log.log(f"ok-{i}", status_code=202, at=START - 1000 + i)
    hook_log.log("lost", status_code=0, at=START - 2000)
    recovery, store = recovery_of(gateway, clock)
    first = await recovery.round()
    assert first.outcome == "complete"  # a clean start; now the fault on the second page
    checkpoint = store.checkpoint()
    clock.now += INTERVAL
    for i in range(150):
        hook_log.log(f"new-{i}", status_code=202)
    hook_log.log("also-lost", status_code=503, at=clock.now - 10)
    calls = len(hook_log.router.calls)
    hook_log.page_faults = [fault]

    stopped = await recovery.round()

    assert stopped.outcome.startswith("stopped")
    assert stopped.requested == 0
    assert store.checkpoint() == checkpoint
    assert len(hook_log.router.calls) == calls + 1  # one page asked, nothing requested
    clock.now += INTERVAL
    again = await recovery.round()
    assert again.outcome == "complete"
    assert hook_log.requested_guids() == ["lost", "also-lost"]


async def test_a_malformed_entry_stops_the_round_and_keeps_the_checkpoint(
    gateway: GitHubGateway, hook_log: FakeHookLog, clock: Clock
) -> None:
    hook_log.log("lost", status_code=0, at=START - 100)
    bad = hook_log.log("bad", status_code=503, at=START - 50)
    bad["guid"] = None
    recovery, store = recovery_of(gateway, clock)

    report = await recovery.round()

    assert report.outcome.startswith("stopped") and "guid" in report.outcome
    assert hook_log.requested_guids() == []
    assert store.checkpoint() is None
    bad["guid"] = "fixed"
    clock.now += INTERVAL
    assert (await recovery.round()).requested == 2


async def test_a_refused_redelivery_is_asked_again_only_in_later_windows_then_given_up_once(
    gateway: GitHubGateway,
    hook_log: FakeHookLog,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook_log.log("stuck", status_code=503, at=START - 100)
    hook_log.redeliver_faults = [httpx.Response(422, json={"message": "Validation Failed"})] * 3
    recovery, store = recovery_of(gateway, clock)
    install_context()
    redeliver = hook_log.router.routes["redeliver"]
    counts = []
    for step in (0, 10, INTERVAL, INTERVAL, INTERVAL, INTERVAL):
        clock.now += step
        hook_log.log(f"ok-{clock.now}", status_code=202)  # newer traffic: the checkpoint moves
        with caplog.at_level(logging.INFO, logger="github_app.recovery"):
            await recovery.round()
        counts.append(redeliver.call_count)
    # asked in rounds 1, 3 and 4 (round 2 was within the window), given up in round 5
    assert counts == [1, 1, 2, 3, 3, 3]
    record = store.request_record("stuck")
    assert record is not None and record.given_up and record.attempts == 3
    assert recovery.stats().request_failed == 3
    gave_up = [r for r in caplog.records if "gives up on delivery stuck" in r.getMessage()]
    assert len(gave_up) == 1
    assert gave_up[0].ctx["delivery_id"] == "stuck"  # type: ignore[attr-defined]
    refused = [r for r in caplog.records if r.getMessage().startswith("redelivery of stuck")]
    assert len(refused) == 3
    assert refused[0].ctx["event"] == "issues"  # type: ignore[attr-defined]


async def test_an_event_that_arrives_by_itself_during_the_round_is_not_requested(
    gateway: GitHubGateway, hook_log: FakeHookLog, clock: Clock
) -> None:
    hook_log.log("first", status_code=0, at=START - 300)
    hook_log.log("arrives", status_code=0, at=START - 200)
    hook_log.log("third", status_code=0, at=START - 100)

    def knows(guid: str) -> bool:  # "arrives" is admitted once the first request went out
        return guid == "arrives" and bool(hook_log.redelivery_requests)

    recovery, _ = recovery_of(gateway, clock, knows)
    report = await recovery.round()
    assert hook_log.requested_guids() == ["first", "third"]
    assert report.skipped[Skip.ADMITTED] == 1


async def test_a_rate_limited_request_stops_the_round_and_nothing_is_sent_until_retry_after(
    gateway: GitHubGateway, hook_log: FakeHookLog, clock: Clock
) -> None:
    hook_log.log("a", status_code=0, at=START - 300)
    hook_log.log("b", status_code=0, at=START - 200)
    hook_log.log("newer", status_code=202, at=START - 10)
    hook_log.redeliver_faults = [
        httpx.Response(
            403,
            json={"message": "You have exceeded a secondary rate limit"},
            headers={"retry-after": "120"},
        )
    ]
    recovery, store = recovery_of(gateway, clock)

    report = await recovery.round()

    assert report.outcome.startswith("stopped") and report.requested == 0
    assert store.request_record("a") is None  # not counted: GitHub did nothing
    assert store.checkpoint() == START - 300  # a and b are read again next time
    assert gateway.stats().app.secondary_limit_hits == 1
    calls = len(hook_log.router.calls)
    paused = await recovery.round()  # at once: the app is paused, nothing leaves
    assert paused.outcome.startswith("stopped") and "wait" in paused.outcome
    assert len(hook_log.router.calls) == calls


async def test_a_dry_run_lists_what_it_would_request_and_changes_nothing(
    gateway: GitHubGateway, hook_log: FakeHookLog, clock: Clock
) -> None:
    hook_log.log("a", status_code=0, at=START - 300, event="issue_comment", action="created")
    hook_log.log("b", status_code=0, at=START - 200)
    recovery, store = recovery_of(gateway, clock)

    report = await recovery.round(dry_run=True, event="issues")

    assert [c.guid for c in report.candidates] == ["b"]
    assert report.requested == 1 and report.skipped == {Skip.OTHER_EVENT: 1}
    assert hook_log.redelivery_requests == []
    assert store.checkpoint() is None and store.request_record("b") is None


async def test_since_reads_back_that_far_and_leaves_the_checkpoint(
    gateway: GitHubGateway, hook_log: FakeHookLog, clock: Clock
) -> None:
    hook_log.log("old", status_code=0, at=START - 5000)
    hook_log.log("recent", status_code=0, at=START - 100)
    recovery, store = recovery_of(gateway, clock)
    await recovery.round(since=START - 1000)
    assert hook_log.requested_guids() == ["recent"]
    assert store.checkpoint() is None


async def test_redelivery_requests_are_paced_like_writes(
    private_key_pem: str, hook_log: FakeHookLog, clock: Clock
) -> None:
    gateway = GitHubGateway(make_settings(private_key_pem, GITHUB_WRITE_INTERVAL="0.05"))
    try:
        for i in range(3):
            hook_log.log(f"g{i}", status_code=0, at=START - 100 + i)
        recovery, _ = recovery_of(gateway, clock)
        await recovery.round()
        assert len(hook_log.redelivery_requests) == 3
        assert gateway.stats().app.paced_writes >= 2  # each after the first waited its turn
    finally:
        await gateway.aclose()


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({}, "no app credentials"),
        ({"DRY_RUN": "true"}, "dry run"),
        ({"RECOVERY_INTERVAL": "0"}, "RECOVERY_INTERVAL is 0"),
    ],
)
async def test_the_loop_is_off_without_credentials_in_dry_run_or_at_interval_0_and_says_so(
    private_key_pem: str,
    env: dict[str, str],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = None if reason == "no app credentials" else private_key_pem
    settings = make_settings(key, **{"RECOVERY_INTERVAL": "300", **env})
    gateway = GitHubGateway(settings)
    try:
        recovery = Recovery.from_settings(settings, gateway, MemoryRecoveryStore(lambda g: False))
        with caplog.at_level(logging.INFO, logger="github_app.recovery"):
            await recovery.run()  # returns at once
        assert not recovery.enabled
        assert recovery.stats().off_reason == reason
        lines = [r.getMessage() for r in caplog.records if "recovery" in r.getMessage()]
        assert lines == [f"recovery of failed deliveries is off: {reason}"]
    finally:
        await gateway.aclose()


async def test_a_round_that_reached_its_cap_is_followed_by_the_next_at_once(
    gateway: GitHubGateway, hook_log: FakeHookLog, clock: Clock
) -> None:
    for i in range(5):
        hook_log.log(f"g{i}", status_code=0, at=START - 500 + 10 * i)
    recovery, _ = recovery_of(gateway, clock, max_requests=2, start_delay=0)
    with anyio.fail_after(10):  # the interval is 300 s: only the cap rule can get there
        async with anyio.create_task_group() as group:
            group.start_soon(recovery.run)
            while len(hook_log.redelivery_requests) < 5:
                await recovery.round_done.wait()
            group.cancel_scope.cancel()
    assert hook_log.requested_guids() == [f"g{i}" for i in range(5)]
    last = recovery.stats().last_round
    assert last is not None and last.skipped == {Skip.REQUESTED: 4}


async def test_replicas_sharing_redis_take_turns_and_read_on_from_each_others_checkpoint(
    gateway: GitHubGateway, hook_log: FakeHookLog, clock: Clock, redis_server: RedisServer
) -> None:
    hook_log.log("lost", status_code=0, at=START - 300)
    hook_log.log("fine", status_code=202, at=START - 200)
    hook_log.log("admitted-elsewhere", status_code=503, at=START - 250)  # a slow 2xx elsewhere

    async def admitted(guids: Sequence[str]) -> set[str]:  # the shared queue's record
        return {guid for guid in guids if guid == "admitted-elsewhere"}

    one, other = Redis.from_url(redis_server.url), Redis.from_url(redis_server.url)
    try:
        stores = [
            RedisRecoveryStore(client, lambda guid: False, prefix="t:", admitted=admitted)
            for client in (one, other)
        ]
        first, second = (
            Recovery(
                gateway,
                store,
                interval=INTERVAL,
                lookback=3 * DAY,
                retention=3 * DAY,
                max_attempts=3,
                clock=clock,
            )
            for store in stores
        )
        async with stores[0].exclusive() as ours:  # the first replica is in a round
            assert ours
            skipped = await second.round()
        assert skipped.outcome == f"skipped: {ELSEWHERE}"
        assert hook_log.redelivery_requests == [] and len(hook_log.router.calls) == 0

        report = await first.round()
        assert report.requested == 1 and report.checkpoint is not None
        assert report.skipped[Skip.ADMITTED] == 1
        clock.now += INTERVAL
        again = await second.round()  # the other replica reads on from the shared record
        assert again.since == report.checkpoint
        assert stores[1].request_record("lost") == RequestRecord(1, START)
        assert hook_log.requested_guids() == ["lost"]
        assert second.stats().checkpoint == first.stats().checkpoint
    finally:
        await one.aclose()
        await other.aclose()


async def test_with_redis_away_a_round_is_put_off_with_a_warning_and_the_loop_goes_on(
    gateway: GitHubGateway,
    hook_log: FakeHookLog,
    clock: Clock,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook_log.log("lost", status_code=0, at=START - 300)
    client = Redis.from_url(redis_server.url)
    try:
        store = RedisRecoveryStore(client, lambda guid: False, prefix="t:")
        recovery = Recovery(
            gateway,
            store,
            interval=0.01,
            lookback=3 * DAY,
            retention=3 * DAY,
            max_attempts=3,
            start_delay=0,
            clock=clock,
        )
        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="github_app.recovery"):
            async with anyio.create_task_group() as group:
                group.start_soon(recovery.run)
                await wait_for(
                    lambda: sum("put off" in r.getMessage() for r in caplog.records) >= 2,
                    what="two rounds put off",
                )
                group.cancel_scope.cancel()
    finally:
        await client.aclose()
    put_off = [r for r in caplog.records if "put off" in r.getMessage()]
    assert put_off[0].getMessage() == (
        "recovery round put off: recovery's record: Redis does not answer (ConnectionError)"
    )
    assert all(r.exc_info is None for r in caplog.records)  # no traceback in the log
    assert hook_log.redelivery_requests == []
