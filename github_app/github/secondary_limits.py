"""GitHub's documented secondary limits, kept ahead of time for one principal.

Pure and synchronous (the clock is passed in): the pacer asks ``delay`` how
long a request of some kind must wait and calls ``record`` when it goes.
GitHub documents, per user or app installation (and for the app's own JWT
calls):

- at most 80 content-generating requests a minute and 500 an hour;
- at most 900 points a minute for REST (a GET, HEAD or OPTIONS costs 1 point,
  any other method 5);
- at least a second between requests that write (POST, PATCH, PUT, DELETE),
  and no concurrent requests (the pacer sends one write at a time). The second
  counts from the previous write's answer (``answered``): GitHub counts a write
  when it arrives, and the way there takes a varying time.

GitHub does not say which requests are content-generating: creating an issue
and creating a comment are counted by default (``CONTENT_CREATING``); the
``GITHUB_CONTENT_CREATING`` setting adds more (``ContentRules``).

After a secondary-limit answer despite all this, the principal's write
allowances are lowered (``lower``) for the rest of the hour instead of going
back to the old pace, which would meet the limit again after each pause.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

MINUTE = 60.0
HOUR = 3600.0
MAX_LOWERINGS = 3  # half, a quarter, then an eighth of the pace at most
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
T = TypeVar("T", float, tuple[float, int])

# "METHOD /path" with {placeholders} for one path segment each, relative to the API root.
CONTENT_CREATING: tuple[str, ...] = (
    "POST /repos/{owner}/{repo}/issues",
    "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
)


@dataclass(frozen=True)
class SecondaryLimits:
    """The allowances; ``lowered_factor`` scales the write allowances after a limit answer."""

    content_per_minute: int = 80
    content_per_hour: int = 500
    points_per_minute: int = 900
    read_points: int = 1
    write_points: int = 5
    write_interval: float = 1.0
    lowered_factor: float = 0.5
    lowered_for: float = HOUR
    minute: float = MINUTE  # the windows' lengths: a benchmark shrinks time with these
    hour: float = HOUR

    def scaled(self, factor: float) -> SecondaryLimits:
        """The same limits with every span (interval, windows) times ``factor``."""
        return dataclasses.replace(
            self,
            write_interval=self.write_interval * factor,
            lowered_for=self.lowered_for * factor,
            minute=self.minute * factor,
            hour=self.hour * factor,
        )

    def shared_by(self, processes: int) -> SecondaryLimits:
        """One process's part when ``processes`` keep these limits each alone: the interval
        that many times longer, each allowance that share of the whole (at least one)."""
        return dataclasses.replace(
            self,
            content_per_minute=max(1, self.content_per_minute // processes),
            content_per_hour=max(1, self.content_per_hour // processes),
            points_per_minute=max(self.write_points, self.points_per_minute // processes),
            write_interval=self.write_interval * processes,
        )


GITHUB_LIMITS = SecondaryLimits()  # as github.com documents them
UNLIMITED = SecondaryLimits(10**9, 10**9, 10**9, 0, 0, 0.0)  # dry run: nothing is sent


@dataclass(frozen=True)
class BudgetStats:
    """What one principal used in the current windows, for the status document."""

    points_last_minute: int
    content_last_minute: int
    content_last_hour: int
    lowered_for: float | None  # seconds left at the lowered pace, None at the full pace


class ContentRules:
    """Which requests create content: ``CONTENT_CREATING`` plus the configured extras."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self._rules: list[tuple[str, re.Pattern[str]]] = []
        for rule in (*CONTENT_CREATING, *extra):
            self._rules.append(parse_rule(rule))

    def __call__(self, method: str, path: str) -> bool:
        return any(m == method and pattern.fullmatch(path) for m, pattern in self._rules)


def _insort(window: deque[T], item: T) -> None:
    """Keep ``window`` in time order; a new item almost always goes last."""
    if window and item < window[-1]:
        window.insert(bisect.bisect_right(window, item), item)
    else:
        window.append(item)


def parse_rule(rule: str) -> tuple[str, re.Pattern[str]]:
    """``"POST /repos/{owner}/{repo}/issues"`` -> the method and a pattern of the path."""
    method, _, path = rule.strip().partition(" ")
    path = path.strip()
    if not method.isalpha() or not path.startswith("/"):
        raise ValueError(f"{rule!r}: expected 'METHOD /path', e.g. 'POST /repos/{{owner}}/...'")
    parts = re.split(r"(\{[^{}/]+\})", path)
    pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return method.upper(), re.compile(pattern.rstrip("/"))


class RequestBudget:
    """The sliding windows of one principal's points and content-generating requests."""

    def __init__(self, limits: SecondaryLimits = GITHUB_LIMITS) -> None:
        self.limits = limits
        self._points: deque[tuple[float, int]] = deque()  # (sent at, points), last minute
        self._points_total = 0
        self._content: deque[float] = deque()  # sent at, last hour
        self._last_write: float | None = None
        self._lowered_until: float | None = None
        self._lowered_level = 0

    @property
    def last_write(self) -> float | None:
        """The latest instant a write may have reached GitHub: booked, sent, or answered."""
        return self._last_write

    def _scale(self, now: float) -> float:
        if self._lowered_until is not None and now < self._lowered_until:
            return float(self.limits.lowered_factor**self._lowered_level)
        return 1.0

    def interval(self, now: float) -> float:
        """Seconds between two writes now (longer at the lowered pace)."""
        return self.limits.write_interval / self._scale(now)

    def _forget(self, now: float) -> None:
        while self._points and self._points[0][0] <= now - self.limits.minute:
            self._points_total -= self._points.popleft()[1]
        while self._content and self._content[0] <= now - self.limits.hour:
            self._content.popleft()

    def points(self, method: str) -> int:
        return self.limits.read_points if method in READ_METHODS else self.limits.write_points

    def delay(self, now: float, method: str, *, content: bool = False) -> float:
        """Seconds until a request of this kind keeps every allowance (0: it may go now)."""
        self._forget(now)
        scale = 1.0 if method in READ_METHODS else self._scale(now)
        waits = [0.0]
        cost = self.points(method)
        cap = int(self.limits.points_per_minute * scale)
        excess = self._points_total + cost - cap
        if excess > 0:
            freed = 0
            for sent, points in self._points:
                freed += points
                if freed >= excess:
                    waits.append(sent + self.limits.minute - now)
                    break
        if method not in READ_METHODS:
            if self._last_write is not None:
                waits.append(self._last_write + self.interval(now) - now)
            if content:
                waits.append(
                    self._window_wait(
                        now, self.limits.minute, self.limits.content_per_minute, scale
                    )
                )
                waits.append(
                    self._window_wait(now, self.limits.hour, self.limits.content_per_hour, scale)
                )
        return max(waits)

    def _window_wait(self, now: float, span: float, allowance: int, scale: float) -> float:
        cap = max(1, int(allowance * scale))
        recent = [sent for sent in self._content if sent > now - span]
        if len(recent) < cap:
            return 0.0
        return recent[len(recent) - cap] + span - now

    def record(self, now: float, method: str, *, content: bool = False) -> None:
        """A request of this kind is being sent now."""
        self._forget(now)
        self._add(now, method, content)

    def book(self, now: float, method: str, *, content: bool = False) -> float:
        """``delay`` and ``record`` in one step: the request is booked for the first instant
        that keeps every allowance (counted from then on); returns the seconds until it.

        What a shared store does atomically for several processes (``shared_limits``):
        nobody can take the same instant between the question and the booking.
        """
        self._forget(now)
        wait = max(0.0, self.delay(now, method, content=content))
        self._add(now + wait, method, content)
        return wait

    def _add(self, at: float, method: str, content: bool) -> None:
        """Count a request at ``at`` (a booking may lie ahead of requests counted before it)."""
        cost = self.points(method)
        _insort(self._points, (at, cost))
        self._points_total += cost
        if method not in READ_METHODS:
            self._last_write = at if self._last_write is None else max(self._last_write, at)
            if content:
                _insort(self._content, at)

    def answered(self, now: float) -> None:
        """A write was answered now: the next one waits an interval from here.

        GitHub counts a write when it arrives, which may be anywhere between its
        send and its answer (queueing on the way, in the pool, at GitHub): only an
        interval after the answer is surely an interval after the arrival.
        """
        self._last_write = now if self._last_write is None else max(self._last_write, now)

    def lower(self, now: float) -> None:
        """GitHub answered with a secondary limit: slower writes for the rest of the hour.

        Each further answer within that hour lowers the pace once more (at most
        ``MAX_LOWERINGS`` times) and starts the hour again.
        """
        lowered = self._lowered_until is not None and now < self._lowered_until
        self._lowered_level = min(MAX_LOWERINGS, self._lowered_level + 1) if lowered else 1
        self._lowered_until = now + self.limits.lowered_for

    def stats(self, now: float) -> BudgetStats:
        self._forget(now)
        lowered = None
        if self._lowered_until is not None and self._lowered_until > now:
            lowered = self._lowered_until - now
        return BudgetStats(
            points_last_minute=self._points_total,
            content_last_minute=sum(1 for sent in self._content if sent > now - self.limits.minute),
            content_last_hour=len(self._content),
            lowered_for=lowered,
        )
