"""Unit tests for github_app.queue.memory.MemoryQueue: order, lanes, bounds, admission, stats."""

from __future__ import annotations

import pytest

from github_app.envelope import Envelope
from github_app.queue.event import QueuedEvent
from github_app.queue.memory import MemoryQueue
from github_app.queue.priority import Priority
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


def test_stats_tell_the_oldest_wait_and_the_waiting_events_per_installation() -> None:
    clock = FakeClock(100.0)
    queue = MemoryQueue(10, 10_000, clock=clock)
    assert queue.stats().oldest_wait is None
    queue.offer(envelope("a", installation_id=1, issue_number=1), Priority.NORMAL)
    clock.now = 110.0
    queue.offer(envelope("b", installation_id=2, issue_number=2), Priority.HIGH)
    queue.offer(envelope("c", installation_id=2, issue_number=3), Priority.LOW)
    clock.now = 130.0
    stats = queue.stats()
    assert stats.oldest_wait == 30.0
    assert stats.waiting_by_installation == {1: 1, 2: 2}
    queue.retry(take(queue), not_before=200.0, error="502")  # b: back in line, still waiting
    clock.now = 140.0
    queue.done(take(queue))  # a (c is LOW)
    stats = queue.stats()
    assert stats.oldest_wait == 30.0  # b has waited since 110 (its retry does not reset that)
    assert stats.waiting_by_installation == {2: 2}


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


def test_the_queue_remembers_admitted_deliveries_and_forgets_refused_and_failed_ones() -> None:
    queue = make_queue(max_events=2)
    assert queue.offer(loose("ok"), Priority.CRITICAL).admitted
    assert queue.offer(loose("bad"), Priority.CRITICAL).admitted
    assert not queue.offer(loose("refused"), Priority.CRITICAL).admitted
    assert (queue.knows("ok"), queue.knows("bad"), queue.knows("refused")) == (True, True, False)
    first, second = take(queue), take(queue)
    queue.done(first)
    queue.done(second, failed=True)  # a processor failed for good: GitHub may redeliver it
    assert (queue.knows("ok"), queue.knows("bad")) == (True, False)
    assert queue.stats().processed == 2


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


# --- round-robin across installations -------------------------------------------------------


def from_installation(delivery_id: str, installation: int, number: int | None = None) -> Envelope:
    return envelope(
        delivery_id,
        installation_id=installation,
        repository=f"org{installation}/repo",
        issue_number=number,
        payload=b"p" * 10,
    )


def test_a_burst_from_one_installation_delays_another_installations_event_by_one_dequeue() -> None:
    queue = make_queue(max_events=2000)
    for i in range(1000):
        assert queue.offer(from_installation(f"big{i}", 1, number=i), Priority.NORMAL).admitted
    assert queue.offer(from_installation("small", 2, number=1), Priority.NORMAL).admitted
    taken = [take(queue).envelope.delivery_id for _ in range(3)]
    assert "small" in taken[:2]
    assert taken[0] == "big0"  # the burst arrived first and keeps its own order


def test_installations_take_turns_within_a_level_and_keep_their_own_order() -> None:
    queue = make_queue()
    for i in range(3):
        queue.offer(from_installation(f"a{i}", 1), Priority.HIGH)
    for i in range(2):
        queue.offer(from_installation(f"b{i}", 2), Priority.HIGH)
    queue.offer(from_installation("c0", 3), Priority.HIGH)
    assert drain_ids(queue) == ["a0", "b0", "c0", "a1", "b1", "a2"]


def test_round_robin_does_not_cross_levels() -> None:
    queue = make_queue()
    queue.offer(from_installation("a-low", 1), Priority.LOW)
    queue.offer(from_installation("b-high-0", 2), Priority.HIGH)
    queue.offer(from_installation("b-high-1", 2), Priority.HIGH)
    assert drain_ids(queue) == ["b-high-0", "b-high-1", "a-low"]


# --- ageing ---------------------------------------------------------------------------------


def test_a_low_event_waiting_longer_than_the_ageing_bound_is_served_before_high_ones() -> None:
    clock = FakeClock()
    queue = MemoryQueue(1000, 10**6, clock=clock, ageing=30.0)
    queue.offer(loose("old-low"), Priority.LOW)
    for i in range(10):
        queue.offer(loose(f"high{i}"), Priority.HIGH)
    clock.now += 29.0
    assert take(queue).envelope.delivery_id == "high0"  # not overdue yet: strict priority
    clock.now += 2.0
    assert take(queue).envelope.delivery_id == "old-low"
    assert queue.stats().aged == 1
    assert take(queue).envelope.delivery_id == "high1"


def test_under_a_steady_stream_of_high_events_low_is_served_within_the_ageing_bound() -> None:
    clock = FakeClock()
    queue = MemoryQueue(10_000, 10**7, clock=clock, ageing=10.0)
    queue.offer(loose("low"), Priority.LOW)
    served_at = None
    for tick in range(100):  # each second: two HIGH arrive, one event is served
        queue.offer(loose(f"h{tick}a"), Priority.HIGH)
        queue.offer(loose(f"h{tick}b"), Priority.HIGH)
        item = take(queue)
        queue.done(item)
        if item.envelope.delivery_id == "low":
            served_at = clock.now - 1000.0
            break
        clock.now += 1.0
    assert served_at is not None
    assert 10.0 < served_at <= 11.0


def test_the_most_overdue_level_is_aged_first() -> None:
    clock = FakeClock()
    queue = MemoryQueue(1000, 10**6, clock=clock, ageing=5.0)
    queue.offer(loose("low"), Priority.LOW)
    clock.now += 3.0
    queue.offer(loose("normal"), Priority.NORMAL)
    queue.offer(loose("critical"), Priority.CRITICAL)
    clock.now += 10.0  # low waited 13 s, normal 10 s: both overdue, low more so
    assert drain_ids(queue) == ["low", "normal", "critical"]


def test_ageing_sees_the_oldest_ready_event_behind_one_that_left_and_came_back() -> None:
    clock = FakeClock()
    queue = MemoryQueue(1000, 10**6, clock=clock, ageing=30.0)
    queue.offer(loose("a"), Priority.LOW)
    queue.offer(loose("b"), Priority.LOW)
    item = take(queue)  # a: taken, back in 20 s; b stays ready since the start
    clock.now += 20.0
    queue.retry(item, clock.now, "GitHub answered 502")
    queue.offer(loose("h"), Priority.HIGH)
    clock.now += 11.0  # b ready for 31 s: overdue, though a came back only 11 s ago
    assert drain_ids(queue) == ["a", "b", "h"]


def test_a_lane_of_one_event_grows_and_shrinks_back_with_its_issue() -> None:
    clock = FakeClock()
    queue = MemoryQueue(100, 10**6, clock=clock)
    queue.offer(about_issue("first", 7), Priority.NORMAL)
    first = take(queue)
    queue.offer(about_issue("second", 7), Priority.NORMAL)
    queue.retry(first, clock.now, "timeout")  # back before "second"
    queue.offer(about_issue("third", 7), Priority.NORMAL)
    order = []
    while (item := queue.take()) is not None:
        order.append(item.envelope.delivery_id)
        assert queue.take() is None  # one event of the issue at a time
        queue.done(item)
    assert order == ["first", "second", "third"]
    assert len(queue) == 0


# --- retries, deferral and per-issue order --------------------------------------------------


def test_a_retried_event_waits_for_its_not_before_time_then_comes_back() -> None:
    clock = FakeClock()
    queue = MemoryQueue(100, 10**6, clock=clock)
    queue.offer(loose("a"), Priority.HIGH)
    item = take(queue)
    queue.retry(item, clock.now + 5.0, "GitHub answered 502")
    assert len(queue) == 1
    assert queue.take() is None
    assert queue.next_due_in() == 5.0
    assert queue.stats().delayed == 1
    clock.now += 5.0
    again = take(queue)
    assert again is item
    assert again.attempts == 2
    assert again.last_error == "GitHub answered 502"
    queue.done(again)
    stats = queue.stats()
    assert (stats.retried, stats.processed, stats.depth, stats.delayed) == (1, 1, 0, 0)
    assert queue.next_due_in() is None


def test_a_retried_event_keeps_its_place_before_later_events_of_its_issue() -> None:
    clock = FakeClock()
    queue = MemoryQueue(100, 10**6, clock=clock)
    queue.offer(about_issue("first", 4), Priority.NORMAL)
    queue.offer(about_issue("second", 4), Priority.HIGH)
    queue.offer(about_issue("other", 5), Priority.LOW)
    first = take(queue)
    assert first.envelope.delivery_id == "first"
    queue.retry(first, clock.now + 10.0, "timeout")
    # the issue's later event must not overtake the retried one; other issues go on
    assert take(queue).envelope.delivery_id == "other"
    assert queue.take() is None
    clock.now += 10.0
    again = take(queue)
    assert again.envelope.delivery_id == "first"
    assert queue.take() is None  # never two events of one issue at once
    queue.done(again)
    assert take(queue).envelope.delivery_id == "second"


def test_a_retried_event_is_served_before_younger_events_of_its_level() -> None:
    clock = FakeClock()
    queue = MemoryQueue(100, 10**6, clock=clock)
    queue.offer(loose("old"), Priority.NORMAL)
    item = take(queue)
    queue.offer(loose("young"), Priority.NORMAL)
    queue.retry(item, clock.now, "502")
    assert drain_ids(queue) == ["old", "young"]


def test_deferral_puts_the_event_back_without_counting_an_attempt() -> None:
    clock = FakeClock()
    queue = MemoryQueue(100, 10**6, clock=clock)
    queue.offer(about_issue("a", 1), Priority.HIGH)
    queue.offer(about_issue("b", 1), Priority.HIGH)
    item = take(queue)
    assert item.attempts == 1
    queue.defer(item, clock.now + 60.0)
    assert item.attempts == 0
    assert queue.take() is None  # "b" stays behind the deferred "a"
    clock.now += 60.0
    assert take(queue) is item
    assert item.attempts == 1
    assert queue.stats().deferred == 1
    assert queue.stats().retried == 0


def test_settling_an_event_twice_is_an_error() -> None:
    queue = make_queue()
    queue.offer(loose("a"), Priority.LOW)
    item = take(queue)
    queue.done(item)
    with pytest.raises(ValueError, match="not in flight"):
        queue.done(item)
    with pytest.raises(ValueError, match="not in flight"):
        queue.retry(item, 0.0, "x")


# --- TTL ------------------------------------------------------------------------------------


def ttl_queue(clock: FakeClock, **kwargs: object) -> MemoryQueue:
    ttl = {Priority.CRITICAL: 100.0, Priority.HIGH: 50.0, Priority.NORMAL: 50.0, Priority.LOW: 10.0}
    return MemoryQueue(100, 10**6, clock=clock, ttl=ttl, ageing=1000.0, **kwargs)  # type: ignore[arg-type]


def test_an_event_older_than_its_levels_ttl_at_the_front_goes_to_the_dlq_as_expired() -> None:
    clock = FakeClock()
    queue = ttl_queue(clock)
    queue.offer(about_issue("stale-low", 1), Priority.LOW)
    queue.offer(about_issue("fresh-high", 2), Priority.HIGH)
    assert queue.knows("stale-low") and queue.knows("fresh-high")
    clock.now += 11.0
    assert take(queue).envelope.delivery_id == "fresh-high"
    assert queue.take() is None  # the LOW one expired on its way out
    stats = queue.stats()
    assert stats.expired == 1
    assert stats.depth == 0
    [entry] = queue.list_dead_letters()
    assert (entry.delivery_id, entry.reason, entry.priority) == ("stale-low", "expired", "LOW")
    assert not queue.knows("stale-low")  # given up: GitHub's redelivery is accepted again
    assert queue.knows("fresh-high")


def test_an_expired_event_lets_the_next_event_of_its_issue_through() -> None:
    clock = FakeClock()
    queue = ttl_queue(clock)
    queue.offer(about_issue("old", 3), Priority.LOW)
    clock.now += 11.0
    queue.offer(about_issue("new", 3), Priority.LOW)
    assert take(queue).envelope.delivery_id == "new"
    assert [e.delivery_id for e in queue.list_dead_letters(reason="expired")] == ["old"]


def test_ttl_counts_from_admission_not_from_the_last_retry() -> None:
    clock = FakeClock()
    queue = ttl_queue(clock)
    queue.offer(loose("a"), Priority.HIGH)
    item = take(queue)
    clock.now += 40.0
    queue.retry(item, clock.now + 20.0, "GitHub answered 503")
    clock.now += 20.0
    assert queue.take() is None
    [entry] = queue.list_dead_letters()
    assert entry.reason == "expired"
    assert entry.last_error == "older than the HIGH TTL"
    assert entry.attempts == 1


# --- dead letters ---------------------------------------------------------------------------


def test_dead_letter_records_why_with_the_events_details() -> None:
    from github_app.queue.dead_letters import DeadLetterQueue

    dlq = DeadLetterQueue(10, clock=lambda: 1234.5)
    queue = MemoryQueue(100, 10**6, clock=FakeClock(), dead_letters=dlq)
    queue.offer(about_issue("a", 8, repository="octo/x"), Priority.HIGH)
    item = take(queue)
    queue.dead_letter(item, "exhausted", "GitHub answered 502 to POST /x")
    [entry] = queue.list_dead_letters()
    assert entry.summary() == {
        "delivery_id": "a",
        "event": "issues",
        "action": "opened",
        "installation_id": 1,
        "repository": "octo/x",
        "issue_number": 8,
        "priority": "HIGH",
        "attempts": 1,
        "reason": "exhausted",
        "last_error": "GitHub answered 502 to POST /x",
        "received_at": 0.0,
        "dead_lettered_at": 1234.5,
    }
    assert queue.stats().dead_lettered_by_reason == {"exhausted": 1}


def test_dead_letter_queue_drops_its_oldest_entry_when_full_with_a_counter_and_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from github_app.queue.dead_letters import DeadLetterQueue

    queue = MemoryQueue(100, 10**6, clock=FakeClock(), dead_letters=DeadLetterQueue(2))
    for name in ("one", "two", "three"):
        queue.offer(loose(name), Priority.LOW)
        queue.dead_letter(take(queue), "exhausted", "502")
    assert [e.delivery_id for e in queue.list_dead_letters()] == ["two", "three"]
    stats = queue.stats().dead_letters
    assert stats is not None
    assert (stats.depth, stats.dropped) == (2, 1)
    assert any("dropped delivery one" in r.getMessage() for r in caplog.records)


def test_redrive_puts_dead_letters_back_as_new_arrivals_and_purge_deletes_them() -> None:
    clock = FakeClock()
    queue = MemoryQueue(100, 10**6, clock=clock)
    for name in ("a", "b", "c"):
        queue.offer(about_issue(name, 1), Priority.NORMAL)
        item = take(queue)
        queue.dead_letter(item, "exhausted", "502")
    assert len(queue) == 0
    assert not any(queue.knows(name) for name in "abc")
    clock.now += 500.0
    assert queue.redrive(["b", "missing"]) == 1
    assert [name for name in "abc" if queue.knows(name)] == ["b"]  # a redelivery is a duplicate
    again = take(queue)
    assert again.envelope.delivery_id == "b"
    assert again.attempts == 1  # attempts start again
    assert again.enqueued_at == clock.now
    queue.done(again)
    assert [e.delivery_id for e in queue.list_dead_letters()] == ["a", "c"]
    assert queue.purge_dead_letters(["a"]) == 1
    assert queue.redrive() == 1
    assert drain_ids(queue) == ["c"]
    stats = queue.stats()
    assert stats.redriven == 2
    assert stats.dead_letters is not None
    assert (stats.dead_letters.depth, stats.dead_letters.purged) == (0, 1)


def test_redrive_respects_the_bounds_and_keeps_what_does_not_fit() -> None:
    queue = MemoryQueue(2, 10**6, clock=FakeClock())
    for name in ("a", "b"):
        queue.offer(loose(name), Priority.LOW)
        queue.dead_letter(take(queue), "exhausted", "502")
    queue.offer(loose("busy"), Priority.CRITICAL)
    assert queue.redrive() == 1
    assert [e.delivery_id for e in queue.list_dead_letters()] == ["b"]
    assert len(queue) == 2


def test_installation_gone_dead_letters_all_its_waiting_events_and_spares_others() -> None:
    clock = FakeClock()
    queue = MemoryQueue(100, 10**6, clock=clock)
    queue.offer(from_installation("gone-1", 7, number=1), Priority.HIGH)
    queue.offer(from_installation("gone-2", 7, number=1), Priority.HIGH)  # behind gone-1
    queue.offer(from_installation("gone-3", 7), Priority.LOW)
    queue.offer(from_installation("kept", 8), Priority.HIGH)
    in_flight = take(queue)
    assert in_flight.envelope.delivery_id == "gone-1"
    queue.offer(from_installation("gone-4", 7), Priority.NORMAL)
    queue.retry(take(queue), clock.now + 100, "502")  # "kept" is delayed, not gone
    queue.dead_letter(in_flight, "installation_gone", "404")
    assert queue.dead_letter_installation(7, "installation_gone", "404") == 3
    assert sorted(e.delivery_id for e in queue.list_dead_letters()) == [
        "gone-1",
        "gone-2",
        "gone-3",
        "gone-4",
    ]
    assert len(queue) == 1
    assert queue.take() is None
    clock.now += 100
    assert drain_ids(queue) == ["kept"]
    assert queue.stats().dead_lettered_by_reason == {"installation_gone": 4}


def test_a_redelivery_of_a_dead_lettered_delivery_replaces_the_dead_letter() -> None:
    """Queued or dead, never both: a later redrive would process the event a second time."""
    queue = MemoryQueue(100, 10**6, clock=FakeClock())
    for name in ("a", "b"):
        queue.offer(about_issue(name, 1), Priority.NORMAL)
        queue.dead_letter(take(queue), "exhausted", "502")
    assert queue.offer(about_issue("a", 1), Priority.NORMAL).admitted  # GitHub redelivers "a"
    assert [e.delivery_id for e in queue.list_dead_letters()] == ["b"]
    assert queue.redrive() == 1
    assert drain_ids(queue) == ["a", "b"]  # "a" once
    stats = queue.stats().dead_letters
    assert stats is not None
    assert (stats.depth, stats.superseded, stats.purged) == (0, 1, 0)
