"""The rate-limit ledger and the ETag cache: pure logic, injected clocks, no I/O."""

from __future__ import annotations

import httpx
import pytest

from github_app.github.etag_cache import ETagCache
from github_app.github.ratelimit import (
    RateLimited,
    RateLimitLedger,
    SharedView,
    classify,
    total_of,
)


class Clocks:
    def __init__(self) -> None:
        self.mono = 500.0
        self.wall = 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def answer(remaining: int, reset: float, limit: int = 5000, status: int = 200) -> httpx.Response:
    return httpx.Response(
        status,
        headers={
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(int(reset)),
        },
    )


def ledger(clocks: Clocks) -> RateLimitLedger:
    return RateLimitLedger(7, monotonic=lambda: clocks.mono, wall=lambda: clocks.wall)


def test_budget_under_the_reserve_holds_until_the_reset_in_monotonic_time() -> None:
    clocks = Clocks()
    book = ledger(clocks)
    book.observe("GET", answer(251, clocks.wall + 600))
    assert book.hold_until() is None  # 5% of 5000 is 250: still above
    book.observe("GET", answer(249, clocks.wall + 600))
    until, reason = book.hold_until() or (0.0, "")
    assert until == pytest.approx(clocks.mono + 600)
    assert "249 left" in reason
    assert book.blocked_for() is None  # requests already running may still go
    clocks.advance(601)
    assert book.hold_until() is None  # a new window: the budget is back


def test_out_of_order_answers_keep_the_lowest_remaining_of_a_window() -> None:
    clocks = Clocks()
    book = ledger(clocks)
    reset = clocks.wall + 100
    book.observe("GET", answer(10, reset))
    book.observe("GET", answer(300, reset))  # an older answer arriving late
    assert book.remaining == 10
    book.observe("GET", answer(4999, reset - 3600))  # a straggler from the previous window
    assert book.remaining == 10
    book.observe("GET", answer(0, reset))
    assert book.blocked_for() == pytest.approx(100)


def test_other_resources_and_missing_headers_leave_the_core_budget_alone() -> None:
    clocks = Clocks()
    book = ledger(clocks)
    search = answer(1, clocks.wall + 60, limit=30)
    search.headers["x-ratelimit-resource"] = "search"
    book.observe("GET", search)
    book.observe("GET", httpx.Response(200))
    book.observe("GET", httpx.Response(304))
    assert book.remaining is None and book.hold_until() is None
    assert book.stats().calls == {"GET": 3}
    assert book.stats().not_modified == 1


SECONDARY_MESSAGE = b'{"message": "You have exceeded a secondary rate limit."}'


def test_secondary_limit_pauses_for_retry_after_or_a_minute() -> None:
    clocks = Clocks()
    book = ledger(clocks)
    limited = book.refused(403, httpx.Headers({"retry-after": "5"}), b"{}")
    assert limited == RateLimited(secondary=True, retry_after=5)
    assert book.hold_until() == (clocks.mono + 5, "secondary rate limit pause")
    assert book.blocked_for() == pytest.approx(5)
    assert book.stats().paused_for == pytest.approx(5)  # what the dashboard shows
    clocks.advance(6)
    assert book.hold_until() is None
    assert book.stats().paused_for is None
    assert book.refused(403, httpx.Headers(), SECONDARY_MESSAGE) == RateLimited(True, 60)
    assert book.stats().secondary_limit_hits == 2


def test_a_403_that_is_no_rate_limit_is_not_recorded() -> None:
    clocks = Clocks()
    book = ledger(clocks)
    assert book.refused(403, httpx.Headers(), b'{"message": "Resource not accessible"}') is None
    assert book.hold_until() is None
    assert book.stats().secondary_limit_hits == book.stats().primary_limit_hits == 0


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (429, {"retry-after": "7"}, b"", RateLimited(secondary=True, retry_after=7)),
        (403, {"retry-after": "7", "x-ratelimit-remaining": "0"}, b"", RateLimited(True, 7)),
        # a zero budget comes before the message: wait until the reset, on the given clock
        (
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 90)},
            SECONDARY_MESSAGE,
            RateLimited(secondary=False, retry_after=90),
        ),
        (429, {"x-ratelimit-remaining": "0"}, b"", RateLimited(False, 60)),  # no reset header
        (403, {"x-ratelimit-remaining": "12"}, SECONDARY_MESSAGE, RateLimited(True, 60)),
        (429, {}, b"", RateLimited(secondary=True, retry_after=60)),
        (403, {"x-ratelimit-remaining": "12"}, b'{"message": "Forbidden"}', None),
        (500, {"retry-after": "7"}, b"", None),
        (200, {"x-ratelimit-remaining": "0"}, b"", None),
    ],
)
def test_classify_follows_githubs_order_retry_after_then_zero_budget_then_secondary(
    status: int, headers: dict[str, str], body: bytes, expected: RateLimited | None
) -> None:
    assert classify(status, httpx.Headers(headers), body, now=NOW) == expected


def test_a_shared_view_is_adopted_by_the_rules_of_an_answers_headers() -> None:
    clocks = Clocks()
    book = ledger(clocks)
    reset = int(clocks.wall + 600)
    book.observe("GET", answer(4000, reset))
    book.adopt(SharedView(paused_for=None, limit=5000, remaining=4500, reset=reset))
    assert book.remaining == 4000  # the same window: the lowest count is the latest
    book.adopt(SharedView(None, 5000, 200, reset))  # another replica has used more
    assert book.hold_until() == (
        clocks.mono + 600,
        "rate-limit budget under its reserve (200 left)",
    )
    book.adopt(SharedView(None, 5000, 5000, reset - 3600))  # a straggler of the last window
    assert book.remaining == 200
    book.adopt(SharedView(paused_for=30.0, limit=None, remaining=None, reset=None))
    assert book.hold_until() == (clocks.mono + 30, "secondary rate limit pause")
    book.adopt(SharedView(paused_for=5.0, limit=None, remaining=None, reset=None))
    assert book.blocked_for() == pytest.approx(30)  # a shorter pause does not shorten it
    assert book.shared_view() == SharedView(30.0, 5000, 200, reset)
    assert ledger(clocks).shared_view() == SharedView(None, None, None, None)


def test_total_sums_counters_and_budgets_and_keeps_the_earliest_reset() -> None:
    clocks = Clocks()
    a, b = (
        ledger(clocks),
        RateLimitLedger(8, monotonic=lambda: clocks.mono, wall=lambda: clocks.wall),
    )
    a.observe("GET", answer(4000, clocks.wall + 100))
    a.observe("POST", answer(3999, clocks.wall + 100))
    b.observe("GET", answer(100, clocks.wall + 50))
    b.tokens_minted = 1
    total = total_of([a.stats(), b.stats()])
    assert total.calls == {"GET": 2, "POST": 1}
    assert total.remaining == 4099 and total.limit == 10000
    assert total.reset_at == int(clocks.wall + 50)
    assert total.tokens_minted == 1 and total.requests == 3


def test_etag_cache_stays_under_its_byte_bound_with_10000_distinct_urls() -> None:
    bound = 256 * 1024
    cache = ETagCache(max_bytes=bound)
    body = b'{"name": "config", "content": "' + b"x" * 600 + b'"}'
    for i in range(10_000):
        key = (i % 20, f"https://api.github.com/repos/o/r{i}/contents/f.yml", "application/json")
        cache.put(key, f'"etag-{i}"', 200, {"content-type": "application/json"}, body)
        assert cache.size <= bound
    assert 0 < len(cache) < 10_000
    newest = cache.get(
        (19, "https://api.github.com/repos/o/r9999/contents/f.yml", "application/json")
    )
    assert newest is not None and cache.body(newest) == body
    assert (
        cache.get((0, "https://api.github.com/repos/o/r0/contents/f.yml", "application/json"))
        is None
    )


def test_etag_cache_forgets_one_installation() -> None:
    cache = ETagCache()
    cache.put((1, "u", "a"), '"e"', 200, {}, b"x")
    cache.put((2, "u", "a"), '"e"', 200, {}, b"y")
    cache.forget_installation(1)
    assert cache.get((1, "u", "a")) is None
    assert cache.get((2, "u", "a")) is not None
