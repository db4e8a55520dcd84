"""The circuit breaker, pure with a fake clock."""

from __future__ import annotations

from github_app.control.breaker import BreakerSettings, BreakerState, CircuitBreaker
from github_app.control.controller import Outcome


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def breaker(max_cooldown: float = 60.0) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    settings = BreakerSettings(
        failures=3, cooldown=2.0, probe_interval=0.5, max_cooldown=max_cooldown
    )
    return CircuitBreaker(settings, clock=clock), clock


def test_a_run_of_failures_opens_it_and_nothing_is_allowed_while_open() -> None:
    b, clock = breaker()
    for _ in range(2):
        b.record(Outcome.ERROR)
    assert b.state is BreakerState.CLOSED and b.allow()
    b.record(Outcome.ERROR)
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    assert b.wait_hint() == 2.0
    clock.now += 1.0
    assert not b.allow()
    stats = b.stats()
    assert stats.state == "open" and stats.opened == 1 and stats.refused == 2
    assert stats.retry_in == 1.0


def test_a_success_or_a_throttle_between_failures_does_not_count_as_a_run() -> None:
    b, _ = breaker()
    for outcome in (Outcome.ERROR, Outcome.ERROR, Outcome.OK, Outcome.ERROR, Outcome.ERROR):
        b.record(outcome)
    assert b.state is BreakerState.CLOSED
    b.record(Outcome.THROTTLED)  # the width controller's business, not an outage
    assert b.state is BreakerState.CLOSED
    assert b.stats().consecutive_failures == 2


def test_after_the_cooldown_one_probe_at_a_time_and_a_success_closes_it() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.record(Outcome.ERROR)
    clock.now += 2.0
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow()  # the probe
    assert not b.allow()  # one at a time
    clock.now += 0.5
    assert b.allow()  # a probe that never reported does not wedge it
    b.record(Outcome.OK)
    assert b.state is BreakerState.CLOSED
    assert all(b.allow() for _ in range(10))


def test_a_failed_probe_opens_it_again_for_longer() -> None:
    b, clock = breaker(max_cooldown=5.0)
    for _ in range(3):
        b.record(Outcome.ERROR)
    clock.now += 2.0
    assert b.allow()
    b.record(Outcome.ERROR)
    assert b.state is BreakerState.OPEN
    assert b.wait_hint() == 4.0
    clock.now += 4.0
    assert b.allow()
    b.record(Outcome.ERROR)
    assert b.wait_hint() == 5.0  # capped
    assert b.stats().opened == 3
