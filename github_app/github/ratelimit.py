"""The rate-limit ledger: what GitHub told us about one installation's budget and pauses.

Pure and synchronous (clocks injected): the transport feeds it every
response's ``x-ratelimit-*`` headers and every refusal; the runner asks it,
before an event runs, whether the installation must wait.

Whether an answer is a rate limit, which one, and how long GitHub asks us to
wait is decided here only (``classify``), once per answer: the transport
leaves the verdict on the response (``rate_limit_of`` reads it back), so the
error the caller sees (``gateway.as_github_error``) and the feedback to the
width controller follow the same decision.
Waiting happens in the queue (the event is held with a not-before time),
never as a sleep inside a request.

Two clocks: GitHub's reset is a wall-clock epoch, while holds are
``time.monotonic()`` instants (the queue's clock), so a reset is converted
once, when its header arrives.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

Clock = Callable[[], float]

RESERVE_FRACTION = 0.05  # keep 5% of the hourly budget for what is already running
DEFAULT_SECONDARY_PAUSE = 60.0  # GitHub: "wait at least one minute" without retry-after
LIMIT_STATUSES = frozenset({403, 429})
RATE_LIMIT_EXTENSION = "auto_issue_processor.rate_limit"  # the verdict, on the httpx response


@dataclass(frozen=True)
class RateLimited:
    """GitHub refused a request for a rate limit: which kind, and seconds it asks us to wait."""

    secondary: bool
    retry_after: float


@dataclass(frozen=True)
class SharedView:
    """One installation's limits as replicas share them: the seconds left of a secondary-limit
    pause, and the primary budget's window (``reset`` a wall-clock epoch, as GitHub sends it)."""

    paused_for: float | None
    limit: int | None
    remaining: int | None
    reset: int | None


@dataclass(frozen=True)
class InstallationStats:
    """One installation's traffic and budget (``installation_id`` None: the app or the total).

    ``waits`` counts events held in the queue for this installation (budget
    under the reserve, a secondary-limit pause, a long write backlog);
    ``paced_writes`` counts writes that waited for the pacing interval.
    ``reset_at`` is a wall-clock epoch, as GitHub sends it; ``paused_for`` the
    seconds left of a secondary-limit pause.
    """

    installation_id: int | None
    calls: Mapping[str, int] = field(default_factory=dict)
    not_modified: int = 0
    tokens_minted: int = 0
    waits: int = 0
    paced_writes: int = 0
    secondary_limit_hits: int = 0
    primary_limit_hits: int = 0
    not_found_retries: int = 0
    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None
    paused_for: float | None = None

    @property
    def requests(self) -> int:
        return sum(self.calls.values())


@dataclass(frozen=True)
class GatewayStats:
    """Every installation's stats and their total (counters summed, budgets summed).

    ``total.reset_at`` is the earliest known reset.
    """

    total: InstallationStats
    installations: Mapping[int, InstallationStats]
    app: InstallationStats


def total_of(parts: list[InstallationStats]) -> InstallationStats:
    calls: Counter[str] = Counter()
    for part in parts:
        calls.update(part.calls)
    limits = [p.limit for p in parts if p.limit is not None]
    remaining = [p.remaining for p in parts if p.remaining is not None]
    resets = [p.reset_at for p in parts if p.reset_at is not None]
    return InstallationStats(
        installation_id=None,
        calls=dict(calls),
        not_modified=sum(p.not_modified for p in parts),
        tokens_minted=sum(p.tokens_minted for p in parts),
        waits=sum(p.waits for p in parts),
        paced_writes=sum(p.paced_writes for p in parts),
        secondary_limit_hits=sum(p.secondary_limit_hits for p in parts),
        primary_limit_hits=sum(p.primary_limit_hits for p in parts),
        not_found_retries=sum(p.not_found_retries for p in parts),
        limit=sum(limits) if limits else None,
        remaining=sum(remaining) if remaining else None,
        reset_at=min(resets) if resets else None,
    )


def _header_int(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """``retry-after`` in seconds (GitHub sends whole seconds), if present and sane."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def classify(status: int, headers: httpx.Headers, body: bytes, *, now: float) -> RateLimited | None:
    """Is this answer a rate limit? In GitHub's documented order: a ``retry-after``
    header (secondary, that long); a zero budget (primary, until ``x-ratelimit-reset``,
    wall-clock ``now``); a 429 or a "secondary rate limit" message (secondary, a minute).

    ``None``: not a rate limit (a 403 is also GitHub's answer for missing permissions).
    """
    if status not in LIMIT_STATUSES:
        return None
    retry_after = retry_after_seconds(headers)
    if retry_after is not None:
        return RateLimited(secondary=True, retry_after=retry_after)
    if headers.get("x-ratelimit-remaining") == "0":
        reset = _header_int(headers, "x-ratelimit-reset")
        wait = DEFAULT_SECONDARY_PAUSE if reset is None else max(0.0, reset - now)
        return RateLimited(secondary=False, retry_after=wait)
    if status == 429 or b"secondary rate limit" in body[:2000].lower():
        return RateLimited(secondary=True, retry_after=DEFAULT_SECONDARY_PAUSE)
    return None


def rate_limit_of(response: httpx.Response) -> RateLimited | None:
    """The verdict the transport left on ``response`` (``None``: not a rate limit)."""
    verdict = response.extensions.get(RATE_LIMIT_EXTENSION)
    return verdict if isinstance(verdict, RateLimited) else None


class RateLimitLedger:
    """Budget, pause and counters of one installation."""

    def __init__(
        self,
        installation_id: int | None,
        *,
        reserve_fraction: float = RESERVE_FRACTION,
        monotonic: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.installation_id = installation_id
        self._reserve_fraction = reserve_fraction
        self._monotonic = monotonic
        self._wall = wall
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_epoch: float | None = None
        self._reset_mono: float | None = None
        self.paused_until: float | None = None  # monotonic
        self.calls: Counter[str] = Counter()
        self.not_modified = 0
        self.tokens_minted = 0
        self.waits = 0
        self.paced_writes = 0
        self.secondary_limit_hits = 0
        self.primary_limit_hits = 0
        self.not_found_retries = 0

    def observe(self, method: str, response: httpx.Response) -> None:
        """Count the call and take the budget from its headers (REST ``core`` budget only)."""
        self.calls[method] += 1
        if response.status_code == 304:
            self.not_modified += 1
        headers = response.headers
        resource = headers.get("x-ratelimit-resource")
        if resource is not None and resource != "core":
            return
        limit = _header_int(headers, "x-ratelimit-limit")
        remaining = _header_int(headers, "x-ratelimit-remaining")
        reset = _header_int(headers, "x-ratelimit-reset")
        if limit is None or remaining is None or reset is None:
            return
        self._take_window(limit, remaining, reset)

    def adopt(self, view: SharedView) -> None:
        """Take in what every replica together knows (``shared_limits``), as if seen here:
        the longer pause, and the budget by the same rules as an answer's headers."""
        if view.paused_for is not None and view.paused_for > 0:
            until = self._monotonic() + view.paused_for
            self.paused_until = max(until, self.paused_until or 0.0)
        if view.limit is not None and view.remaining is not None and view.reset is not None:
            self._take_window(view.limit, view.remaining, view.reset)

    def shared_view(self) -> SharedView:
        """What this replica knows, for the others (``adopt``)."""
        reset = None if self.reset_epoch is None else int(self.reset_epoch)
        return SharedView(self._paused_for(), self.limit, self.remaining, reset)

    def _take_window(self, limit: int, remaining: int, reset: int) -> None:
        """A budget report: the lowest count of a window is the latest; older windows are past."""
        same_window = self.reset_epoch is not None and reset == self.reset_epoch
        if same_window and self.remaining is not None:
            # Answers of one window can arrive out of order: the lowest count is the latest.
            remaining = min(remaining, self.remaining)
        elif self.reset_epoch is not None and reset < self.reset_epoch:
            return  # a straggler from the previous window
        self.limit, self.remaining, self.reset_epoch = limit, remaining, float(reset)
        self._reset_mono = self._monotonic() + max(0.0, reset - self._wall())

    def refused(self, status: int, headers: httpx.Headers, body: bytes) -> RateLimited | None:
        """A 403 or 429 came back: classify it (``classify``, on this ledger's wall clock) and
        record a rate limit; a secondary one pauses the installation for its ``retry_after``."""
        limit = classify(status, headers, body, now=self._wall())
        if limit is None:
            return None
        if limit.secondary:
            until = self._monotonic() + limit.retry_after
            self.paused_until = max(until, self.paused_until or 0.0)
            self.secondary_limit_hits += 1
        else:
            self.primary_limit_hits += 1
        return limit

    def _budget_reset(self) -> float | None:
        """The monotonic reset instant while the current window is known and not over."""
        if self._reset_mono is None or self._reset_mono <= self._monotonic():
            return None
        return self._reset_mono

    def reserve(self) -> int:
        return math.ceil((self.limit or 0) * self._reserve_fraction)

    def hold_until(self) -> tuple[float, str] | None:
        """Until when new work of this installation must wait, and why; ``None``: go on."""
        now = self._monotonic()
        if self.paused_until is not None and self.paused_until > now:
            return self.paused_until, "secondary rate limit pause"
        reset = self._budget_reset()
        if reset is not None and self.remaining is not None and self.remaining < self.reserve():
            return reset, f"rate-limit budget under its reserve ({self.remaining} left)"
        return None

    def blocked_for(self) -> float | None:
        """Seconds a request sent now would surely be refused (paused, or budget at zero)."""
        now = self._monotonic()
        if self.paused_until is not None and self.paused_until > now:
            return self.paused_until - now
        reset = self._budget_reset()
        if reset is not None and self.remaining == 0:
            return reset - now
        return None

    def stats(self) -> InstallationStats:
        return InstallationStats(
            installation_id=self.installation_id,
            calls=dict(self.calls),
            not_modified=self.not_modified,
            tokens_minted=self.tokens_minted,
            waits=self.waits,
            paced_writes=self.paced_writes,
            secondary_limit_hits=self.secondary_limit_hits,
            primary_limit_hits=self.primary_limit_hits,
            not_found_retries=self.not_found_retries,
            limit=self.limit,
            remaining=self.remaining,
            reset_at=self.reset_epoch if self._budget_reset() is not None else None,
            paused_for=self._paused_for(),
        )

    def _paused_for(self) -> float | None:
        if self.paused_until is None:
            return None
        left = self.paused_until - self._monotonic()
        return left if left > 0 else None
