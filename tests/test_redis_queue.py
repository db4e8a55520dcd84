"""The shared queue's own rules, with replicas as queues on one real Redis in this process:
duplicates and bounds over all replicas, one issue on one replica at a time, the shared record
of succeeded processors, and the status, metrics and readiness of a running app."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import respx

from github_app.dispatch.registry import Registry
from github_app.queue.memory import DUPLICATE
from github_app.queue.priority import Priority
from github_app.queue.redis_queue import RedisQueue, SharedQueueStats
from github_app.queue.redis_scripts import GROUP, Keys
from github_app.redis_link import PREFIX, RedisLink
from tests.conftest import make_settings, running_app, wait_for
from tests.deliveries import app_payload, issue_event, signed
from tests.helpers_unit import envelope
from tests.redis_server import RedisServer
from tests.test_retries import Counting, counting, no_config

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def replica(
    server: RedisServer, max_events: int = 100, claim_idle: float = 60.0
) -> AsyncIterator[RedisQueue]:
    """A replica; leaving the block is its death (nothing given back)."""
    link = RedisLink(server.url)
    queue = RedisQueue(link, max_events, 10**8, claim_idle=claim_idle)
    try:
        async with anyio.create_task_group() as group:
            await group.start(queue.run)
            await queue.sync()
            yield queue
            group.cancel_scope.cancel()
    finally:
        await link.aclose()


def shared(queue: RedisQueue) -> SharedQueueStats:
    stats = queue.stats().shared
    assert isinstance(stats, SharedQueueStats)
    return stats


async def test_a_delivery_admitted_at_one_replica_is_a_duplicate_at_another_running_one(
    redis_server: RedisServer,
) -> None:
    async with replica(redis_server) as one, replica(redis_server) as two:
        assert (await one.admit(envelope("d-1"), Priority.NORMAL)).admitted
        assert not two.knows("d-1")  # not read by it yet: admission asks Redis
        assert await two.admit(envelope("d-1"), Priority.NORMAL) == DUPLICATE
        assert two.knows("d-1")
        assert await one.seen(["d-1", "d-2"]) == {"d-1"}  # what recovery asks


async def test_admission_bounds_count_the_events_of_every_replica(
    redis_server: RedisServer,
) -> None:
    async with replica(redis_server, max_events=4) as one, replica(redis_server, 4) as two:
        for n in range(3):
            assert (await one.admit(envelope(f"a-{n}", issue_number=n), Priority.NORMAL)).admitted
        refused = await two.admit(envelope("b-1", issue_number=9), Priority.NORMAL)
        assert not refused.admitted and "queue full for NORMAL" in refused.reason
        assert (await two.admit(envelope("b-2", issue_number=9), Priority.CRITICAL)).admitted
        await two.sync()
        assert shared(two).held_events == 4
        assert not two.accepts(Priority.NORMAL)


async def test_one_issue_is_worked_on_by_one_replica_at_a_time_in_arrival_order(
    redis_server: RedisServer,
) -> None:
    async with replica(redis_server) as one, replica(redis_server) as two:
        for name in ("first", "second", "third"):
            await one.admit(envelope(name, issue_number=7), Priority.NORMAL)

        def read_by_both() -> int:  # each pump reads in the background too: wait for both
            return len(one) + len(two) + shared(one).parked + shared(two).parked

        def settled_in() -> bool:
            return read_by_both() == 3 and shared(one).leases + shared(two).leases == 1

        await wait_for(settled_in, what="the three events read and the issue leased")
        # whichever replica leased issue 7 holds its events; the other parks what it read
        owner, other = (one, two) if shared(one).leases else (two, one)
        assert shared(owner).leases == 1 and shared(other).leases == 0
        assert other.take() is None
        item = owner.take()
        assert item is not None and item.envelope.delivery_id == "first"
        assert owner.take() is None  # never two of one issue at once
        owner.done(item)
        taken = [item.envelope.delivery_id]
        with anyio.fail_after(10):
            while len(taken) < 3:
                await one.sync()
                await two.sync()
                for queue, another in ((one, two), (two, one)):
                    if (next_item := queue.take()) is not None:
                        assert another.take() is None
                        taken.append(next_item.envelope.delivery_id)
                        queue.done(next_item)
        assert taken == ["first", "second", "third"]  # arrival order, whoever read which


async def test_processors_that_succeeded_are_read_from_redis_with_the_event(
    redis_server: RedisServer,
) -> None:
    async with replica(redis_server, claim_idle=0.1) as one:  # its issue lease lasts 0.1 s
        await one.admit(envelope("d-1"), Priority.NORMAL)
        await one.sync()
        item = one.take()
        assert item is not None
        one.succeeded.add("d-1", "labeler")
        one.retry(item, 0.0, "GitHub answered 502")
        await one.sync()
    # that replica is gone; the next one claims its event once it is idle long enough
    link = RedisLink(redis_server.url)
    two = RedisQueue(link, 100, 10**8, claim_idle=0.05)
    try:
        with anyio.fail_after(10):
            while len(two) == 0:
                await two.sync()
        assert two.succeeded.of("d-1") == ("labeler",)
        again = two.take()
        assert again is not None
        assert (again.attempts, again.last_error) == (2, "GitHub answered 502")
    finally:
        await link.aclose()


async def test_redis_unreachable_is_named_without_the_password_in_the_url() -> None:
    with socket.socket() as closed:  # bound, never listening: refused, and nobody else's
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        link = RedisLink(f"redis://:hunter2-secret@127.0.0.1:{port}/0")
        queue = RedisQueue(link, 100, 10**8)
        try:
            refused = await queue.admit(envelope("d-1"), Priority.NORMAL)
        finally:
            await link.aclose()
    assert (refused.admitted, refused.error) == (False, "redis_unavailable")
    assert queue.unavailable is not None and queue.unavailable.startswith("Redis unreachable")
    assert "hunter2" not in queue.unavailable and "hunter2" not in refused.reason


async def test_a_running_app_shows_the_replicas_and_the_shared_queue(
    github: respx.MockRouter,
    private_key_pem: str,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    no_config(github)
    runs = Counting()
    settings = make_settings(
        private_key_pem, QUEUE_BACKEND="redis", REDIS_URL=redis_server.url, ADMIN_TOKEN="t" * 20
    )
    async with running_app(settings, registry=Registry([counting(runs)])) as app:
        delivery = signed(app_payload("issues.opened"), "issues")
        assert (await app.post(delivery)).status_code == 202
        await wait_for(lambda: len(runs.runs) == 1, what="the event to run")
        assert (await app.client.get(app.url + "/readyz")).status_code == 200
        queue = app.runtime.queue
        assert isinstance(queue, RedisQueue)

        def seen_and_settled() -> bool:
            stats = shared(queue)
            return bool(stats.replicas) and stats.held_events == 0

        await wait_for(seen_and_settled, what="the heartbeat and the settle in Redis")
        answer = await app.client.get(
            app.url + "/admin/status", headers={"Authorization": "Bearer " + "t" * 20}
        )
        document = answer.json()["queue"]["shared"]
        assert document["replica_id"] == queue.replica_id
        assert [r["replica_id"] for r in document["replicas"]] == [queue.replica_id]
        assert set(document["depth_by_priority"]) == {p.name for p in Priority}
        metrics = (await app.client.get(app.url + "/metrics")).text
        assert "auto_issue_processor_redis_available 1.0" in metrics
        assert (
            f'auto_issue_processor_replica_beat_age_seconds{{replica="{queue.replica_id}"}}'
            in metrics
        )
    assert not [r for r in caplog.records if redis_server.url in r.getMessage()]


async def test_a_replica_that_shuts_down_gives_its_events_back_to_the_others_at_once(
    github: respx.MockRouter,
    private_key_pem: str,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    no_config(github)
    caplog.set_level(logging.INFO, logger="github_app.runtime")
    settings = make_settings(private_key_pem, QUEUE_BACKEND="redis", REDIS_URL=redis_server.url)
    async with running_app(settings, registry=Registry([counting(Counting())]), paused=True) as app:
        for n in range(3):
            delivery = signed(issue_event(number=n + 1), "issues")
            assert (await app.post(delivery)).status_code == 202
        queue = app.runtime.queue
        assert isinstance(queue, RedisQueue)
        await wait_for(lambda: len(queue) == 3, what="the replica to hold the three events")
    assert "3 event(s) held by this replica went back to the shared queue" in caplog.text
    # another replica gets them now, not after REDIS_CLAIM_IDLE (60 s)
    link = RedisLink(redis_server.url)
    other = RedisQueue(link, 100, 10**8, claim_idle=60)
    try:
        await other.sync()
        assert len(other) == 3, other.stats()
        assert shared(other).pending_by_priority == {
            "CRITICAL": 0,
            "HIGH": 3,
            "NORMAL": 0,
            "LOW": 0,
        }
    finally:
        await link.aclose()


async def test_a_replica_that_did_not_answer_lets_go_of_the_events_another_one_claimed(
    redis_server: RedisServer,
) -> None:
    """A stalled replica (here: one whose upkeep has not run) loses its events to a live one
    after REDIS_CLAIM_IDLE; when it runs again it leaves them to that one, not running them
    a second time."""
    link = RedisLink(redis_server.url)
    stalled = RedisQueue(link, 100, 10**8, claim_idle=0.3)
    try:
        await stalled.admit(envelope("d-1"), Priority.NORMAL)
        await stalled.sync()
        assert len(stalled) == 1
        async with replica(redis_server, claim_idle=0.3) as live:
            await wait_for(lambda: len(live) == 1, what="the live replica's claim")
            async with anyio.create_task_group() as group:
                await group.start(stalled.run)
                await wait_for(lambda: shared(stalled).holding == 0, what="the stalled to let go")
                assert stalled.take() is None
                group.cancel_scope.cancel()
            item = live.take()
            assert item is not None and item.envelope.delivery_id == "d-1"
            assert shared(live).claimed == 1
    finally:
        await link.aclose()


async def test_an_event_settled_while_redis_is_away_is_not_claimed_before_its_settle_is_sent(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Replica A finishes an event while Redis is away: the settle and the record of its
    succeeded processors wait in A's outbox. Redis answers again and B's claim runs after
    REDIS_CLAIM_IDLE, before A's outbox sent: the entry is still A's (its upkeep touches it
    as one it holds), so B does not take the event and do it a second time."""
    claim_idle = 0.5
    stream = Keys(PREFIX).stream(Priority.NORMAL)
    link_a, link_b = RedisLink(redis_server.url), RedisLink(redis_server.url)
    one = RedisQueue(link_a, 100, 10**8, claim_idle=claim_idle)
    two = RedisQueue(link_b, 100, 10**8, claim_idle=claim_idle)

    async def idle_of_the_entry() -> float:
        pending: Any = await link_b.client.xpending_range(stream, GROUP, "-", "+", 10)
        assert [p["consumer"].decode() for p in pending] == [one.replica_id]
        return float(pending[0]["time_since_delivered"]) / 1000

    try:
        await link_a.client.config_set("appendfsync", "always")  # the kill -9 loses nothing
        await two.sync()
        async with anyio.create_task_group() as group:
            group.start_soon(one.feed)  # A's pump and upkeep; its outbox is held back
            assert (await one.admit(envelope("d-1"), Priority.NORMAL)).admitted
            await wait_for(lambda: len(one) == 1, what="A to read the event")
            item = one.take()
            assert item is not None
            one.succeeded.add("d-1", "welcome")
            redis_server.stop()
            one.done(item)
            settled_at = time.monotonic()
            redis_server.start()
            # Untouched since before the outage, the entry would be claimed now; A touched it
            # since Redis answers again (idle below half of REDIS_CLAIM_IDLE).
            kept = False
            with anyio.move_on_after(5):
                while not kept:
                    await anyio.sleep(0.01)
                    waited = time.monotonic() - settled_at
                    kept = waited >= claim_idle and await idle_of_the_entry() < claim_idle / 2
            # the try, the succeeded record, the settle and the lease's release wait in A
            assert (shared(one).settling, shared(one).writes_waiting) == (1, 4)
            await two.sync()  # B's claim
            # neither B nor A itself (its upkeep claims too) takes the event to do it again
            assert (shared(two).claimed, shared(two).holding) == (0, 0)
            assert (shared(one).claimed, shared(one).holding, len(one)) == (0, 0, 0)
            assert kept
            await group.start(one.send_writes)
            await one.sync()
            assert await link_b.client.xlen(stream) == 0  # acknowledged and deleted
            assert (await link_b.client.xpending(stream, GROUP))["pending"] == 0
            assert await link_b.client.exists(Keys(PREFIX).succeeded("d-1"))
            # sent: A's upkeep forgets it, without taking it for one another replica claimed
            await wait_for(lambda: shared(one).settling == 0, what="A to forget the settled")
            group.cancel_scope.cancel()
    finally:
        await link_a.aclose()
        await link_b.aclose()
    assert "claimed by another replica" not in caplog.text
