"""Unit tests for github_app.queue.retry: backoff, jitter bounds, retry-after, exhaustion."""

from __future__ import annotations

import pytest

from github_app.queue.retry import RetryPolicy


def no_jitter(low: float, high: float) -> float:
    return high


def test_backoff_doubles_per_attempt_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=10, base=1.0, cap=8.0, uniform=no_jitter)
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_keeps_at_least_half_the_backoff_and_never_more_than_all_of_it() -> None:
    lowest = RetryPolicy(base=4.0, uniform=lambda low, high: low)
    highest = RetryPolicy(base=4.0, uniform=lambda low, high: high)
    assert lowest.delay(3) == 8.0
    assert highest.delay(3) == 16.0
    real = RetryPolicy(base=4.0)
    assert all(8.0 <= real.delay(3) <= 16.0 for _ in range(200))
    assert len({real.delay(3) for _ in range(50)}) > 1  # spread, not a wave


def test_github_retry_after_wins_when_longer_than_the_backoff() -> None:
    policy = RetryPolicy(base=1.0, uniform=no_jitter)
    assert policy.delay(1, retry_after=60.0) == 60.0
    assert policy.delay(1, retry_after=0.5) == 1.0


def test_exhausted_after_the_configured_number_of_attempts() -> None:
    policy = RetryPolicy(attempts=3)
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, True, True]


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"base": 0.0}, {"base": 10.0, "cap": 5.0}])
def test_nonsensical_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"attempts|backoff"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
