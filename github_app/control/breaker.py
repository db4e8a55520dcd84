"""A circuit breaker in front of GitHub: when GitHub is down, stop taking events.

A run of failures (5xx, timeouts, connection errors) opens it. While open the
dispatcher takes no events: they wait in the queue, nothing is lost, and no
request is spent on an outage. After ``cooldown`` seconds it is half-open:
one probe event at a time (one per ``probe_interval``, so a probe that never
reports cannot wedge it) is let through; ``close_after`` successes close it, a
failure opens it again for a longer cooldown (doubling up to ``max_cooldown``).
Throttling is not a failure here: the width controller answers that.

Pure and synchronous, clock injected; the dispatcher asks ``allow()`` before
taking an event and ``wait_hint()`` for how long to sleep when refused.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from github_app.control.controller import Outcome

Clock = Callable[[], float]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 5  # consecutive failures that open it
    cooldown: float = 5.0  # seconds open before the first probe
    max_cooldown: float = 60.0
    probe_interval: float = 1.0  # at most one probe per interval while half-open
    close_after: int = 1  # probe successes that close it


@dataclass(frozen=True)
class BreakerStats:
    state: str
    consecutive_failures: int
    opened: int  # times it opened
    open_for: float  # seconds since it last opened (0 when closed)
    retry_in: float  # seconds until the next probe may go (0 when closed)
    refused: int  # times the dispatcher was told to wait


class CircuitBreaker:
    """Counts failures in a row; see the module docstring."""

    def __init__(self, settings: BreakerSettings | None = None, *, clock: Clock = time.monotonic):
        self.settings = settings if settings is not None else BreakerSettings()
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._successes = 0
        self._opened = 0
        self._opened_at = 0.0
        self._cooldown = self.settings.cooldown
        self._next_probe = 0.0
        self._refused = 0

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._next_probe:
            return BreakerState.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """May the dispatcher take an event now? While half-open, a yes is a probe."""
        if self._state is BreakerState.CLOSED:
            return True
        now = self._clock()
        if now < self._next_probe:
            self._refused += 1
            return False
        self._state = BreakerState.HALF_OPEN
        self._next_probe = now + self.settings.probe_interval
        return True

    def wait_hint(self) -> float:
        """Seconds until ``allow`` may say yes (0 when it would now)."""
        if self._state is BreakerState.CLOSED:
            return 0.0
        return max(0.0, self._next_probe - self._clock())

    def record(self, outcome: Outcome) -> None:
        """An event's outcome, as the runner reported it."""
        if outcome is Outcome.ERROR:
            self._successes = 0
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN:
                self._open(self._cooldown * 2)
            elif self._state is BreakerState.CLOSED and self._failures >= self.settings.failures:
                self._open(self.settings.cooldown)
            return
        if outcome is Outcome.OK:
            self._failures = 0
            if self._state is BreakerState.HALF_OPEN:
                self._successes += 1
                if self._successes >= self.settings.close_after:
                    self._state = BreakerState.CLOSED
                    self._successes = 0
                    self._cooldown = self.settings.cooldown

    def _open(self, cooldown: float) -> None:
        now = self._clock()
        self._state = BreakerState.OPEN
        self._cooldown = min(cooldown, self.settings.max_cooldown)
        self._opened += 1
        self._opened_at = now
        self._next_probe = now + self._cooldown
        self._successes = 0

    def stats(self) -> BreakerStats:
        now = self._clock()
        closed = self._state is BreakerState.CLOSED
        return BreakerStats(
            state=self.state.value,
            consecutive_failures=self._failures,
            opened=self._opened,
            open_for=0.0 if closed else now - self._opened_at,
            retry_in=self.wait_hint(),
            refused=self._refused,
        )
