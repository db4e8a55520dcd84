"""GitHub's limits kept in Redis, so that N replicas write to an installation like one process.

With ``QUEUE_BACKEND=redis`` every replica talks to the same installations.
Each principal (an installation, or the app's own JWT for token mints) has in
Redis what ``LocalPaceStore`` keeps in one process, changed only by Lua
scripts, each atomic:

- ``BOOK``: the secondary-limit budget (``RequestBudget``'s rules: one write
  an interval after the last, the points of the last minute, the content
  created in the last minute and hour, the lowered pace after a limit). A
  request books the first instant that keeps them all and is counted there;
  the replica sleeps until it. Nothing is booked while the principal is
  paused: the answer carries the pause instead. The booking also brings the
  primary budget this replica last saw (remaining / reset; the lowest count
  of a window wins) and takes back what all replicas saw, for its ledger.
- ``ANSWERED``: a write was answered: the next write, whichever replica books
  it, waits an interval from that instant (``RequestBudget.answered``). A
  write booked by another replica while one is on the wire is spaced from the
  booked instant only (its answer is not known yet).
- ``LOWER``: a secondary limit met by any replica lowers every replica's pace.
- ``SHARE``: at once, without a request: a secondary-limit pause (retry-after)
  or a budget under the reserve that one replica met, and before an event
  runs (``GitHubGateway.refresh``) what the others met.

Each answer goes to the replica's ledger (``RateLimitLedger.adopt``), which
holds the installation (``hold_until``) as if it had met the limit itself.

The scripts read Redis's clock (``TIME``): replicas' monotonic clocks cannot
be compared, Redis's is one. A booking comes back as the seconds to wait from
the script's instant; the replica adds them to its own clock.

Redis unreachable: requests are not sent unpaced. Each principal falls back to
a ``LocalPaceStore`` whose allowances are this replica's share only
(``SecondaryLimits.shared_by`` the replicas last known), which starts as if it
had just written; a warning says so once, ``stats`` shows it, and Redis is
tried again every ``retry_every`` seconds. Back on Redis, the first booking
keeps the fallback's own spacing too (``floor``).

Installation tokens are not shared: each replica mints its own.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT

from github_app.github.pace_store import Booking, LocalPaceStore
from github_app.github.ratelimit import RateLimitLedger, SharedView
from github_app.github.secondary_limits import (
    MAX_LOWERINGS,
    READ_METHODS,
    BudgetStats,
    SecondaryLimits,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]

PREFIX = "aip:limits:"  # the runtime passes redis_link.PREFIX + "limits:"
RETRY_EVERY = 1.0  # seconds between tries of an unreachable Redis
FALLBACK_REPLICAS = 3  # replicas assumed when none is known: each keeps a third of the pace
MICRO = 1_000_000
UNKNOWN = -1  # a budget field nobody has reported (Lua arrays cannot hold nil)

_LUA_COMMON = """
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local function micro(x) return math.floor(x * 1000000 + 0.5) end
local function num(x, default) if x then return tonumber(x) end return default end
local function scale_at(pace, now, factor)
  local lowered = redis.call('HMGET', pace, 'lowered_until', 'level')
  local untl = num(lowered[1], 0)
  if untl > now then return factor ^ num(lowered[2], 1), untl - now end
  return 1, 0
end
local function budget_view(budget)
  local b = redis.call('HMGET', budget, 'limit', 'remaining', 'reset')
  return num(b[1], -1), num(b[2], -1), num(b[3], -1)
end
-- a replica's report of the primary budget: the lowest count of a window is the latest
local function merge_budget(budget, limit, remaining, reset, ttl)
  if reset == '' then return end
  limit, remaining, reset = tonumber(limit), tonumber(remaining), tonumber(reset)
  local known_limit, known_remaining, known_reset = budget_view(budget)
  if reset == known_reset then
    redis.call('HSET', budget, 'limit', limit, 'remaining', math.min(remaining, known_remaining))
  elseif reset > known_reset then
    redis.call('HSET', budget, 'limit', limit, 'remaining', remaining, 'reset', reset)
  end
  redis.call('EXPIRE', budget, ttl)
end
"""

# KEYS: pace, points, content, pause, budget
# ARGV: read, cost, content, floor, interval, points/minute, content/minute, content/hour,
#       lowered factor, minute, hour, ttl, and the replica's budget: limit, remaining, reset
BOOK = (
    _LUA_COMMON
    + """
local pace, points, content = KEYS[1], KEYS[2], KEYS[3]
local read, cost, creates = ARGV[1] == '1', tonumber(ARGV[2]), ARGV[3] == '1'
local floor, interval, per_minute = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local content_minute, content_hour = tonumber(ARGV[7]), tonumber(ARGV[8])
local factor, minute, hour = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local ttl = ARGV[12]
local now = clock()
merge_budget(KEYS[5], ARGV[13], ARGV[14], ARGV[15], ttl)
local limit, remaining, reset = budget_view(KEYS[5])
local pause = redis.call('PTTL', KEYS[4])
if pause > 0 then
  return {1, 0, 0, 0, 0, 0, 0, 0, 0, pause, limit, remaining, reset}
end
local function cost_of(member) return tonumber(string.match(member, ':(%d+)$')) end
-- the points of the last minute: a running total, less what ages out now
local aged = redis.call('ZRANGEBYSCORE', points, '-inf', fmt(now - minute))
local total = num(redis.call('HGET', pace, 'points'), 0)
for i = 1, #aged do total = total - cost_of(aged[i]) end
if #aged > 0 then redis.call('ZREMRANGEBYSCORE', points, '-inf', fmt(now - minute)) end
if total < 0 or redis.call('ZCARD', points) == 0 then total = 0 end
redis.call('ZREMRANGEBYSCORE', content, '-inf', fmt(now - hour))
local scale, lowered_for = scale_at(pace, now, factor)
local function window_wait(span, allowance)
  local cap = math.max(1, math.floor(allowance * scale))
  local since = '(' .. fmt(now - span)
  local n = redis.call('ZCOUNT', content, since, '+inf')
  if n < cap then return 0 end
  local oldest = redis.call('ZRANGEBYSCORE', content, since, '+inf', 'WITHSCORES',
                            'LIMIT', n - cap, 1)
  return tonumber(oldest[2]) + span - now
end
local wait = floor
local cap = math.floor(per_minute * (read and 1 or scale))
local excess = total + cost - cap
local freed, first = 0, 0
while excess > 0 and freed < excess do  -- the oldest entries, a few at a time
  local batch = redis.call('ZRANGE', points, first, first + 15, 'WITHSCORES')
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    freed = freed + cost_of(batch[i])
    if freed >= excess then
      wait = math.max(wait, tonumber(batch[i + 1]) + minute - now)
      break
    end
  end
  first = first + 16
end
local last = num(redis.call('HGET', pace, 'last'), nil)
if not read then
  if last then wait = math.max(wait, last + interval / scale - now) end
  if creates then
    wait = math.max(wait, window_wait(minute, content_minute), window_wait(hour, content_hour))
  end
end
local at = now + wait
local seq = redis.call('HINCRBY', pace, 'seq', 1)
redis.call('ZADD', points, fmt(at), seq .. ':' .. cost)
redis.call('HSET', pace, 'points', total + cost)
if not read then
  last = math.max(last or at, at)
  redis.call('HSET', pace, 'last', fmt(last))
  if creates then redis.call('ZADD', content, fmt(at), seq) end
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
local write_delay = 0
if last then write_delay = math.max(0, last + interval / scale - now) end
local in_minute = redis.call('ZCOUNT', content, '(' .. fmt(now - minute), '+inf')
local in_hour = redis.call('ZCARD', content)
return {0, micro(wait), micro(at), micro(interval / scale), total + cost, in_minute, in_hour,
        micro(lowered_for), micro(write_delay), 0, limit, remaining, reset}
"""
)

# KEYS: pace; ARGV: ttl
ANSWERED = (
    _LUA_COMMON
    + """
local now = clock()
local last = num(redis.call('HGET', KEYS[1], 'last'), now)
redis.call('HSET', KEYS[1], 'last', fmt(math.max(last, now)))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""
)

# KEYS: pace; ARGV: lowered for, max lowerings, ttl
LOWER = (
    _LUA_COMMON
    + """
local now = clock()
local lowered = redis.call('HMGET', KEYS[1], 'lowered_until', 'level')
local level = 1
if num(lowered[1], 0) > now then level = math.min(tonumber(ARGV[2]), num(lowered[2], 0) + 1) end
redis.call('HSET', KEYS[1], 'lowered_until', fmt(now + tonumber(ARGV[1])), 'level', level)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return level
"""
)

# KEYS: pause, budget; ARGV: pause ms, limit, remaining, reset ('' when unknown), ttl
SHARE = (
    _LUA_COMMON
    + """
local pause_ms = tonumber(ARGV[1])
if pause_ms > 0 and redis.call('PTTL', KEYS[1]) < pause_ms then
  redis.call('SET', KEYS[1], '1', 'PX', pause_ms)
end
merge_budget(KEYS[2], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
local limit, remaining, reset = budget_view(KEYS[2])
return {math.max(0, redis.call('PTTL', KEYS[1])), limit, remaining, reset}
"""
)


@dataclass(frozen=True)
class SharedLimitsStats:
    """Where this replica's GitHub limits are kept now, for the status document."""

    kept_in: str  # "redis", or "this replica" while Redis is unreachable
    unreachable_for: float | None  # seconds since Redis stopped answering
    outages: int  # times Redis became unreachable since start-up


def _known(value: int) -> int | None:
    return None if value == UNKNOWN else int(value)


def _view(pause_ms: int, limit: int, remaining: int, reset: int) -> SharedView:
    return SharedView(
        pause_ms / 1000 if pause_ms > 0 else None, *map(_known, (limit, remaining, reset))
    )


class RedisLimits:
    """This replica's link to the limits in Redis: the scripts, and whether Redis answers."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = PREFIX,
        clock: Clock = time.monotonic,
        retry_every: float = RETRY_EVERY,
        replicas: Callable[[], int] = lambda: FALLBACK_REPLICAS,
    ) -> None:
        """``replicas`` says how many replicas share the installations (their last known
        number, 0 if none is known): the pace each keeps alone while Redis is unreachable.
        ``prefix`` starts every key (one Redis may keep other things)."""
        self._scripts = {
            "book": client.register_script(BOOK),
            "answered": client.register_script(ANSWERED),
            "lower": client.register_script(LOWER),
            "share": client.register_script(SHARE),
        }
        self.clock = clock
        self._prefix = prefix
        self._retry_every = retry_every
        self._replicas = replicas
        self._down_since: float | None = None
        self._retry_at = 0.0
        self.outages = 0

    def store(
        self, principal: str, limits: SecondaryLimits, ledger: RateLimitLedger
    ) -> RedisPaceStore:
        """The store of one principal (``"app"``, or an installation id); its ledger adopts
        what the replicas share."""
        return RedisPaceStore(self, f"{self._prefix}{{{principal}}}:", limits, ledger)

    # -- Redis answering or not ----------------------------------------------------------

    def _worth_trying(self) -> bool:
        return self._down_since is None or self.clock() >= self._retry_at

    def _failed(self, exc: Exception) -> None:
        now = self.clock()
        self._retry_at = now + self._retry_every
        if self._down_since is None:
            self._down_since = now
            self.outages += 1
            log.warning(
                "Redis is unreachable (%s): GitHub requests are paced by this replica alone, "
                "at 1/%d of the pace, until it answers again",
                type(exc).__name__,
                self.fallback_share(),
            )

    def _answered(self) -> None:
        if self._down_since is not None:
            log.info(
                "Redis answers again after %.0fs: GitHub's limits are shared by the replicas again",
                self.clock() - self._down_since,
            )
            self._down_since = None

    async def run(self, script: str, keys: Sequence[str], args: Sequence[EncodableT]) -> Any:
        """Run a script, or ``None`` while Redis is unreachable (then the caller falls back)."""
        if not self._worth_trying():
            return None
        try:
            answer = await self._scripts[script](keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._answered()
        return answer

    def fallback_share(self) -> int:
        """The replicas this one's share is of: as last seen, else ``FALLBACK_REPLICAS``."""
        known = self._replicas()
        return known if known > 0 else FALLBACK_REPLICAS

    def stats(self) -> SharedLimitsStats:
        down = self._down_since
        return SharedLimitsStats(
            kept_in="redis" if down is None else "this replica",
            unreachable_for=None if down is None else self.clock() - down,
            outages=self.outages,
        )


class RedisPaceStore:
    """One principal's budget in Redis (``PaceStore``), and its ledger kept up to date."""

    def __init__(
        self, shared: RedisLimits, key: str, limits: SecondaryLimits, ledger: RateLimitLedger
    ) -> None:
        self._shared = shared
        self._limits = limits
        self._ledger = ledger
        self._clock = shared.clock
        self._keys = [
            f"{key}pace",
            f"{key}points",
            f"{key}content",
            f"{key}pause",
            f"{key}budget",
        ]
        self._ttl = math.ceil(max(limits.hour, limits.lowered_for) + limits.minute)
        self._fallback: LocalPaceStore | None = None
        # as last answered: seconds between writes, until the next write, and the stats
        self._interval = limits.write_interval
        self._write_delay_until = 0.0
        self._stats = BudgetStats(0, 0, 0, None)

    def _alone(self) -> LocalPaceStore:
        """The fallback while Redis is unreachable: this replica's share, as if it had just
        written (another replica may have a moment ago)."""
        if self._fallback is None:
            share = self._limits.shared_by(self._shared.fallback_share())
            self._fallback = LocalPaceStore(share, self._clock)
            self._fallback.budget.record(self._clock(), "POST")
        return self._fallback

    async def book(self, method: str, *, content: bool = False) -> Booking:
        limits = self._limits
        read = method in READ_METHODS
        floor = 0.0  # back from a fallback: a write keeps the interval after its last one
        last = None if self._fallback is None or read else self._fallback.budget.last_write
        if last is not None:
            floor = max(0.0, last + limits.write_interval - self._clock())
        answer = await self._shared.run(
            "book",
            self._keys,
            [
                int(read),
                limits.read_points if read else limits.write_points,
                int(content and not read),
                f"{floor:.6f}",
                limits.write_interval,
                limits.points_per_minute,
                limits.content_per_minute,
                limits.content_per_hour,
                limits.lowered_factor,
                limits.minute,
                limits.hour,
                self._ttl,
                *self._budget(self._ledger.shared_view()),
            ],
        )
        if answer is None:
            return self._alone().book_now(method, content=content)
        self._fallback = None
        paused, wait, at, interval, points, minute, hour, lowered, delay, pause, *budget = map(
            int, answer
        )
        self._ledger.adopt(_view(pause, *budget))
        if paused:
            return Booking(0.0, 0.0)  # nothing booked: the ledger is paused, the transport refuses
        now = self._clock()
        self._interval = interval / MICRO
        self._write_delay_until = now + delay / MICRO
        self._stats = BudgetStats(points, minute, hour, lowered / MICRO if lowered else None)
        return Booking(wait / MICRO, at / MICRO)

    async def answered(self) -> None:
        if await self._shared.run("answered", self._keys[:1], [self._ttl]) is None:
            await self._alone().answered()
        elif self._fallback is not None:
            self._fallback.budget.answered(self._clock())  # the floor of the next booking

    async def lower(self) -> None:
        args = [self._limits.lowered_for, MAX_LOWERINGS, self._ttl]
        if await self._shared.run("lower", self._keys[:1], args) is None:
            await self._alone().lower()

    async def share(self) -> None:
        view = self._ledger.shared_view()
        args = [math.ceil((view.paused_for or 0.0) * 1000), *self._budget(view), self._ttl]
        answer = await self._shared.run("share", self._keys[3:], args)
        if answer is not None:
            self._ledger.adopt(_view(*map(int, answer)))

    @staticmethod
    def _budget(view: SharedView) -> list[EncodableT]:
        """The primary budget this replica knows, as script arguments ('': none reported)."""
        if view.limit is None or view.remaining is None or view.reset is None:
            return ["", "", ""]
        return [view.limit, view.remaining, view.reset]

    def interval(self) -> float:
        if self._fallback is not None:
            return self._fallback.interval()
        return self._interval

    def write_delay(self) -> float:
        if self._fallback is not None:
            return self._fallback.write_delay()
        return max(0.0, self._write_delay_until - self._clock())

    def stats(self) -> BudgetStats:
        return self._fallback.stats() if self._fallback is not None else self._stats
