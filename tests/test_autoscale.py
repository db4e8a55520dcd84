"""The control glue: feedback to controller and breaker, the dispatcher gate, width applied."""

from __future__ import annotations

import time

import pytest

from github_app.control.autoscale import Autoscaler, GitHubGate, HostSampler
from github_app.control.breaker import BreakerSettings, CircuitBreaker
from github_app.control.controller import Backlog, ControllerSettings, Outcome, WidthController
from github_app.control.feedback import (
    Observation,
    note_error,
    note_wait,
    note_work,
    outcome_of,
    reporting,
)
from github_app.dispatch.dispatcher import Dispatcher
from github_app.errors import RetryableGitHubError
from github_app.queue.event import QueuedEvent
from github_app.queue.memory import MemoryQueue
from github_app.queue.priority import Priority
from github_app.runtime import Runtime
from tests.conftest import make_settings
from tests.helpers_unit import envelope

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


async def handler(item: QueuedEvent) -> None:
    raise AssertionError("not run in these tests")


def build(clock: FakeClock) -> tuple[GitHubGate, Autoscaler, Dispatcher]:
    controller = WidthController(
        ControllerSettings(min_width=1, max_width=32), clock=clock, start=16
    )
    breaker = CircuitBreaker(BreakerSettings(failures=2, cooldown=3.0), clock=clock)
    gate = GitHubGate(controller, breaker)
    dispatcher = Dispatcher(MemoryQueue(100, 10_000), handler, width=controller.width, gate=gate)
    scaler = Autoscaler(
        controller,
        dispatcher,
        backlog=lambda: Backlog(ready=50, in_flight=16),
        host=HostSampler().sample,
    )
    return gate, scaler, dispatcher


async def test_a_throttle_halves_the_dispatcher_width_and_gates_new_events_for_retry_after() -> (
    None
):
    clock = FakeClock()
    gate, scaler, dispatcher = build(clock)
    assert dispatcher.width == 16  # the controller's start
    gate.observe(Observation(0.05, Outcome.THROTTLED, retry_after=4.0))
    clock.now += 0.5
    decision = scaler.step()
    assert decision.action == "backoff"
    assert dispatcher.width == 8
    assert not gate.allow()
    assert gate.wait_hint() == pytest.approx(4.0)
    clock.now += 4.0
    assert gate.allow()


async def test_a_width_set_by_hand_lasts_until_the_controller_changes_its_mind() -> None:
    clock = FakeClock()
    _, scaler, dispatcher = build(clock)
    dispatcher.width = 3
    clock.now += 0.5
    decision = scaler.step()
    assert decision.action == "hold"
    assert dispatcher.width == 3


async def test_errors_open_the_breaker_through_the_feedback_and_close_the_gate() -> None:
    clock = FakeClock()
    gate, _, _ = build(clock)
    for _ in range(2):
        gate.observe(Observation(0.5, Outcome.ERROR))
    assert gate.breaker.stats().state == "open"
    assert not gate.allow()
    assert gate.wait_hint() == pytest.approx(3.0)
    assert gate.controller.stats().errors == 2


async def test_a_throttle_of_one_installation_among_many_does_not_close_the_gate() -> None:
    clock = FakeClock()
    gate, scaler, dispatcher = build(clock)
    for installation in range(1, 21):
        gate.observe(Observation(0.1, Outcome.OK, installation=installation))
    gate.observe(Observation(0.05, Outcome.THROTTLED, retry_after=60.0, installation=5))
    assert gate.allow()  # the other installations' events are still taken
    clock.now += 0.5
    decision = scaler.step()
    assert decision.action == "hold" and dispatcher.width == 16
    assert gate.controller.stats().local_throttles == 1
    assert gate.breaker.stats().state == "closed"


def test_a_request_refused_during_an_installations_pause_is_a_throttle_not_an_error() -> None:
    refused = RetryableGitHubError("not sent: installation 3 must wait", retry_after=12.0)
    assert outcome_of(refused) == (Outcome.THROTTLED, 12.0)
    assert outcome_of(RetryableGitHubError("GitHub did not answer in time")) == (
        Outcome.ERROR,
        None,
    )


def test_reporting_scopes_the_outcome_to_the_events_installation() -> None:
    seen: list[Observation] = []
    with reporting(seen.append, installation=42):
        note_work()
        note_error(RetryableGitHubError("secondary", status_code=403, retry_after=2.0))
    assert [(o.outcome, o.retry_after, o.installation) for o in seen] == [
        (Outcome.THROTTLED, 2.0, 42)
    ]


def test_the_runtime_counts_deferred_events_as_blocked_not_ready() -> None:
    runtime = Runtime(make_settings(None, QUEUE_BACKEND="memory"))
    assert isinstance(runtime.queue, MemoryQueue)
    for n in range(3):
        runtime.queue.offer(envelope(f"d-{n}", issue_number=n + 1), Priority.NORMAL)
    item = runtime.queue.take()
    assert item is not None
    runtime.queue.defer(item, time.monotonic() + 60.0)  # its installation must wait
    assert runtime.backlog() == Backlog(ready=2, in_flight=0, blocked=1)


def test_time_waiting_on_the_installations_pacing_is_not_github_latency() -> None:
    clock = FakeClock()
    seen: list[Observation] = []
    with reporting(seen.append, clock, installation=7):
        note_work()
        clock.now += 0.8  # waited for its write turn
        note_wait(0.8)
        clock.now += 0.15  # GitHub answered
    assert len(seen) == 1
    assert seen[0].latency == pytest.approx(0.15)
    assert seen[0].outcome is Outcome.OK
