"""The autoscaler glue: feedback to controller and breaker, width applied, the dispatcher gate."""

from __future__ import annotations

import pytest

from github_app.autoscale import Autoscaler, HostSampler
from github_app.breaker import BreakerSettings, CircuitBreaker
from github_app.controller import Backlog, ControllerSettings, Outcome, WidthController
from github_app.dispatch import Dispatcher
from github_app.feedback import Observation
from github_app.queue import MemoryQueue, QueuedEvent

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


async def handler(item: QueuedEvent) -> None:
    raise AssertionError("not run in these tests")


def build(clock: FakeClock) -> tuple[Autoscaler, Dispatcher]:
    controller = WidthController(
        ControllerSettings(min_width=1, max_width=32), clock=clock, start=16
    )
    breaker = CircuitBreaker(BreakerSettings(failures=2, cooldown=3.0), clock=clock)
    dispatcher = Dispatcher(MemoryQueue(100, 10_000), handler, width=1)
    scaler = Autoscaler(
        controller,
        breaker,
        dispatcher,
        backlog=lambda: Backlog(ready=50, in_flight=16),
        host=HostSampler().sample,
    )
    dispatcher.gate = scaler
    return scaler, dispatcher


async def test_a_throttle_halves_the_dispatcher_width_and_gates_new_events_for_retry_after() -> (
    None
):
    clock = FakeClock()
    scaler, dispatcher = build(clock)
    assert dispatcher.width == 16  # the controller's start is applied at once
    scaler.observe(Observation(0.05, Outcome.THROTTLED, retry_after=4.0))
    clock.now += 0.5
    decision = scaler.step()
    assert decision.action == "backoff"
    assert dispatcher.width == 8
    assert not scaler.allow()
    assert scaler.wait_hint() == pytest.approx(4.0)
    clock.now += 4.0
    assert scaler.allow()


async def test_a_width_set_by_hand_lasts_until_the_controller_changes_its_mind() -> None:
    clock = FakeClock()
    scaler, dispatcher = build(clock)
    dispatcher.width = 3
    clock.now += 0.5
    decision = scaler.step()
    assert decision.action == "hold"
    assert dispatcher.width == 3


async def test_errors_open_the_breaker_through_the_feedback_and_close_the_gate() -> None:
    clock = FakeClock()
    scaler, _ = build(clock)
    for _ in range(2):
        scaler.observe(Observation(0.5, Outcome.ERROR))
    assert scaler.breaker.stats().state == "open"
    assert not scaler.allow()
    assert scaler.wait_hint() == pytest.approx(3.0)
    assert scaler.controller.stats().errors == 2
