"""GitHub's secondary limits kept ahead of time: pure windows with an injected clock."""

from __future__ import annotations

import pytest

from github_app.github.secondary_limits import (
    ContentRules,
    RequestBudget,
    SecondaryLimits,
    parse_rule,
)


def send(budget: RequestBudget, now: float, method: str, *, content: bool = False) -> float:
    """Send at the first instant the budget allows, from ``now``; returns that instant."""
    at = now + budget.delay(now, method, content=content)
    assert budget.delay(at, method, content=content) <= 1e-9
    budget.record(at, method, content=content)
    return at


def test_writes_are_a_second_apart_and_reads_are_not_held_by_them() -> None:
    budget = RequestBudget()
    assert send(budget, 0.0, "POST") == 0.0
    assert budget.delay(0.2, "POST") == pytest.approx(0.8)
    assert budget.delay(0.2, "GET") == 0.0
    assert send(budget, 0.2, "PATCH") == pytest.approx(1.0)


def test_content_creation_keeps_80_a_minute_and_500_an_hour() -> None:
    budget = RequestBudget()
    now = 0.0
    times = []
    for _ in range(600):
        now = send(budget, now, "POST", content=True)
        times.append(now)
    for i in range(len(times) - 80):
        assert times[i + 80] - times[i] >= 60.0 - 1e-9  # never 81 within a minute
    for i in range(len(times) - 500):
        assert times[i + 500] - times[i] >= 3600.0 - 1e-9  # never 501 within an hour
    assert times[499] < 3600.0 <= times[500]


def test_points_keep_900_a_minute_counting_writes_as_five() -> None:
    budget = RequestBudget(SecondaryLimits(write_interval=0.0))
    now = 0.0
    sent: list[tuple[float, int]] = []
    for i in range(1200):
        method = "POST" if i % 3 == 0 else "GET"
        now = send(budget, now, method)
        sent.append((now, 5 if method == "POST" else 1))
    for start, _ in sent:
        in_minute = sum(p for t, p in sent if start <= t < start + 60.0)
        assert in_minute <= 900
    assert budget.stats(now).points_last_minute <= 900


def test_a_secondary_limit_lowers_the_write_pace_for_the_rest_of_the_hour() -> None:
    budget = RequestBudget()
    send(budget, 0.0, "POST")
    budget.lower(10.0)
    assert budget.interval(10.0) == 2.0
    assert budget.interval(10.0 + 3599.0) == 2.0  # not back to the old pace after a pause
    assert budget.stats(20.0).lowered_for == pytest.approx(3590.0)
    budget.lower(20.0)  # met again within the hour: lower once more
    assert budget.interval(20.0) == 4.0
    assert budget.interval(20.0 + 3600.0) == 1.0
    assert budget.stats(20.0 + 3600.0).lowered_for is None


def test_lowered_content_allowance_is_half_a_minute() -> None:
    budget = RequestBudget(SecondaryLimits(write_interval=0.0))
    budget.lower(0.0)
    now = 0.0
    for _ in range(40):
        now = send(budget, now, "POST", content=True)
    assert now < 60.0
    assert send(budget, now, "POST", content=True) >= 60.0


def test_a_booking_counts_the_request_at_its_instant_so_the_next_books_after_it() -> None:
    budget = RequestBudget(SecondaryLimits(points_per_minute=12))
    assert budget.book(0.0, "POST") == 0.0
    assert budget.book(0.0, "POST") == 1.0  # booked ahead, at 1.0
    assert budget.book(0.5, "GET") == 0.0  # 11 points: reads are not held by writes
    assert budget.book(0.5, "PATCH") == pytest.approx(60.0 - 0.5)  # 16 points: until 0.0 ages
    assert budget.book(0.6, "GET") == pytest.approx(60.0 - 0.6)  # 17 points: until 0.0 ages
    assert budget.last_write == 60.0
    assert budget.stats(0.6).points_last_minute == 17  # what is booked ahead counts already


def test_a_process_keeping_limits_alone_takes_its_share() -> None:
    share = SecondaryLimits().shared_by(3)
    assert share.write_interval == 3.0
    assert (share.content_per_minute, share.content_per_hour) == (26, 166)
    assert share.points_per_minute == 300
    tiny = SecondaryLimits(content_per_minute=2, points_per_minute=6).shared_by(4)
    assert tiny.content_per_minute == 1 and tiny.points_per_minute == 5  # one write still goes


def test_content_rules_count_issues_and_comments_and_take_extras() -> None:
    rules = ContentRules(["POST /repos/{owner}/{repo}/issues/{number}/labels"])
    assert rules("POST", "/repos/o/r/issues")
    assert rules("POST", "/repos/o/r/issues/7/comments")
    assert rules("POST", "/repos/o/r/issues/7/labels")
    assert not rules("GET", "/repos/o/r/issues")
    assert not rules("PATCH", "/repos/o/r/issues/7")
    assert not ContentRules()("POST", "/repos/o/r/issues/7/labels")


def test_a_malformed_content_rule_is_refused_with_its_text() -> None:
    with pytest.raises(ValueError, match="issues/labels"):
        parse_rule("issues/labels")
