"""Readiness through the real server, and the status document's rendering rules."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

import pytest

from github_app.admin.status import jsonable, readiness
from github_app.control.breaker import BreakerSettings, BreakerState, CircuitBreaker
from github_app.control.controller import Outcome
from github_app.queue.memory import MemoryQueue
from tests.conftest import make_settings, running_app, wait_for
from tests.deliveries import issue_event, signed

pytestmark = pytest.mark.anyio


async def test_readyz_turns_503_while_the_queue_refuses_normal_events_and_back_after() -> None:
    # 4 events: NORMAL may fill 75% of it, so the third queued event saturates NORMAL.
    settings = make_settings(None, QUEUE_MAX_EVENTS="4")
    async with running_app(settings, paused=True) as app:
        assert (await app.client.get(app.url + "/readyz")).status_code == 200
        for number in (1, 2, 3):
            delivery = signed(issue_event("edited", number=number), "issues")
            answer = await app.post(delivery)
            assert answer.json()["priority"] == "NORMAL"
        saturated = await app.client.get(app.url + "/readyz")
        assert saturated.status_code == 503
        assert saturated.json()["reason"] == "queue full: NORMAL events are refused"
        app.runtime.dispatcher.resume()
        await app.settle()
        recovered = await app.client.get(app.url + "/readyz")
        assert recovered.status_code == 200
        assert recovered.json() == {"status": "ready"}


async def test_readyz_is_503_while_the_circuit_breaker_is_open_and_ready_again_half_open() -> None:
    async with running_app(make_settings(None)) as app:
        breaker = app.runtime.breaker  # the real one the dispatcher asks
        breaker.settings = BreakerSettings(failures=2, cooldown=0.2)
        assert (await app.client.get(app.url + "/readyz")).status_code == 200
        for _ in range(2):
            breaker.record(Outcome.ERROR)
        answer = await app.client.get(app.url + "/readyz")
        assert answer.status_code == 503
        assert answer.json()["reason"] == "circuit breaker open: GitHub is failing"
        status = app.runtime.status.document()
        assert status["breaker"]["open"] is True and status["breaker"]["stats"]["opened"] == 1
        # after the cooldown it lets a probe through: ready again
        await wait_for(lambda: breaker.state is BreakerState.HALF_OPEN, what="the cooldown")
        assert (await app.client.get(app.url + "/readyz")).status_code == 200


def test_readiness_follows_the_real_breaker_through_open_half_open_and_closed() -> None:
    now = [0.0]
    breaker = CircuitBreaker(BreakerSettings(failures=1, cooldown=5.0), clock=lambda: now[0])
    queue = MemoryQueue(10, 10_000)

    def reason() -> str | None:
        return readiness(accepting=True, queue=queue, breaker=breaker)

    assert reason() is None
    breaker.record(Outcome.ERROR)
    assert reason() == "circuit breaker open: GitHub is failing"
    now[0] += 5.0
    assert breaker.state is BreakerState.HALF_OPEN and reason() is None
    assert breaker.allow()  # the probe
    breaker.record(Outcome.OK)
    assert breaker.state is BreakerState.CLOSED and reason() is None
    assert readiness(accepting=False, queue=queue, breaker=breaker) == "shutting down"


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"


def test_stats_render_as_plain_json_and_credential_fields_are_dropped() -> None:
    @dataclass(frozen=True)
    class Ledger:
        remaining: int
        token: str
        by_event: Counter[str] = field(default_factory=Counter)
        level: State = State.OPEN
        hidden: str = field(default="x", repr=False)

    rendered = jsonable(Ledger(12, "ghs_secret", Counter({"issues": 2}), State.CLOSED))
    assert rendered == {"remaining": 12, "by_event": {"issues": 2}, "level": "CLOSED"}
    assert jsonable({"webhook_secret": "s", "depth": (1, 2)}) == {"depth": [1, 2]}
