"""Readiness through the real server, and the status document's rendering rules."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

import pytest

from github_app.admin.status import breaker_open, jsonable
from tests.conftest import make_settings, running_app
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


async def test_readyz_is_503_while_the_circuit_breaker_is_open() -> None:
    @dataclass
    class Breaker:  # the shape issue 5's breaker exposes: a state named open/closed
        state: str = "closed"

    async with running_app(make_settings(None)) as app:
        breaker = Breaker()
        app.runtime.breaker = breaker  # type: ignore[attr-defined]
        assert (await app.client.get(app.url + "/readyz")).status_code == 200
        breaker.state = "open"
        answer = await app.client.get(app.url + "/readyz")
        assert answer.status_code == 503
        assert "circuit breaker open" in answer.json()["reason"]
        breaker.state = "half_open"
        assert (await app.client.get(app.url + "/readyz")).status_code == 200


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"


@pytest.mark.parametrize(
    ("breaker", "expected"),
    [
        (None, False),
        (type("B", (), {"is_open": True})(), True),
        (type("B", (), {"is_open": lambda self: False})(), False),
        (type("B", (), {"state": State.OPEN})(), True),
        (type("B", (), {"state": State.CLOSED})(), False),
        (type("B", (), {"state": "OPEN"})(), True),
    ],
)
def test_breaker_is_read_from_is_open_or_a_state_named_open(
    breaker: object, expected: bool
) -> None:
    assert breaker_open(breaker) is expected


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
