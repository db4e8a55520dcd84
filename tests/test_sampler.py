"""From the parts' counters to history samples: rates, percentiles, activity, marks (no I/O)."""

from __future__ import annotations

import anyio
import pytest

from github_app.admin.history import History
from github_app.admin.sampler import (
    SERIES,
    InstallationActivity,
    Reading,
    Sampler,
    quantile,
    reading_from,
    sample_between,
)
from github_app.control.controller import Decision
from github_app.dispatch.runner import ProcessorStats
from github_app.github.ratelimit import GatewayStats, InstallationStats
from github_app.intake.route import IntakeStats
from github_app.queue.memory import QueueStats
from tests.conftest import wait_for

BOUNDS = (0.01, 0.1, 1.0)


def reading(**changes: object) -> Reading:
    base: dict[str, object] = {
        "depth": {"CRITICAL": 0, "HIGH": 1, "NORMAL": 5, "LOW": 0},
        "in_flight": 2,
        "oldest_wait": 3.5,
        "width": 4,
        "budget_left": 4900,
        "counters": {"received": 100, "admitted": 90, "processed": 50, "github_ok": 200},
        "secondary_limits": 1,
        "latency_bounds": BOUNDS,
        "latency_counts": (0, 0, 0, 0),
    }
    return Reading(**(base | changes))  # type: ignore[arg-type]


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    # 10 below 10 ms, 10 between 10 and 100 ms: the median is the 10 ms bound.
    assert quantile(0.5, BOUNDS, (10, 20, 20, 20)) == pytest.approx(0.01)
    assert quantile(0.75, BOUNDS, (10, 20, 20, 20)) == pytest.approx(0.055)
    assert quantile(0.25, BOUNDS, (10, 20, 20, 20)) == pytest.approx(0.005)
    assert quantile(0.99, BOUNDS, (0, 0, 0, 5)) == 1.0  # in the open bucket: the highest bound
    assert quantile(0.5, BOUNDS, (0, 0, 0, 0)) is None
    assert quantile(0.5, BOUNDS, ()) is None


def test_a_sample_turns_counters_into_rates_and_keeps_the_gauges() -> None:
    before = reading()
    after = reading(
        counters={"received": 120, "admitted": 100, "processed": 80, "github_ok": 204},
        depth={"CRITICAL": 0, "HIGH": 0, "NORMAL": 9, "LOW": 2},
        secondary_limits=3,
    )
    sample = sample_between(before, after, 2.0)
    assert set(sample) == set(SERIES)
    assert sample["received_per_s"] == 10.0
    assert sample["admitted_per_s"] == 5.0
    assert sample["processed_per_s"] == 15.0
    assert sample["github_ok_per_s"] == 2.0
    assert sample["refused_per_s"] == 0.0  # no such counter yet: nothing happened
    assert (sample["depth_normal"], sample["depth_low"], sample["depth_high"]) == (9, 2, 0)
    assert (sample["width"], sample["in_flight"], sample["oldest_wait"]) == (4, 2, 3.5)
    assert sample["secondary_limits"] == 2  # a count over the interval, not a rate
    assert sample["budget_left"] == 4900


def test_a_counter_that_went_down_counts_as_no_change_never_a_negative_rate() -> None:
    before = reading(counters={"github_ok": 500}, secondary_limits=4)
    after = reading(counters={"github_ok": 20}, secondary_limits=0)  # an installation forgotten
    sample = sample_between(before, after, 2.0)
    assert sample["github_ok_per_s"] == 0.0
    assert sample["secondary_limits"] == 0


def test_percentiles_are_of_the_events_finished_between_two_readings() -> None:
    # Long ago: 1000 slow calls (in the open bucket). In between: 100 fast ones only.
    before = reading(latency_counts=(0, 0, 0, 1000))
    after = reading(latency_counts=(100, 100, 100, 1100))
    sample = sample_between(before, after, 2.0)
    assert sample["latency_p50"] == pytest.approx(0.005)
    assert sample["latency_p99"] == pytest.approx(0.0099)
    idle = sample_between(after, after, 2.0)
    assert idle["latency_p50"] is None and idle["latency_p99"] is None


def test_installation_activity_sums_the_last_window_of_increments() -> None:
    activity = InstallationActivity(window=3)
    activity.add({1: (10, 2), 2: (5, 0)})  # counts from before: the first increments
    activity.add({1: (14, 3), 2: (5, 0)})
    activity.add({1: (14, 3), 2: (8, 1), 3: (1, 0)})
    assert activity.last_minute() == {1: (14, 3), 2: (8, 1), 3: (1, 0)}
    activity.add({1: (15, 3), 2: (8, 1), 3: (1, 0)})  # the first add leaves the window
    assert activity.last_minute() == {1: (5, 1), 2: (3, 1), 3: (1, 0)}
    activity.add({1: (2, 0)})  # forgotten and back: no negative counts
    assert activity.last_minute() == {1: (1, 0), 2: (3, 1), 3: (1, 0)}


def test_the_sampler_records_from_its_second_reading_on_with_the_measured_interval() -> None:
    ticks = Ticks()
    readings = iter(
        [
            reading(counters={"processed": 0}),
            reading(counters={"processed": 8}, installations={7: (3, 1)}),
            reading(counters={"processed": 10}, installations={7: (5, 2)}),
        ]
    )
    history = History(SERIES, 10, clock=lambda: 5.0)
    sampler = Sampler(history, lambda: next(readings), interval=2.0, monotonic=ticks)
    sampler.step()
    assert history.next_seq == 0
    ticks.now = 4.0  # late: the rate is over the time that really passed
    sampler.step()
    ticks.now = 6.0
    sampler.step()
    assert history.window()["series"]["processed_per_s"] == [2, 1]
    document = sampler.document(start=None)
    assert document["interval"] == 2.0
    assert document["installations_last_minute"] == {"7": {"requests": 5, "writes": 2}}


def test_width_changes_become_marks_with_their_reason_and_holds_do_not() -> None:
    history = History(SERIES, 10)
    sampler = Sampler(history, reading)
    sampler.decided(Decision(1.0, 4, 4, "hold", "measuring the current width"))
    sampler.decided(Decision(2.0, 8, 4, "grow", "throughput rose 30% at width 4"))
    sampler.decided(Decision(3.0, 2, 8, "backoff", "secondary rate limit"))
    history.record({})
    marks = history.window()["marks"]
    assert [(m["label"], m["reason"]) for m in marks] == [
        ("grow 4 \u2192 8", "throughput rose 30% at width 4"),
        ("backoff 8 \u2192 2", "secondary rate limit"),
    ]


@pytest.mark.anyio
async def test_the_sampling_task_loses_a_failing_reading_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    readings = iter([reading(), RuntimeError("stats broke"), reading(), reading()])

    def read() -> Reading:
        value = next(readings, reading())
        if isinstance(value, Exception):
            raise value
        return value

    history = History(SERIES, 10)
    sampler = Sampler(history, read, interval=0.01)
    async with anyio.create_task_group() as group:
        group.start_soon(sampler.run)
        await wait_for(lambda: history.next_seq >= 2, what="two samples")
        group.cancel_scope.cancel()
    assert "dashboard history: this sample is lost" in caplog.text
    assert "stats broke" in caplog.text


def test_the_sampling_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Sampler(History(SERIES, 10), reading, interval=0)


def test_a_reading_from_the_parts_stats() -> None:
    installation = InstallationStats(
        7, calls={"GET": 10, "POST": 3, "PATCH": 1}, remaining=4100, not_modified=2
    )
    other = InstallationStats(8, calls={"GET": 1}, remaining=None, secondary_limit_hits=1)
    github = GatewayStats(
        total=InstallationStats(
            None, calls={"GET": 11, "POST": 3, "PATCH": 1}, not_modified=2, secondary_limit_hits=1
        ),
        installations={7: installation, 8: other},
        app=InstallationStats(None),
    )
    queue = QueueStats(
        depth=3,
        bytes=300,
        in_flight=1,
        depth_by_priority={"CRITICAL": 0, "HIGH": 1, "NORMAL": 2, "LOW": 0},
        admitted=9,
        refused_by_priority={"CRITICAL": 0, "HIGH": 0, "NORMAL": 2, "LOW": 3},
        dead_lettered_by_reason={"exhausted": 1, "expired": 1},
        oldest_wait=12.5,
    )
    runner = ProcessorStats(events_ok=4, events_failed=1)
    result = reading_from(
        queue=queue,
        intake=IntakeStats(received=14),
        runner=runner,
        width=6,
        github=github,
        latency=(BOUNDS, (1, 2, 3, 3)),
    )
    assert result.counters == {
        "received": 14,
        "admitted": 9,
        "processed": 5,
        "failed": 1,
        "refused": 5,
        "dead_lettered": 2,
        "github_ok": 12,
        "github_not_modified": 2,
        "github_limited": 1,
    }
    assert (result.width, result.in_flight, result.oldest_wait) == (6, 1, 12.5)
    assert result.budget_left == 4100  # the lowest known; 8 has told us nothing yet
    assert result.installations == {7: (14, 4), 8: (1, 0)}
    assert result.secondary_limits == 1
    assert result.latency_counts == (1, 2, 3, 3)
