"""When a failed event is tried again: exponential backoff with jitter, at most N attempts.

Pure: the random source is injected, so tests see exact delays. Jitter spreads
the retries of a burst that failed together (a GitHub outage fails thousands
of events within a second) instead of sending them back in one wave; half
the delay is kept ("equal jitter") so a retry never comes back at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the n-th retry waits ``base * 2**(n-1)`` s, capped, jittered."""

    attempts: int = 5
    base: float = 2.0
    cap: float = 300.0
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("backoff needs 0 < base <= cap")

    def exhausted(self, attempts: int) -> bool:
        """True once ``attempts`` tries have been made and failed: no more retries."""
        return attempts >= self.attempts

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed try (at least GitHub's retry-after)."""
        backoff = min(self.cap, self.base * 2.0 ** max(0, attempts - 1))
        jittered = backoff / 2 + self.uniform(0.0, backoff / 2)
        return max(jittered, retry_after or 0.0)
