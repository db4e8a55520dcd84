"""Unit tests for github_app.queue.MemoryQueue: order, lanes, bounds, admission, stats."""

from __future__ import annotations

import pytest

from github_app.envelope import Envelope
from github_app.priority import Priority
from github_app.queue import MemoryQueue, QueuedEvent
from tests.helpers_unit import envelope


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_queue(max_events: int = 100, max_bytes: int = 1_000_000) -> MemoryQueue:
    return MemoryQueue(max_events, max_bytes, clock=FakeClock())


def loose(delivery_id: str, size: int = 10) -> Envelope:
    """An event about no issue (a star, a push): it has no lane."""
    return envelope(
        delivery_id, event="star", action="created", issue_number=None, payload=b"s" * size
    )


def about_issue(delivery_id: str, number: int, repository: str = "octo/repo") -> Envelope:
    return envelope(delivery_id, repository=repository, issue_number=number)


def take(queue: MemoryQueue) -> QueuedEvent:
    item = queue.take()
    assert item is not None
    return item


def drain_ids(queue: MemoryQueue) -> list[str]:
    """Take and finish everything eligible, in order."""
    taken = []
    while (item := queue.take()) is not None:
        taken.append(item.envelope.delivery_id)
        queue.done(item)
    return taken


# --- order ----------------------------------------------------------------------------------


def test_take_on_an_empty_queue_returns_none() -> None:
    queue = make_queue()
    assert queue.take() is None
    assert len(queue) == 0


def test_takes_critical_then_high_then_low_whatever_the_offer_order() -> None:
    queue = make_queue()
    assert queue.offer(loose("low"), Priority.LOW).admitted
    assert queue.offer(loose("high"), Priority.HIGH).admitted
    assert queue.offer(loose("critical"), Priority.CRITICAL).admitted
    taken = [take(queue) for _ in range(3)]
    assert [t.envelope.delivery_id for t in taken] == ["critical", "high", "low"]
    assert [t.priority for t in taken] == [Priority.CRITICAL, Priority.HIGH, Priority.LOW]
    assert queue.take() is None


def test_events_of_one_level_come_out_in_arrival_order() -> None:
    queue = make_queue()
    ids = [f"n{i}" for i in range(20)]
    for delivery in ids:
        queue.offer(loose(delivery), Priority.NORMAL)
    assert [take(queue).envelope.delivery_id for _ in ids] == ids


def test_arrival_order_within_a_level_survives_interleaving_with_other_levels() -> None:
    queue = make_queue()
    queue.offer(loose("low-1"), Priority.LOW)
    queue.offer(loose("high-1"), Priority.HIGH)
    queue.offer(loose("low-2"), Priority.LOW)
    queue.offer(loose("high-2"), Priority.HIGH)
    assert drain_ids(queue) == ["high-1", "high-2", "low-1", "low-2"]


def test_enqueued_at_comes_from_the_injected_clock() -> None:
    clock = FakeClock(42.5)
    queue = MemoryQueue(10, 10_000, clock=clock)
    queue.offer(loose("a"), Priority.LOW)
    clock.now = 99.0
    queue.offer(loose("b"), Priority.LOW)
    assert take(queue).enqueued_at == 42.5
    assert take(queue).enqueued_at == 99.0


# --- per-issue lanes ------------------------------------------------------------------------


def test_second_event_of_an_issue_waits_until_the_first_is_done_even_if_more_urgent() -> None:
    queue = make_queue()
    queue.offer(about_issue("first", 7), Priority.LOW)
    queue.offer(about_issue("second", 7), Priority.CRITICAL)
    first = take(queue)
    assert first.envelope.delivery_id == "first"
    assert queue.take() is None
    assert len(queue) == 1
    queue.done(first)
    second = take(queue)
    assert second.envelope.delivery_id == "second"
    assert second.priority is Priority.CRITICAL


def test_lane_head_blocks_a_later_urgent_event_of_the_same_issue_before_anything_is_taken() -> None:
    queue = make_queue()
    queue.offer(about_issue("edit", 3), Priority.NORMAL)
    queue.offer(about_issue("comment", 3), Priority.HIGH)
    queue.offer(loose("star"), Priority.LOW)
    # the HIGH comment must not overtake the NORMAL edit of its own issue
    assert take(queue).envelope.delivery_id == "edit"


def test_other_issues_are_takeable_while_one_issue_is_in_flight() -> None:
    queue = make_queue()
    queue.offer(about_issue("issue1-a", 1), Priority.HIGH)
    queue.offer(about_issue("issue1-b", 1), Priority.HIGH)
    queue.offer(about_issue("issue2-a", 2), Priority.LOW)
    queue.offer(about_issue("other-repo-issue1", 1, repository="octo/other"), Priority.LOW)
    queue.offer(loose("star"), Priority.LOW)
    first = take(queue)
    assert first.envelope.delivery_id == "issue1-a"
    meanwhile = [take(queue).envelope.delivery_id for _ in range(3)]
    assert meanwhile == ["issue2-a", "other-repo-issue1", "star"]
    assert queue.take() is None
    queue.done(first)
    assert take(queue).envelope.delivery_id == "issue1-b"


def test_event_offered_while_its_issue_is_in_flight_waits_for_done() -> None:
    queue = make_queue()
    queue.offer(about_issue("a", 5), Priority.NORMAL)
    in_flight = take(queue)
    queue.offer(about_issue("b", 5), Priority.CRITICAL)
    assert queue.take() is None
    queue.done(in_flight)
    assert take(queue).envelope.delivery_id == "b"


def test_three_events_of_one_issue_run_one_at_a_time_in_arrival_order() -> None:
    queue = make_queue()
    for delivery, priority in (("x", Priority.LOW), ("y", Priority.CRITICAL), ("z", Priority.HIGH)):
        queue.offer(about_issue(delivery, 9), priority)
    order = []
    while (item := queue.take()) is not None:
        assert queue.take() is None  # never two of the same issue at once
        order.append(item.envelope.delivery_id)
        queue.done(item)
    assert order == ["x", "y", "z"]
    assert len(queue) == 0


# --- bounds and admission -------------------------------------------------------------------


def test_critical_may_fill_the_queue_to_its_event_bound_and_no_further() -> None:
    queue = make_queue(max_events=4)
    for i in range(4):
        assert queue.offer(loose(f"c{i}"), Priority.CRITICAL).admitted
    refusal = queue.offer(loose("c-extra"), Priority.CRITICAL)
    assert not refusal.admitted
    assert "events" in refusal.reason
    assert len(queue) == 4


def test_byte_bound_refuses_an_event_that_would_not_fit() -> None:
    queue = make_queue(max_events=100, max_bytes=100)
    assert queue.offer(loose("a", size=60), Priority.CRITICAL).admitted
    refusal = queue.offer(loose("b", size=50), Priority.CRITICAL)
    assert not refusal.admitted
    assert "bytes" in refusal.reason
    assert queue.offer(loose("c", size=40), Priority.CRITICAL).admitted
    assert queue.stats().bytes == 100


def test_low_is_refused_while_critical_is_still_admitted_when_partly_full() -> None:
    queue = make_queue(max_events=10)
    for i in range(5):  # LOW may fill up to half of 10
        assert queue.offer(loose(f"low{i}"), Priority.LOW).admitted
    refusal = queue.offer(loose("low-extra"), Priority.LOW)
    assert not refusal.admitted
    assert refusal.retry_after > 0
    assert "LOW" in refusal.reason
    assert queue.accepts(Priority.LOW) is False
    assert queue.accepts(Priority.CRITICAL) is True
    assert queue.offer(loose("critical"), Priority.CRITICAL).admitted
    assert queue.offer(loose("high"), Priority.HIGH).admitted


def test_each_level_has_its_own_fill_threshold() -> None:
    queue = make_queue(max_events=10)
    for i in range(7):
        assert queue.offer(loose(f"n{i}"), Priority.NORMAL).admitted
    assert not queue.offer(loose("n-extra"), Priority.NORMAL).admitted
    assert queue.offer(loose("h0"), Priority.HIGH).admitted
    assert queue.offer(loose("h1"), Priority.HIGH).admitted
    assert not queue.offer(loose("h-extra"), Priority.HIGH).admitted
    assert queue.offer(loose("c0"), Priority.CRITICAL).admitted
    assert not queue.offer(loose("c-extra"), Priority.CRITICAL).admitted
    assert len(queue) == 10


def test_byte_fill_thresholds_refuse_low_first() -> None:
    queue = make_queue(max_events=1000, max_bytes=1000)
    assert queue.offer(loose("a", size=400), Priority.NORMAL).admitted
    refusal = queue.offer(loose("low", size=200), Priority.LOW)  # 600 > 50% of 1000
    assert not refusal.admitted
    assert "bytes" in refusal.reason
    assert refusal.retry_after > 0
    assert queue.offer(loose("crit", size=200), Priority.CRITICAL).admitted


def test_custom_fill_limits_and_retry_after_are_honoured() -> None:
    queue = MemoryQueue(
        4,
        10_000,
        clock=FakeClock(),
        fill_limits={
            Priority.CRITICAL: 1.0,
            Priority.HIGH: 1.0,
            Priority.NORMAL: 1.0,
            Priority.LOW: 0.25,
        },
        retry_after=7,
    )
    assert queue.offer(loose("a"), Priority.LOW).admitted
    refusal = queue.offer(loose("b"), Priority.LOW)
    assert not refusal.admitted
    assert refusal.retry_after == 7


def test_admitted_events_are_never_evicted_by_refused_or_more_urgent_offers() -> None:
    queue = make_queue(max_events=4)
    for i in range(2):
        assert queue.offer(loose(f"low{i}"), Priority.LOW).admitted
    for i in range(2):
        assert queue.offer(loose(f"crit{i}"), Priority.CRITICAL).admitted
    for i in range(5):
        assert not queue.offer(loose(f"more{i}"), Priority.CRITICAL).admitted
        assert not queue.offer(loose(f"lower{i}"), Priority.LOW).admitted
    assert len(queue) == 4
    assert drain_ids(queue) == ["crit0", "crit1", "low0", "low1"]


def test_an_event_in_flight_keeps_its_room_until_it_is_done() -> None:
    # A retried event must always find its place again, so taking frees nothing yet.
    queue = make_queue(max_events=2)
    queue.offer(loose("a"), Priority.CRITICAL)
    queue.offer(loose("b"), Priority.CRITICAL)
    assert not queue.offer(loose("c"), Priority.CRITICAL).admitted
    item = take(queue)
    assert not queue.offer(loose("c"), Priority.CRITICAL).admitted
    queue.done(item)
    assert queue.offer(loose("c"), Priority.CRITICAL).admitted


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        MemoryQueue(0, 100)
    with pytest.raises(ValueError, match="positive"):
        MemoryQueue(100, 0)


# --- stats and len --------------------------------------------------------------------------


def test_stats_count_depth_bytes_in_flight_and_refusals_per_level() -> None:
    queue = make_queue(max_events=4)
    queue.offer(loose("a", size=11), Priority.LOW)
    queue.offer(loose("b", size=13), Priority.LOW)
    queue.offer(loose("c", size=17), Priority.HIGH)
    assert not queue.offer(loose("d"), Priority.LOW).admitted
    assert not queue.offer(loose("e"), Priority.LOW).admitted
    assert not queue.offer(loose("f"), Priority.NORMAL).admitted

    stats = queue.stats()
    assert (stats.depth, stats.bytes, stats.in_flight) == (3, 41, 0)
    assert stats.admitted == 3
    assert stats.taken == 0
    assert stats.refused_by_priority == {"CRITICAL": 0, "HIGH": 0, "NORMAL": 1, "LOW": 2}
    assert stats.depth_by_priority == {"CRITICAL": 0, "HIGH": 1, "NORMAL": 0, "LOW": 2}
    assert stats.bytes_by_priority == {"CRITICAL": 0, "HIGH": 17, "NORMAL": 0, "LOW": 24}

    item = take(queue)
    assert item.envelope.delivery_id == "c"
    stats = queue.stats()
    assert (stats.depth, stats.bytes, stats.in_flight, stats.taken) == (2, 24, 1, 1)
    assert stats.depth_by_priority["HIGH"] == 0
    assert stats.bytes_by_priority["HIGH"] == 0

    queue.done(item)
    assert queue.stats().in_flight == 0


def test_len_counts_waiting_events_not_those_in_flight() -> None:
    queue = make_queue()
    queue.offer(about_issue("a", 1), Priority.HIGH)
    queue.offer(about_issue("b", 1), Priority.HIGH)
    queue.offer(loose("c"), Priority.LOW)
    assert len(queue) == 3
    item = take(queue)
    assert len(queue) == 2
    assert queue.take() is not None  # the loose one
    assert len(queue) == 1  # b waits in its lane and still counts
    queue.done(item)
    assert len(queue) == 1
    take(queue)
    assert len(queue) == 0
