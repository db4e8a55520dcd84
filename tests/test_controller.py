"""The width controller with scripted inputs: a fake clock and a backend model, no I/O.

The controller hears of every request on the wire (``request_started`` /
``request_finished``) and of every event's outcome (``observe``); the harnesses
here script both, as the transport and the runner would.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import pytest

from github_app.control.controller import (
    Backlog,
    ControllerSettings,
    Decision,
    HostLoad,
    Outcome,
    WidthController,
)

TICK = 0.5


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    """Service time ``base`` up to ``capacity`` concurrent events, then shared by all of them."""

    base: float = 0.1
    capacity: int = 16

    def latency(self, width: int) -> float:
        return self.base * max(1.0, width / self.capacity)


@dataclass
class Harness:
    controller: WidthController
    clock: FakeClock
    carry: float = 0.0
    on_wire: int = 0  # requests the controller was told are in flight

    def keep_in_flight(self, count: int) -> None:
        """Requests on the wire from now on: start more, or drop some unanswered."""
        while self.on_wire < count:
            self.controller.request_started()
            self.on_wire += 1
        while self.on_wire > count:
            self.controller.request_finished(None)
            self.on_wire -= 1

    def complete(self, latency: float, count: int) -> None:
        """``count`` one-request events come back after ``latency`` s, each replaced by a new
        one (the requests in flight stay as many)."""
        for _ in range(count):
            self.controller.request_finished(latency)
            self.controller.request_started()
            self.controller.observe(latency, Outcome.OK)

    def run(
        self,
        backend: Backend,
        ticks: int,
        *,
        ready: int = 1000,
        blocked: int = 0,
        load: HostLoad | None = None,
    ) -> list[Decision]:
        """``ticks`` ticks with the width fully in use: completions follow Little's law."""
        decisions = []
        for _ in range(ticks):
            width = self.controller.width
            latency = backend.latency(width)
            self.keep_in_flight(width)
            self.carry += width * TICK / latency
            completed, self.carry = int(self.carry), self.carry - int(self.carry)
            self.complete(latency, completed)
            self.clock.now += TICK
            busy = width if ready else 0
            decisions.append(
                self.controller.tick(Backlog(ready, busy, blocked), load or HostLoad())
            )
        return decisions


def harness(min_width: int = 1, max_width: int = 128, start: int = 1) -> Harness:
    clock = FakeClock()
    settings = ControllerSettings(min_width=min_width, max_width=max_width, tick=TICK)
    return Harness(WidthController(settings, clock=clock, start=start), clock)


def widths(decisions: list[Decision]) -> list[int]:
    return [d.width for d in decisions]


def test_grows_under_backlog_at_baseline_latency() -> None:
    h = harness(max_width=64)
    decisions = h.run(Backend(base=0.1, capacity=1000), ticks=30)
    assert h.controller.width == 64
    grown = [d for d in decisions if d.action == "grow"]
    assert grown and all("backlog" in d.reason for d in grown)
    assert widths(decisions) == sorted(widths(decisions))  # never shrank on the way
    # slow start: from 1 to 64 in well under 10 s of ticks
    assert decisions.index(next(d for d in decisions if d.width == 64)) < 20


def test_does_not_grow_with_an_empty_queue() -> None:
    h = harness(start=4)
    decisions = h.run(Backend(), ticks=20, ready=0)
    assert set(widths(decisions)) == {4}
    assert all(d.action == "hold" and d.reason == "no backlog" for d in decisions)


def test_holds_rather_than_grows_when_ready_work_waits_on_installation_limits() -> None:
    h = harness(start=4)
    decisions = h.run(Backend(), ticks=20, ready=0, blocked=50)
    assert set(widths(decisions)) == {4}
    assert "per-installation limits" in decisions[-1].reason


def test_does_not_grow_while_the_width_is_not_in_use() -> None:
    h = harness(start=8)
    for _ in range(10):
        for _ in range(20):
            h.controller.observe(0.1, Outcome.OK)
        h.clock.now += TICK
        decision = h.controller.tick(Backlog(ready=5, in_flight=3))
        assert decision.width == 8
    assert "not in use" in decision.reason


def test_backs_off_on_throttling_pauses_and_stays_under_the_throttled_width() -> None:
    h = harness(start=16)
    h.run(Backend(capacity=1000), ticks=4)
    width = h.controller.width
    h.controller.observe(0.05, Outcome.THROTTLED, retry_after=3.0)
    h.clock.now += TICK
    decision = h.controller.tick(Backlog(1000, width))
    assert decision.action == "backoff"
    assert decision.width == width // 2
    assert "throttled" in decision.reason
    paused = h.run(Backend(capacity=1000), ticks=5)  # 2.5 s of the 3 s pause
    assert set(widths(paused)) == {width // 2}
    assert all("paused" in d.reason for d in paused)
    assert h.controller.stats().pause_left > 0
    later = h.run(Backend(capacity=1000), ticks=40)
    ceiling = h.controller.stats().ceiling
    assert ceiling is not None and ceiling < width
    assert max(widths(later)) == ceiling  # grows back, but not into the limit again


def test_github_is_slower_after_a_back_off_restores_no_wider_than_the_ceiling() -> None:
    """Latency up as the width halves after a throttle reads as "GitHub is slower" and
    restores the width the verdict came from: never above the throttle's ceiling."""
    h = harness(max_width=32, start=32)
    for latency in (0.1, 0.1):  # the baseline, at 32
        h.keep_in_flight(32)
        h.complete(latency, 40)
        h.clock.now += TICK
        h.controller.tick(Backlog(1000, 32))
    assert h.controller.width == 32
    h.controller.observe(0.1, Outcome.THROTTLED, retry_after=1.0)
    h.clock.now += TICK
    assert h.controller.tick(Backlog(1000, 32)).action == "backoff"
    ceiling = h.controller.stats().ceiling
    assert ceiling == 24
    decisions = []
    for _ in range(8):  # the pause, the skipped tick, then 1.25x the latency at half the width
        h.keep_in_flight(16)
        h.complete(0.125, 40)
        h.clock.now += TICK
        decisions.append(h.controller.tick(Backlog(1000, 16)))
    restored = [d for d in decisions if d.action == "rebaseline" and d.width > d.previous]
    assert restored and "GitHub is slower" in restored[0].reason
    assert max(widths(decisions)) == ceiling


def test_a_throttle_storm_decreases_once_per_pause() -> None:
    h = harness(start=32)
    first = second = None
    for decision_slot in range(2):
        for _ in range(10):
            h.controller.observe(0.05, Outcome.THROTTLED, retry_after=5.0)
        h.clock.now += TICK
        decision = h.controller.tick(Backlog(1000, 32))
        if decision_slot == 0:
            first = decision
        else:
            second = decision
    assert first is not None and first.width == 16
    assert second is not None and second.width == 16 and second.action == "hold"


def test_shrinks_on_latency_rise_when_throughput_stops_following_width() -> None:
    h = harness(max_width=128)
    backend = Backend(base=0.1, capacity=12)
    decisions = h.run(backend, ticks=80)
    shrinks = [d for d in decisions if d.action == "shrink"]
    assert shrinks and "latency" in shrinks[0].reason
    settled = widths(decisions[-20:])
    assert min(settled) >= 12 * 0.9  # keeps the throughput...
    assert max(settled) <= 12 * 1.5  # ...without queueing far past the knee
    stats = h.controller.stats()
    assert stats.latency is not None and stats.baseline is not None
    assert stats.latency <= 1.5 * stats.baseline


def test_a_uniformly_slower_backend_keeps_its_width() -> None:
    h = harness()
    h.run(Backend(base=0.1, capacity=16), ticks=60)
    before = h.controller.width
    decisions = h.run(Backend(base=0.3, capacity=16), ticks=40)  # 3x latency, same capacity
    assert any(d.action == "rebaseline" for d in decisions)
    assert min(widths(decisions[-10:])) >= 16 * 0.9
    assert h.controller.width >= min(before, 16) * 0.9
    settle = next(i for i, d in enumerate(decisions) if d.action == "rebaseline")
    assert settle * TICK <= 10


def test_follows_a_backend_that_loses_half_its_capacity() -> None:
    h = harness()
    h.run(Backend(base=0.1, capacity=32), ticks=60)
    decisions = h.run(Backend(base=0.1, capacity=16), ticks=40)
    assert max(widths(decisions[-10:])) <= 16 * 1.5
    assert min(widths(decisions[-10:])) >= 16 * 0.9


def test_follows_a_faster_backend() -> None:
    h = harness()
    h.run(Backend(base=0.2, capacity=8), ticks=60)
    slow_width = h.controller.width
    slow_baseline = h.controller.stats().baseline
    assert slow_baseline is not None and slow_width <= 12
    decisions = h.run(Backend(base=0.05, capacity=32), ticks=60)
    fast_baseline = h.controller.stats().baseline
    assert fast_baseline is not None and fast_baseline < slow_baseline / 2
    assert h.controller.width >= 32 * 0.9
    assert any(d.action == "grow" for d in decisions)


def test_errors_decrease_the_width_gently() -> None:
    h = harness(start=20)
    for _ in range(8):
        h.controller.observe(0.1, Outcome.OK)
    for _ in range(2):
        h.controller.observe(0.1, Outcome.ERROR)
    h.clock.now += TICK
    decision = h.controller.tick(Backlog(100, 20))
    assert decision.action == "shrink"
    assert decision.width == 18
    assert "failed" in decision.reason


def test_host_load_cpu_or_loop_lag_stops_growth() -> None:
    h = harness(start=10)
    busy = h.run(Backend(capacity=1000), ticks=10, load=HostLoad(cpu=0.97, lag=0.0))
    assert set(widths(busy)) == {10}
    assert "CPU" in busy[-1].reason
    lagged = h.run(Backend(capacity=1000), ticks=10, load=HostLoad(cpu=0.5, lag=0.3))
    assert set(widths(lagged)) == {10}
    assert "lag" in lagged[-1].reason
    free = h.run(Backend(capacity=1000), ticks=10)
    assert max(widths(free)) > 10


@pytest.mark.parametrize("scenario", ["grow", "throttle", "errors"])
def test_stays_within_bounds(scenario: str) -> None:
    h = harness(min_width=3, max_width=7, start=5)
    for _ in range(40):
        width = h.controller.width
        if scenario == "throttle":
            h.controller.observe(0.1, Outcome.THROTTLED, retry_after=0.1)
        elif scenario == "errors":
            for _ in range(5):
                h.controller.observe(0.1, Outcome.ERROR)
        for _ in range(30):
            h.controller.observe(0.1, Outcome.OK)
        h.clock.now += TICK
        decision = h.controller.tick(Backlog(100, width))
        assert 3 <= decision.width <= 7
    assert h.controller.width == (7 if scenario == "grow" else 3)


def test_equal_bounds_give_a_fixed_width_with_a_reason() -> None:
    h = harness(min_width=6, max_width=6)
    decisions = h.run(Backend(capacity=2), ticks=10)
    assert set(widths(decisions)) == {6}
    assert "fixed width" in decisions[-1].reason


def test_every_decision_records_a_reason_and_stats_show_the_last() -> None:
    h = harness()
    decisions = h.run(Backend(capacity=10), ticks=40)
    assert all(d.reason for d in decisions)
    stats = h.controller.stats()
    assert stats.last_decision == decisions[-1]
    assert stats.decisions == 40
    assert stats.width == decisions[-1].width
    assert stats.completed > 0


def test_settings_refuse_impossible_bounds() -> None:
    with pytest.raises(ValueError, match="min_width"):
        ControllerSettings(min_width=5, max_width=4)
    with pytest.raises(ValueError, match="tick"):
        ControllerSettings(tick=0)


def serve_installations(h: Harness, installations: range, latency: float = 0.1) -> None:
    """One OK outcome from each installation (they are at work)."""
    for installation in installations:
        h.controller.observe(latency, Outcome.OK, installation=installation)


def test_one_installation_throttled_among_many_is_left_to_the_client_layer() -> None:
    h = harness(start=16)
    serve_installations(h, range(1, 21))
    h.clock.now += TICK
    h.controller.tick(Backlog(0, 16))  # no backlog yet: the width holds
    serve_installations(h, range(1, 21))
    h.controller.observe(0.05, Outcome.THROTTLED, retry_after=60.0, installation=7)
    assert h.controller.pause_left() == 0  # no global pause: other installations go on
    h.clock.now += TICK
    decision = h.controller.tick(Backlog(1000, 16))
    assert decision.action == "hold" and decision.width == 16
    assert "1 of 20 installation(s) throttled" in decision.reason
    assert "no global back-off" in decision.reason
    stats = h.controller.stats()
    assert stats.local_throttles == 1 and stats.ceiling is None and stats.pause_left == 0
    # the gentle signal lasts one tick: growth resumes once the others are served
    grown = h.run(Backend(capacity=1000), ticks=6)
    assert max(widths(grown)) > 16


def test_throttles_from_many_installations_at_once_back_off_globally() -> None:
    h = harness(start=32)
    serve_installations(h, range(1, 31))
    h.clock.now += TICK
    h.controller.tick(Backlog(0, 32))
    for installation in range(1, 11):  # 10 of 30: many at once
        h.controller.observe(0.05, Outcome.THROTTLED, retry_after=2.0, installation=installation)
    assert h.controller.pause_left() == pytest.approx(2.0)  # paused from the tenth on
    h.clock.now += TICK
    decision = h.controller.tick(Backlog(1000, 32))
    assert decision.action == "backoff" and decision.width == 16


def test_a_throttle_of_the_only_installation_at_work_is_global() -> None:
    h = harness(start=16)
    serve_installations(h, range(1, 2))
    h.controller.observe(0.05, Outcome.THROTTLED, retry_after=3.0, installation=1)
    assert h.controller.pause_left() == pytest.approx(3.0)
    h.clock.now += TICK
    decision = h.controller.tick(Backlog(1000, 16))
    assert decision.action == "backoff" and decision.width == 8


def test_a_throttle_without_an_installation_is_global_even_among_many() -> None:
    h = harness(start=16)
    serve_installations(h, range(1, 41))
    h.controller.observe(0.05, Outcome.THROTTLED, retry_after=3.0)
    assert h.controller.pause_left() == pytest.approx(3.0)
    h.clock.now += TICK
    assert h.controller.tick(Backlog(1000, 16)).action == "backoff"


def test_the_first_answer_of_a_tick_does_not_count_as_all_installations() -> None:
    h = harness(start=16)
    serve_installations(h, range(1, 21))
    h.clock.now += TICK
    h.controller.tick(Backlog(1000, 16))
    # the new tick opens with a throttle: the installations of the tick before still count
    h.controller.observe(0.05, Outcome.THROTTLED, retry_after=3.0, installation=3)
    assert h.controller.pause_left() == 0


def test_a_throttle_storm_lowers_the_ceiling_once_per_pause() -> None:
    h = harness(start=32)
    for _ in range(3):
        h.controller.observe(0.05, Outcome.THROTTLED, retry_after=5.0)
        h.clock.now += TICK
        h.controller.tick(Backlog(1000, 32))
    assert h.controller.width == 16
    assert h.controller.stats().ceiling == 24  # 0.75 of the throttled 32, not of 16


def test_slow_start_judges_an_epoch_on_fewer_completions() -> None:
    h = harness(start=4)
    h.keep_in_flight(4)
    h.complete(0.1, 8)
    h.clock.now += TICK
    assert h.controller.tick(Backlog(1000, 4)).action == "grow"


def test_requests_past_the_knee_are_braked_when_the_app_fills_only_some_slots() -> None:
    """The app takes events slower than they free up (a busy host): 40 of 64 slots busy, so
    the width is not in use, but GitHub sees 40 requests past its knee of 16."""
    h = harness(max_width=64, start=64)
    for _ in range(3):  # a few events at a time: GitHub's own latency, the baseline
        h.keep_in_flight(8)
        h.complete(0.1, 40)
        h.clock.now += TICK
        assert h.controller.tick(Backlog(1000, 8)).width == 64
    decisions = []
    for _ in range(10):
        h.keep_in_flight(40)
        h.complete(0.1 * 40 / 16, 40)
        h.clock.now += TICK
        decisions.append(h.controller.tick(Backlog(1000, 40)))
    shrink = next(d for d in decisions if d.action == "shrink")
    assert "latency" in shrink.reason
    assert shrink.width <= 32  # a step down from the 40 in use, not from the unused 64


@pytest.mark.parametrize("lag", [0.25, 0.06])
def test_latency_measured_while_the_event_loop_stalls_is_not_read_as_github_slowing(
    lag: float,
) -> None:
    """An answer that waits for a stalled event loop carries the app's delay: ticks with
    loop lag (LAG_LIMIT, or half of GitHub's baseline latency) give no latency verdict;
    the same latency without lag is braked."""
    h = harness(max_width=16, start=16)
    for _ in range(3):
        h.keep_in_flight(16)
        h.complete(0.1, 40)
        h.clock.now += TICK
        h.controller.tick(Backlog(1000, 16))
    for _ in range(8):
        h.keep_in_flight(16)
        h.complete(0.3, 40)
        h.clock.now += TICK
        decision = h.controller.tick(Backlog(1000, 16), HostLoad(lag=lag))
        assert decision.width == 16
    decisions = []
    for _ in range(4):
        h.keep_in_flight(16)
        h.complete(0.3, 40)
        h.clock.now += TICK
        decisions.append(h.controller.tick(Backlog(1000, 16)))
    assert [d for d in decisions if d.action == "shrink" and "latency" in d.reason]


def test_slow_start_doubles_every_tick_while_requests_started_at_the_width_come_back() -> None:
    """Slow start judges only requests started at the new width, so it need not leave a
    tick out after each doubling: 4 to 64 in four ticks (it took eight)."""
    h = harness(max_width=64, start=4)
    decisions = []
    for _ in range(4):
        width = h.controller.width
        h.keep_in_flight(width)
        h.clock.now += TICK
        h.complete(0.1, 5 * width)  # started after the last tick, back before this one
        decisions.append(h.controller.tick(Backlog(1000, width)))
    assert widths(decisions) == [8, 16, 32, 64]
    assert {d.action for d in decisions} == {"grow"}


def test_a_raised_latency_in_a_doublings_first_tick_is_measured_one_more_tick() -> None:
    """The first tick after a doubling sees GitHub's queue only building up, and only its
    quicker requests back: a raised reading then is not judged alone."""
    h = harness(max_width=64, start=8)
    decisions = []
    for latency in (0.1, 0.25, 0.25):  # at 8: GitHub's own latency; at 16: 2.5x
        width = h.controller.width
        h.keep_in_flight(width)
        h.clock.now += TICK
        h.complete(latency, 3 * width)
        decisions.append(h.controller.tick(Backlog(1000, width)))
    grown, measured, judged = decisions
    assert grown.width == 16 and grown.action == "grow"
    assert measured.width == 16 and measured.reason == "measuring the current width"
    # Latency 2.5x for twice the requests: GitHub serves 8 at its own latency, so 9 keep it
    # at 1.35x (16 x 1.35 / 2.5 = 8.6), never below the 8 measured at baseline.
    assert judged.action == "shrink" and judged.width == 9 and "back to 9" in judged.reason


def test_a_doubling_is_measured_by_requests_started_once_the_old_width_s_were_back() -> None:
    """Right after a doubling GitHub's queue is still building: requests started then come
    back at the old latency. Judged on them, slow start doubled 32 to 64, into GitHub's
    secondary limit (the benchmark's latency-triples run met 55 403s that way)."""
    h = harness(max_width=64, start=16)
    h.keep_in_flight(16)
    h.clock.now += TICK
    h.complete(0.1, 60)
    decisions = [h.controller.tick(Backlog(1000, 16))]  # GitHub's own latency: doubles
    changed = h.clock.now
    h.keep_in_flight(32)
    h.clock.now = changed + 0.15
    h.complete(0.1, 60)  # started 0.05 s after the doubling, before the old queue drained
    h.clock.now = changed + TICK
    h.complete(0.35, 4)  # started at 32 with GitHub's queue built up: too few to judge
    decisions.append(h.controller.tick(Backlog(1000, 32)))
    h.clock.now += TICK
    h.complete(0.2, 60)  # the second tick: twice the latency for twice the requests
    decisions.append(h.controller.tick(Backlog(1000, 32)))
    assert widths(decisions) == [32, 32, 21]  # 32 x 1.35 / 2.06: one step back
    assert decisions[1].reason == "measuring the current width"
    assert decisions[2].action == "shrink" and "back to 21" in decisions[2].reason


def test_slow_start_ends_when_requests_in_flight_do_not_follow_a_doubling() -> None:
    """The slots a doubling added wait on the app's own limits (another event's token mint):
    GitHub sees no more requests, so doubling again would only park more slots, which
    would then reach GitHub together."""
    h = harness(max_width=64, start=8)
    decisions = []
    for _ in range(8):
        h.keep_in_flight(8)  # never more than 8 requests, whatever the width
        h.complete(0.1, 40)
        h.clock.now += TICK
        decisions.append(h.controller.tick(Backlog(1000, h.controller.width)))
    assert widths(decisions)[:2] == [16, 16]  # slow start doubles once; the next is measured
    ended = decisions[2]
    assert ended.width == 16 and "slow start ends" in ended.reason
    assert not h.controller.stats().slow_start
    later = decisions[3:]  # then additive growth: 10 % a step
    assert any(d.action == "grow" for d in later)
    assert all(d.width - d.previous <= max(1, round(0.1 * d.previous)) for d in later)


# -- a backend whose events straddle changes ---------------------------------------------------


class SharedBackend:
    """Processor sharing, stepped in small time slices: each event needs ``base`` s (+-10 %) of
    service, and at most ``capacity`` events get it at full speed, the rest share it.

    Unlike ``Backend`` (every event of a tick sees that tick's latency), events started
    before a change of width or of the backend finish after it with a latency from both
    sides, so epochs straddle changes as they do against the real GitHub.
    """

    SLICE = 0.005

    def __init__(self, h: Harness, seed: int = 0) -> None:
        import random

        self.h = h
        self.random = random.Random(seed)
        self.jobs: list[list[float]] = []  # [work left, started]: one request per event

    def run(
        self, seconds: float, base: float, capacity: int, *, lags: tuple[float, ...] = (0.0,)
    ) -> list[Decision]:
        """``lags``: the event loop's lag in a tick is one of these (at random), and each
        answer of the tick waits for the loop up to that long (the app's delay, not
        GitHub's), as on a loaded host."""
        controller, clock = self.h.controller, self.h.clock
        decisions: list[Decision] = []
        next_tick = clock.now + TICK
        end = clock.now + seconds
        lag = 0.0
        while clock.now < end:
            while len(self.jobs) < controller.width:
                self.jobs.append([base * self.random.uniform(0.9, 1.1), clock.now])
                controller.request_started()
            rate = min(1.0, capacity / len(self.jobs))
            clock.now += self.SLICE
            for job in list(self.jobs):
                job[0] -= rate * self.SLICE
                if job[0] <= 0:
                    self.jobs.remove(job)
                    latency = clock.now - job[1] + lag * self.random.random()
                    controller.request_finished(latency)
                    controller.observe(latency, Outcome.OK)
            if clock.now >= next_tick:
                next_tick += TICK
                backlog = Backlog(1000, len(self.jobs))
                decisions.append(controller.tick(backlog, HostLoad(lag=lag)))
                lag = self.random.choice(lags)
        return decisions


def settled_after(decisions: list[Decision], low: float, high: float) -> float:
    """Seconds from the first decision until the width stays within [low, high]."""
    start = decisions[0].at - TICK
    last_out = start
    for decision in decisions:
        if not low <= decision.width <= high:
            last_out = decision.at
    return last_out - start


@pytest.mark.parametrize("seed", range(10))
def test_settles_within_ten_seconds_when_capacity_halves_mid_epoch(seed: int) -> None:
    """The regression: an epoch straddling the change read as "GitHub is slower"."""
    h = harness()
    backend = SharedBackend(h, seed)
    backend.run(40, base=0.15, capacity=16)
    assert 14 <= h.controller.width <= 24
    decisions = backend.run(30, base=0.15, capacity=8)
    assert settled_after(decisions, 8 * 0.75, 8 * 1.5) <= 10
    stats = h.controller.stats()
    assert stats.baseline is not None and stats.baseline <= 0.15 * 1.3  # not moved up


@pytest.mark.parametrize("seed", range(5))
def test_settles_within_ten_seconds_when_latency_triples_mid_epoch(seed: int) -> None:
    h = harness()
    backend = SharedBackend(h, seed)
    backend.run(40, base=0.15, capacity=16)
    decisions = backend.run(30, base=0.45, capacity=16)
    assert any(d.action == "rebaseline" for d in decisions)
    assert settled_after(decisions, 16 * 0.75, 16 * 1.5) <= 10


@pytest.mark.parametrize("seed", range(5))
def test_growth_resumes_as_soon_as_the_restored_width_confirms_github_is_slower(
    seed: int,
) -> None:
    """The probes' cooldown was set by latency that turned out to be GitHub's: after the
    verdict the width grows again at the restored width's first epoch (it waited 3.5 s)."""
    h = harness()
    backend = SharedBackend(h, seed)
    backend.run(40, base=0.15, capacity=16)
    decisions = backend.run(30, base=0.45, capacity=16)
    verdict = next(d for d in decisions if d.action == "rebaseline" and d.width > d.previous)
    grown = next(d for d in decisions if d.at > verdict.at and d.action == "grow")
    assert grown.at - verdict.at <= 2.0


@pytest.mark.parametrize("seed", range(5))
def test_a_steady_backend_does_not_ratchet_the_width_up(seed: int) -> None:
    """Small growth steps give no verdict on gain, so noise cannot move the baseline up."""
    h = harness()
    backend = SharedBackend(h, seed)
    backend.run(20, base=0.15, capacity=16)
    decisions = backend.run(100, base=0.15, capacity=16)
    assert min(widths(decisions)) >= 16 * 0.75 and max(widths(decisions)) <= 16 * 1.5
    assert not any(d.action == "rebaseline" for d in decisions)
    stats = h.controller.stats()
    assert stats.baseline is not None and stats.baseline <= 0.15 * 1.25


# A loaded host's event loop: mostly 5-30 ms late a tick, now and then 60-150 ms.
HOST_LAGS = (0.005, 0.01, 0.01, 0.015, 0.03, 0.03, 0.03, 0.06, 0.12, 0.15)


@pytest.mark.parametrize("seed", range(6))
def test_the_app_s_own_loop_lag_does_not_drag_the_width_below_the_knee(seed: int) -> None:
    """Answers that wait for a busy event loop read 1.2-2x GitHub's latency now and then:
    ticks with lag of half the baseline latency give no verdict, and one fast epoch does
    not pull the baseline to the bottom of the noise (it did: widths 6-12 at a knee of 16)."""
    h = harness(max_width=64, start=4)
    backend = SharedBackend(h, seed)
    decisions = backend.run(60, base=0.15, capacity=16, lags=HOST_LAGS)
    later = widths(decisions[len(decisions) // 2 :])
    assert 16 * 0.9 <= statistics.median(later) <= 16 * 1.5


def test_searches_down_for_the_knee_when_github_gets_faster_at_a_wide_width() -> None:
    """The baseline measured past the new knee is too high; a search down finds the knee."""
    h = harness()
    backend = SharedBackend(h)
    backend.run(40, base=0.15, capacity=16)
    decisions = backend.run(40, base=0.05, capacity=16)
    assert any("knee" in d.reason for d in decisions)
    assert settled_after(decisions, 16 * 0.75, 16 * 1.5) <= 15
    stats = h.controller.stats()
    assert stats.baseline is not None and stats.baseline <= 0.05 * 1.3


def test_a_rebaseline_the_restored_width_contradicts_is_undone() -> None:
    """GitHub-is-slower restores the width; if the restored width queues, that was wrong."""
    h = harness(max_width=20, start=20)
    script = [
        (20, 0.1),  # GitHub's own latency: the baseline
        (20, 0.25),  # 2.5x baseline at 20: brake, one step down
        (16, 0.25),  # skipped (events from the wider width still finish)
        (16, 0.25),  # unchanged at 16 (an epoch spanning GitHub's change): "GitHub slower"
        (20, 0.32),  # skipped
        (20, 0.32),  # the restored width queues: 1.28x the moved baseline
    ]
    actions = []
    for width, latency in script:
        assert h.controller.width == width
        h.keep_in_flight(width)
        h.complete(latency, 40)
        h.clock.now += TICK
        actions.append(h.controller.tick(Backlog(1000, width)).action)
    assert actions == ["hold", "shrink", "hold", "rebaseline", "hold", "shrink"]
    assert h.controller.width == 16
    last = h.controller.stats().last_decision
    assert last is not None and "ours after all" in last.reason
    assert h.controller.stats().baseline == pytest.approx(0.1)


# -- a realistic mix: events make 0, 1 or 3 requests; GitHub sees only the requests ------------


class MixedBackend:
    """Events of many installations against GitHub modelled per request (processor sharing).

    The first event of an installation mints a token, reads the config and writes a label
    (3 requests); a later one writes a label after its installation's write turn (a wait
    of the app's own, off the wire) or makes no request at all. Each request needs
    ``base`` s (+-10 %) of service; at most ``capacity`` requests in flight get it at
    full speed, the rest share it. The controller hears of requests as the transport
    tells it and of events as the runner does.
    """

    SLICE = 0.005

    def __init__(
        self,
        h: Harness,
        *,
        installations: int = 200,
        seed: int = 0,
        mint: float = 1.0,
        kinds: bool = True,
    ) -> None:
        """``mint``: a token mint's service time, in ``base``s (GitHub mints far faster than
        it writes); ``kinds``: the controller is told each request's kind, as the transport
        tells it (False: every request is of one kind)."""
        import random

        self.h = h
        self.work = {"mint": mint, "read": 1.0, "write": 1.0}
        self.kinds = kinds
        self.random = random.Random(seed)
        self.installations = installations
        self.next_event = 0
        self.events: list[dict[str, Any]] = []  # in flight: steps left, started, request
        self.in_flight_samples: list[tuple[float, int]] = []  # (time, requests on the wire)
        self.completed: list[float] = []  # event completion times

    def _steps(self) -> list[tuple[str, float]]:
        n = self.next_event
        self.next_event += 1
        if n < self.installations:
            return [("mint", 0.0), ("read", 0.0), ("write", 0.0)]
        if self.random.random() < 0.5:
            return []
        return [("wait", self.random.uniform(0.2, 1.0)), ("write", 0.0)]

    def run(self, seconds: float, base: float, capacity: int) -> list[Decision]:
        controller, clock = self.h.controller, self.h.clock
        decisions: list[Decision] = []
        next_tick = clock.now + TICK
        end = clock.now + seconds
        while clock.now < end:
            while len(self.events) < controller.width:
                event = {"steps": self._steps(), "started": clock.now, "request": None}
                self.events.append(event)
                self._advance(event)
            on_wire = [e for e in self.events if e["request"] is not None]
            rate = min(1.0, capacity / len(on_wire)) if on_wire else 1.0
            self.in_flight_samples.append((clock.now, len(on_wire)))
            clock.now += self.SLICE
            for event in list(self.events):
                if event["request"] is not None:
                    event["request"][0] -= rate * self.SLICE / base
                    if event["request"][0] <= 0:
                        latency = clock.now - event["request"][1]
                        kind = event["steps"][0][0] if self.kinds else "request"
                        controller.request_finished(latency, kind)
                        event["request"] = None
                        event["steps"].pop(0)
                elif event["steps"] and event["steps"][0][0] == "wait":
                    event["steps"][0] = ("wait", event["steps"][0][1] - self.SLICE)
                    if event["steps"][0][1] <= 0:
                        event["steps"].pop(0)
                self._advance(event)
            if clock.now >= next_tick:
                next_tick += TICK
                decisions.append(controller.tick(Backlog(1000, len(self.events))))
        return decisions

    def _advance(self, event: dict[str, Any]) -> None:
        """Start the event's next request, or finish it when no step is left."""
        controller, clock = self.h.controller, self.h.clock
        if event["request"] is not None:
            return
        if not event["steps"]:
            self.events.remove(event)
            controller.observe(clock.now - event["started"], Outcome.OK)
            self.completed.append(clock.now)
        elif event["steps"][0][0] != "wait":
            work = self.work[event["steps"][0][0]] * self.random.uniform(0.9, 1.1)
            event["request"] = [work, clock.now]
            controller.request_started()

    def mean_in_flight(self, since: float) -> float:
        samples = [n for t, n in self.in_flight_samples if t >= since]
        return sum(samples) / len(samples)


@pytest.mark.parametrize("seed", range(3))
def test_a_mix_of_events_costing_0_1_and_3_requests_at_flat_latency_never_shrinks(
    seed: int,
) -> None:
    """Event latency falls from 3 requests to 1 or none and varies with the app's own write
    turns; GitHub's latency per request stays flat, so the width only grows."""
    h = harness(max_width=64, start=4)
    backend = MixedBackend(h, seed=seed)
    decisions = backend.run(30, base=0.15, capacity=10_000)
    assert not [d for d in decisions if d.width < d.previous]
    assert h.controller.width == 64
    reached = next(d for d in decisions if d.width >= 32)
    assert reached.at - decisions[0].at <= 5  # slow start: 4 to 32 within a few seconds
    stats = h.controller.stats()
    assert stats.baseline is not None and stats.baseline == pytest.approx(0.15, rel=0.1)
    assert stats.event_latency is not None  # kept for the status page, not steered by


@pytest.mark.parametrize("seed", range(3))
def test_a_mix_against_a_knee_of_16_requests_shrinks_to_it_and_stays(seed: int) -> None:
    """Request latency rising with requests in flight is queueing we cause: taken back."""
    h = harness(max_width=64, start=4)
    backend = MixedBackend(h, seed=seed)
    decisions = backend.run(60, base=0.15, capacity=16)
    assert [d for d in decisions if d.action == "shrink" and "latency" in d.reason]
    later = h.clock.now - 30
    assert 16 * 0.8 <= backend.mean_in_flight(later) <= 16 * 1.5
    stats = h.controller.stats()
    assert stats.baseline is not None and stats.baseline <= 0.15 * 1.3


@pytest.mark.parametrize("seed", range(3))
def test_mints_far_faster_than_writes_do_not_read_as_github_slowing_when_the_mix_turns(
    seed: int,
) -> None:
    """Cold events mint (in no time), read and write; warm ones only write. Against one
    baseline for every request the mints pull it down and the warm phase reads as GitHub
    1.5x slower; each kind against its own cost, the latency stays flat."""
    h = harness(max_width=64, start=4)
    backend = MixedBackend(h, seed=seed, mint=0.01)
    decisions = backend.run(30, base=0.15, capacity=10_000)
    assert not [d for d in decisions if d.width < d.previous]
    assert h.controller.width == 64
    assert not [d for d in decisions if "baseline" in d.reason and d.action != "grow"]
    stats = h.controller.stats()
    assert stats.baseline is not None and stats.baseline == pytest.approx(0.15, rel=0.15)


def test_one_fast_answer_before_the_first_epoch_does_not_set_the_baseline() -> None:
    """The app's own GET /app at start-up answers far faster than the requests of events."""
    h = harness(max_width=64, start=4)
    h.controller.request_started()
    h.controller.request_finished(0.001)
    h.clock.now += TICK
    h.controller.tick(Backlog(0, 0))  # before the first delivery: nothing else to measure
    decisions = MixedBackend(h).run(10, base=0.15, capacity=10_000)
    assert not [d for d in decisions if d.width < d.previous]
    stats = h.controller.stats()
    assert stats.baseline is not None and stats.baseline == pytest.approx(0.15, rel=0.1)


def test_slow_start_doubling_past_the_knee_is_taken_back_in_one_step() -> None:
    """Latency doubled and throughput did not grow: GitHub serves 16 requests at its own
    latency, so 32 x 1.35 / 2 = 22 keep it a little past the knee (1.35x baseline, the
    middle of the band where the width holds): one step back, then held there."""
    h = harness(max_width=64, start=4)
    decisions = h.run(Backend(base=0.1, capacity=16), ticks=20)
    assert max(widths(decisions)) == 32  # 4, 8, 16: at baseline; 32: twice the latency
    first_shrink = next(d for d in decisions if d.action == "shrink")
    assert first_shrink.previous == 32 and first_shrink.width == 22
    assert "back to 22" in first_shrink.reason
    after = decisions[decisions.index(first_shrink) + 1 :]
    assert set(widths(after)) == {22}  # 1.38x baseline: inside the band, held


def test_a_phase_of_events_making_few_requests_starts_no_step_down_from_the_few_busy() -> None:
    """Events no rule matches make no request: few events are busy at a tick and GitHub sees
    a few requests, whose latency may look raised. A step down from the few busy (and a
    knee search on from there) took a width of 19 to 4 in the mixed benchmark; GitHub,
    nearly idle, says nothing about the width then."""
    h = harness(max_width=20, start=20)
    script = [
        (20, 0.1),  # GitHub's own latency: the baseline
        (20, 0.25),  # 2.5x baseline at 20: the brake steps down...
        (16, 0.05),  # (skipped)
        (16, 0.05),  # ...and GitHub is faster at 16: the baseline falls, a knee search is due
    ]
    for width, latency in script:
        assert h.controller.width == width
        h.keep_in_flight(width)
        h.complete(latency, 40)
        h.clock.now += TICK
        h.controller.tick(Backlog(1000, width))
    quiet = []
    for _ in range(8):  # 5 of 16 events busy, 3 requests on the wire, latency raised
        h.keep_in_flight(3)
        h.complete(0.15, 10)
        h.clock.now += TICK
        quiet.append(h.controller.tick(Backlog(1000, 5)))
    assert widths(quiet) == [16] * 8
    assert any("GitHub nearly idle" in d.reason for d in quiet)
    for _ in range(30):  # the writes are back at GitHub's own latency: the width grows
        h.keep_in_flight(h.controller.width)
        h.complete(0.07, 40)
        h.clock.now += TICK
        h.controller.tick(Backlog(1000, h.controller.width))
    assert h.controller.width == 20
