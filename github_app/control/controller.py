"""Finds the dispatcher's width by itself: numbers in, a width and its reason out.

Pure and synchronous, with an injected clock: the transport tells it of every
request to GitHub (``request_started`` / ``request_finished``, the seconds it
was on the wire), the runner of each event's outcome (``observe``), and the
runtime calls ``tick`` every ``tick`` seconds with the backlog and the host
load; ``tick`` answers a ``Decision``.

It steers by what GitHub does: the latency of its requests and how many were
in flight, measured where every call passes (the transport, below the
per-installation pacing). An event's latency says little about GitHub: events
differ in how many requests they make (the first of an installation mints a
token and reads the config, a later one makes one write or none), so it moves
with the mix of events. Waiting the app imposes on itself (an installation's
write turn or request slot, a token being minted by another event, a
deferral) happens before a request goes on the wire and is never read as
GitHub slowing. Event latency is kept for the status page; the app's own
health is read from the host (CPU, event-loop lag).

Signals, strongest first:

1. Explicit throttling (secondary-limit 403/429, retry-after): multiplicative
   decrease, a pause (no growth) for the retry-after, and a ceiling just below
   the width that was throttled, so the same limit is not hit again. Only a
   global signal does this: a throttle without an installation, or throttles
   from a large share of the installations at work (one installation alone is
   all of them). A few installations throttled among many are their own
   business: the client layer pauses just those (their events wait in the
   queue), and the controller only holds its growth for that tick.
2. Errors (5xx, timeouts) above a share of outcomes: a gentle decrease.
3. Host load: CPU near a core or event-loop lag stops growth; a tick with loop
   lag of half GitHub's latency gives no latency verdict (answers waited for
   the loop, not for GitHub).
4. Request latency against a baseline. Both are EWMAs; the baseline follows a
   faster backend quickly (0.3 of the way per reading: one fast reading among
   a loaded host's noise must not set it) and a slower one slowly. Latency well
   above the baseline shrinks the width only when GitHub's throughput stops
   growing with the requests in flight: the width is probed down, and if
   throughput falls with it the slowness is GitHub's (not ours), so the
   baseline moves up and the width is restored. A uniformly
   slower GitHub therefore keeps its width (pure gradient limiters collapse
   there), while queueing we caused is taken back. "GitHub is slower" is
   checked once more at the restored width: if that width queues, the verdict
   compared epochs from both sides of a change of GitHub's (its capacity fell)
   and is undone. After a large fall of the baseline (GitHub got faster at a
   wide width, so the baseline may be measured past the new knee) the next
   probe steps down until latency stops falling with width. No step down is
   taken while the width is not in use and the requests in flight are under
   half of it (events that make few or no requests): GitHub is nearly idle then,
   and a step down from the few events busy, or a knee search from there, reads
   the mix of events as the knee.
5. Backlog: grow only with ready work and the current width in use; hold when
   all queued work waits on per-installation limits (the client layer's). Slow
   start (doubling) ends when the requests in flight do not follow a doubling:
   the slots added wait on the app's own limits (another event's token mint),
   and doubling on would park more of them, to reach GitHub together later.
   A doubling that bought only latency (GitHub's throughput did not follow) is
   taken back in one step to the width that, by Little's law, keeps GitHub's
   latency in the middle of the band where the width holds (a little past the
   knee: a dip of the requests in flight still leaves GitHub busy), never below
   the width measured at baseline.

Requests are of kinds GitHub answers in different times (a token mint, a read,
a write), and their mix changes as a burst goes on (cold events mint and read,
warm ones only write): each kind's latency is taken against its own cost
(learnt from its first answers), so the latency judged is GitHub's load, not
the mix.

Changes are measured in epochs: after a width change one tick is skipped,
then request latency and requests in flight are measured at the new width
until enough requests came back; only requests started at the new width count
for its latency. Slow start's doublings skip no tick: only requests started
once the old width's were back (the change plus GitHub's latency) count, and a
raised reading in the first tick is measured one more tick before it is judged.
Epochs are measured whenever work waits and requests are on the wire, even
with fewer events busy than the width (the app may fill slots slower than they
free up): requests past GitHub's knee queue all the same, and a shrink then
steps down from the slots in use. An epoch in which nothing was
on the wire (events that make no request) leaves GitHub idle: it gives no
latency and does not stop growth.
Two epochs are compared only across a change of requests in flight large
enough (``judge_step``) for the difference to stand out of an epoch's noise:
verdicts drawn from +1 steps ratcheted the baseline, and the width with it,
upwards.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
# The reason of the routine probe (one step down, now and then, while latency is a little
# raised): a deliberate, short excursion the next epochs take back unless the smaller width
# serves as much. Readers of the decisions log (the benchmark's settle time) recognise it.
ROUTINE_PROBE = "probing whether a smaller width serves as much"
_MIN_COST = 1e-6  # seconds: a kind answered in no time still weighs something


class Outcome(enum.Enum):
    """What GitHub's answers to one event said about GitHub."""

    OK = "ok"  # answered (a 404 or 422 is GitHub working, not GitHub struggling)
    THROTTLED = "throttled"  # secondary limit: 403/429 with retry-after
    ERROR = "error"  # 5xx, timeout, connection failure


@dataclass(frozen=True)
class ControllerSettings:
    """Tunables; the defaults suit GitHub's latencies (tens to hundreds of ms)."""

    min_width: int = 1
    max_width: int = 64
    tick: float = 0.5  # seconds between decisions
    latency_alpha: float = 0.4  # weight of a new tick's request latency in the fast EWMA
    baseline_rise: float = 0.01  # the baseline follows a slower backend this slowly...
    baseline_fall: float = 0.3  # ...and a faster one quickly (this share of the way a reading)
    grow_below: float = 1.2  # latency under this many baselines counts as baseline latency
    brake_above: float = 1.5  # latency over this many baselines is "well above"
    # GitHub's throughput following its requests in flight less than this: too wide
    min_gain: float = 0.5
    follow_gain: float = 0.8  # more than this: the latency is GitHub's, not queueing we caused
    max_gain: float = 1.4  # beyond this the backend changed along with the width: no verdict
    # A change of requests in flight smaller than this (relative) gives no verdict on gain:
    # a +1 step at width 20 moves latency less than an epoch's noise does.
    judge_step: float = 0.15
    slow_start: float = 2.0  # growth factor until a limit has been seen...
    # ...or until requests in flight grow by less than this share of a doubling (in log
    # terms): the slots added wait on the app's own limits, not on GitHub
    min_follow: float = 0.5
    step: float = 0.1  # then additive growth of this fraction (at least 1)
    probe: float = 0.8  # the factor of a shrink under the latency brake
    # Requests in flight under this share of the width, with the width not in use: GitHub
    # is nearly idle (the events at hand make few requests), so no step down is judged.
    idle_in_flight: float = 0.5
    cooldown: float = 5.0  # seconds without growth after a shrink for latency
    probe_every: float = 10.0  # seconds between probes of a smaller width when latency is raised
    throttle_factor: float = 0.5
    throttle_ceiling: float = 0.75  # of the throttled width
    default_pause: float = 1.0  # when a throttle carries no retry-after
    max_pause: float = 60.0
    ceiling_relax: float = 60.0  # seconds without throttling before the ceiling rises by 1
    global_share: float = 0.5  # of the installations at work throttled in one tick: global
    global_installations: int = 10  # this many installations throttled in one tick: global
    error_share: float = 0.1
    error_factor: float = 0.9
    min_outcomes: int = 5  # fewer outcomes than this in a tick: no error-rate judgement
    min_samples: int = 20  # requests back an epoch needs before it is judged...
    max_epoch_ticks: int = 4  # ...unless it has been measured this many ticks
    # In slow start only the latency is judged (no throughput gain yet), and a burst's
    # first seconds at a narrow width cost the most: fewer requests will do.
    slow_start_samples: int = 8
    # A kind of request (mint, read, write) is weighed once a tick brought this many answers
    # of it: one answer alone (the app's GET /app at start-up) may be unlike the rest.
    kind_samples: int = 5
    # How fast the kinds' relative costs follow what their answers show, per tick; only
    # their ratios move, so GitHub getting slower for all of them is left to the baseline.
    kind_drift: float = 0.1
    cpu_limit: float = 0.9  # fraction of one core (the event loop is one thread)
    lag_limit: float = 0.25  # seconds of event-loop lag
    # Loop lag of this share of GitHub's baseline latency (or lag_limit, if less) makes a
    # tick's latencies the app's own: answers waited for the loop, not for GitHub.
    lag_share: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.min_width <= self.max_width:
            raise ValueError("need 1 <= min_width <= max_width")
        if self.tick <= 0:
            raise ValueError("tick must be positive")


@dataclass(frozen=True)
class Backlog:
    """The queue as the controller sees it at a tick."""

    ready: int  # events that could be taken now
    in_flight: int  # events being processed
    blocked: int = 0  # queued events waiting on per-installation limits (not takeable now)


@dataclass(frozen=True)
class HostLoad:
    """From the injected sampler: this process's CPU (fraction of one core) and loop lag (s)."""

    cpu: float = 0.0
    lag: float = 0.0


IDLE_HOST = HostLoad()


@dataclass(frozen=True)
class Decision:
    at: float
    width: int
    previous: int
    action: str  # grow | shrink | backoff | hold | rebaseline
    reason: str


@dataclass(frozen=True)
class ControllerStats:
    """For the status endpoint and metrics."""

    width: int
    min_width: int
    max_width: int
    latency: float | None  # fast EWMA of GitHub's request latency, seconds
    baseline: float | None  # slow EWMA of it, seconds, at the recent mix of kinds of request
    throughput: float | None  # events/s at the last judged epoch
    ceiling: int | None  # set by throttling
    pause_left: float  # seconds of the throttle pause still to run
    slow_start: bool
    decisions: int
    last_decision: Decision | None
    completed: int
    throttled: int
    errors: int
    local_throttles: int = 0  # throttled outcomes left to their installation (no back-off)
    requests_in_flight: int = 0  # on the wire to GitHub now
    requests_in_flight_mean: float | None = None  # over the last judged epoch
    requests: int = 0  # answered by GitHub since the start
    event_latency: float | None = None  # fast EWMA of event latency (health, not steering)


@dataclass
class _KindSums:
    """The answers of one kind of request in a tick."""

    requests: int = 0
    latency: float = 0.0
    at_width: int = 0  # of requests started at the current width
    at_width_latency: float = 0.0


@dataclass(frozen=True)
class _Point:
    """One judged epoch: the width, and what was measured at it.

    ``latency`` is the latency of the requests started at this width against
    their kinds' costs (1: each as fast as its kind's baseline; ``None``:
    nothing went on the wire, GitHub was idle), ``in_flight`` the mean number
    of requests on the wire, ``throughput`` events/s.
    """

    width: int
    throughput: float
    latency: float | None
    in_flight: float = 0.0


class _Window:
    """Outcomes since the last tick."""

    def __init__(self) -> None:
        self.ok = 0
        self.latency_sum = 0.0  # of events (health, not steering)
        self.requests = 0  # answered by GitHub
        self.request_latency_sum = 0.0
        self.kinds: dict[str, _KindSums] = {}  # the answers by kind of request
        self.in_flight_area = 0.0  # request-seconds on the wire: requests in flight, integrated
        self.throttled = 0
        self.errors = 0
        self.retry_after: float | None = None
        self.unscoped_throttles = 0  # throttled outcomes that name no installation
        self.throttled_installations: set[int] = set()
        self.installations: set[int] = set()  # installations with any outcome in the window

    @property
    def outcomes(self) -> int:
        return self.ok + self.throttled + self.errors


def _ewma(previous: float | None, value: float, alpha: float) -> float:
    return value if previous is None else alpha * value + (1 - alpha) * previous


class WidthController:
    """The EWMA controller for the dispatcher's global width; see the module docstring."""

    def __init__(self, settings: ControllerSettings, *, clock: Clock, start: int | None = None):
        self.settings = settings
        self._clock = clock
        first = settings.min_width if start is None else start
        self._width = min(max(first, settings.min_width), settings.max_width)
        self._window = _Window()
        self._last_tick = clock()
        # GitHub's request latency, fast EWMA, and its baseline, both against the kinds' costs
        self._latency: float | None = None
        self._baseline: float | None = None
        # Per kind of request: its latency when GitHub's load is the reference (seconds), so a
        # request's latency / its kind's cost is comparable whatever the mix of kinds.
        self._costs: dict[str, float] = {}
        self._mix_cost: float | None = None  # the mean cost of recent requests (for stats)
        self._latency_seconds: float | None = None  # fast EWMA, seconds (for stats)
        self._event_latency: float | None = None
        self._requests_in_flight = 0
        self._busy = 0  # events being processed at the last tick
        self._area_since = self._last_tick  # in-flight requests integrated up to here
        self._requests = 0
        self._slow_start = True
        self._ceiling: int | None = None
        self._ceiling_at = 0.0
        self._paused_until = -math.inf
        self._pause_pending = -math.inf  # set by a throttled outcome, before the tick sees it
        # the epoch being measured at the current width
        self._skip = 0
        self._epoch_ticks = 0
        self._epoch_time = 0.0
        self._epoch_ok = 0
        self._epoch_at_width = 0
        self._epoch_latency = 0.0
        self._epoch_cost = 0.0  # the at-width requests' costs: what their latency would be
        self._epoch_area = 0.0
        self._fresh = False  # the next judged epoch is the first since a change
        self._quick = False  # the epoch started with no tick left out (slow start's doubling)
        # When the requests of the width before the last change were back (the change's
        # time plus GitHub's latency then): requests started from here measure this width.
        self._measured_from = -math.inf
        # After "GitHub is slower; width restored": the baseline before the move and the
        # width the verdict came from, until the restored width's first epoch confirms it.
        self._unconfirmed: tuple[float, int] | None = None
        # The baseline fell a long way at once (GitHub got faster): it was measured at the
        # width of the moment, perhaps past the new knee, so the next probe searches down
        # for the knee (where latency stops falling with width) instead of one step.
        self._search_knee = False
        self._probing = False  # the last change was a step of that search
        self._grow_after = -math.inf  # no growth before (after a shrink for latency)
        self._probe_after = -math.inf  # no probing before
        self._previous: _Point | None = None  # the judged epoch before the last change
        self._current: _Point | None = None  # the last judged epoch at this width
        self._throughput: float | None = None
        self._in_flight_mean: float | None = None
        self._decisions = 0
        self._last: Decision | None = None
        self._completed = 0
        self._throttled = 0
        self._errors = 0
        self._local_throttles = 0
        self._last_installations: set[int] = set()  # heard from in the previous tick

    @property
    def width(self) -> int:
        return self._width

    def pause_left(self) -> float:
        """Seconds GitHub's last retry-after still asks us to take no new work."""
        return max(0.0, max(self._paused_until, self._pause_pending) - self._clock())

    def request_started(self) -> None:
        """A request to GitHub went on the wire (after any pacing wait of the app's own)."""
        self._integrate()
        self._requests_in_flight += 1

    def request_finished(self, latency: float | None, kind: str = "request") -> None:
        """A request came back after ``latency`` seconds on the wire; ``None``: no answer
        (a timeout or a broken connection, which the event's outcome reports).

        ``kind`` (mint, read, write): each kind is weighed by its own cost, so a
        change of the mix (cold events mint and read, warm ones only write) is
        not read as GitHub slowing down or speeding up."""
        self._integrate()
        self._requests_in_flight = max(0, self._requests_in_flight - 1)
        if latency is None:
            return
        latency = max(0.0, latency)
        window = self._window
        window.requests += 1
        window.request_latency_sum += latency
        self._requests += 1
        sums = window.kinds.setdefault(kind, _KindSums())
        sums.requests += 1
        sums.latency += latency
        if self._clock() - latency >= self._measured_from:
            # Started at the current width, once the old width's requests were back: only
            # such requests measure it (one started before a shrink, or while the wider
            # width's requests still queued, carries that queueing with it; one started
            # at a doubling, before GitHub's queue built up, has not met it yet).
            sums.at_width += 1
            sums.at_width_latency += latency

    def _integrate(self) -> None:
        now = self._clock()
        self._window.in_flight_area += self._requests_in_flight * max(0.0, now - self._area_since)
        self._area_since = now

    def observe(
        self,
        latency: float,
        outcome: Outcome,
        retry_after: float | None = None,
        installation: int | None = None,
    ) -> None:
        """One event finished: its processing time (s), what GitHub's answers said, and
        the installation it acted as (``None``: the app itself, or unknown).

        The event's latency is kept for the status page only; GitHub's latency
        comes from its requests (``request_finished``)."""
        window = self._window
        if installation is not None:
            window.installations.add(installation)
        if outcome is Outcome.OK:
            window.ok += 1
            window.latency_sum += max(0.0, latency)
            self._completed += 1
        elif outcome is Outcome.THROTTLED:
            window.throttled += 1
            self._throttled += 1
            if retry_after is not None:
                window.retry_after = max(window.retry_after or 0.0, retry_after)
            if installation is None:
                window.unscoped_throttles += 1
            else:
                window.throttled_installations.add(installation)
            if not self._is_global(window):
                return  # so far the client layer's business: it pauses that installation
            # The pause starts now, not at the next tick: every event taken meanwhile would
            # meet the same 403. The decrease waits for the tick (once per pause).
            s = self.settings
            pause = min(max(retry_after or s.default_pause, 0.0), s.max_pause)
            self._pause_pending = max(self._pause_pending, self._clock() + pause)
        else:
            window.errors += 1
            self._errors += 1

    def tick(self, backlog: Backlog, load: HostLoad = IDLE_HOST) -> Decision:
        """Decide the width for the next tick from everything observed since the last one."""
        now = self._clock()
        elapsed = max(0.0, now - self._last_tick)
        self._last_tick = now
        self._integrate()
        window, self._window = self._window, _Window()
        previous_installations, self._last_installations = (
            self._last_installations,
            window.installations,
        )
        s = self.settings
        if s.min_width == s.max_width:
            return self._decide(now, s.min_width, "hold", "fixed width (WORKERS_MIN = WORKERS_MAX)")
        self._relax_ceiling(now)

        local_throttle: str | None = None
        if window.throttled:
            if self._is_global(window, previous_installations):
                return self._throttle(now, window)
            # A few installations among many: the client layer pauses each of them (their
            # events are deferred in the queue); the width serves the others. The gentle
            # signal: no growth this tick (measuring and the latency brake go on).
            self._local_throttles += window.throttled
            working = len(window.installations | previous_installations)
            local_throttle = (
                f"{len(window.throttled_installations)} of {working} installation(s) "
                "throttled: their own pause (client layer), no global back-off"
            )
        if now < self._paused_until:
            left = self._paused_until - now
            return self._decide(now, self._width, "hold", f"paused {left:.1f}s after throttling")
        if window.outcomes >= s.min_outcomes and window.errors / window.outcomes >= s.error_share:
            share = window.errors / window.outcomes
            target = min(self._width - 1, math.floor(self._width * s.error_factor))
            return self._change(
                now, target, "shrink", f"{share:.0%} of events failed (5xx/timeout)"
            )

        in_use = backlog.ready > 0 and backlog.in_flight >= self._in_use_at()
        # With work waiting, GitHub's latency against its requests in flight is judged even
        # when the slots are not all busy (the app may not fill them as fast as they free
        # up): requests past GitHub's knee queue all the same, and 64 slots filling up one
        # by one reach GitHub's secondary limit without the brake having looked.
        loaded = in_use or (backlog.ready > 0 and window.in_flight_area > 0)
        self._busy = backlog.in_flight
        judged = self._measure(window, elapsed, loaded, lagging=load.lag >= self._blind_lag())
        fresh = self._fresh
        if judged is not None:
            brake = self._brake(now, judged)
            if brake is not None:
                return brake
        if backlog.ready == 0:
            if backlog.blocked:
                why = f"{backlog.blocked} queued event(s) wait on per-installation limits"
                return self._decide(now, self._width, "hold", why)
            return self._decide(now, self._width, "hold", "no backlog")
        if not in_use:
            why = f"width not in use ({backlog.in_flight} of {self._width} busy)"
            return self._decide(now, self._width, "hold", why)
        # A busy host gains nothing from more width; the latency brake takes back any excess.
        if load.cpu >= s.cpu_limit:
            return self._decide(now, self._width, "hold", f"host CPU at {load.cpu:.0%}")
        if load.lag >= s.lag_limit:
            return self._decide(now, self._width, "hold", f"event-loop lag {load.lag * 1000:.0f}ms")
        if local_throttle is not None:
            return self._decide(now, self._width, "hold", local_throttle)
        if judged is None:
            return self._decide(now, self._width, "hold", "measuring the current width")
        if self._slow_start and fresh and not self._followed(judged):
            # The slots added wait on the app's own limits (a token mint of another event,
            # an installation's turn), not on GitHub: latency at baseline says nothing of
            # the width, and doubling on would release them together past GitHub's knee.
            self._slow_start = False
            return self._decide(
                now,
                self._width,
                "hold",
                "requests in flight did not follow the width: slots wait on the app's "
                "own limits; slow start ends",
            )
        base = self._baseline
        if base is not None and judged.latency is not None and judged.latency > s.grow_below * base:
            ratio = judged.latency / base
            return self._decide(now, self._width, "hold", f"latency {ratio:.2f}x baseline")
        return self._grow(now)

    # -- the parts of a decision -------------------------------------------------------------

    def _is_global(self, window: _Window, previous: set[int] | None = None) -> bool:
        """Do the throttles seen in ``window`` speak for GitHub as a whole?"""
        if window.unscoped_throttles:
            return True
        throttled = len(window.throttled_installations)
        if throttled == 0:
            return False
        s = self.settings
        # The installations at work: those heard from this tick and the tick before (at the
        # start of a tick one early answer must not count as "all of them").
        earlier = self._last_installations if previous is None else previous
        working = max(1, len(window.installations | earlier))
        return throttled >= s.global_installations or throttled >= s.global_share * working

    def _throttle(self, now: float, window: _Window) -> Decision:
        s = self.settings
        pause = window.retry_after if window.retry_after is not None else s.default_pause
        pause = min(max(pause, 0.0), s.max_pause)
        first = now >= self._paused_until
        self._paused_until = max(self._paused_until, now + pause)
        self._slow_start = False
        self._ceiling_at = now
        reason = f"{window.throttled} event(s) throttled; pausing growth {pause:.1f}s"
        if not first:  # one decrease per pause: events started before it may still be throttled
            return self._decide(now, self._width, "hold", reason)
        # The ceiling too is lowered once per pause, from the width that met the limit.
        ceiling = max(s.min_width, math.floor(self._width * s.throttle_ceiling))
        self._ceiling = ceiling if self._ceiling is None else min(self._ceiling, ceiling)
        target = math.floor(self._width * s.throttle_factor)
        return self._change(now, target, "backoff", reason)

    def _measure(
        self, window: _Window, elapsed: float, loaded: bool, *, lagging: bool = False
    ) -> _Point | None:
        """Add this tick to the epoch; returns the epoch's point when it is ready to judge.

        ``lagging``: the event loop stalled in this tick (lag of half GitHub's baseline
        latency or more), so the latencies the transport measured carry the app's own
        delay (an answer waited for the loop), not GitHub's: the tick is left out of
        the epoch and of the baseline."""
        s = self.settings
        alpha = s.latency_alpha
        if window.ok:
            self._event_latency = _ewma(self._event_latency, window.latency_sum / window.ok, alpha)
        if window.requests:
            seconds = window.request_latency_sum / window.requests
            self._latency_seconds = _ewma(self._latency_seconds, seconds, alpha)
        if lagging:
            self._skip = max(0, self._skip - 1)
            return None
        self._weigh_kinds(window)
        requests, latency_sum, cost = self._weighed(window, at_width=False)
        if cost > 0:
            mean = latency_sum / cost
            self._latency = _ewma(self._latency, mean, alpha)
            self._mix_cost = _ewma(self._mix_cost, cost / requests, alpha)
            if self._baseline is not None and not loaded and requests >= s.min_samples:
                # unloaded moments show the backend's own latency
                self._follow_baseline(mean)
        if self._skip:
            self._skip -= 1
            return None
        if not loaded:
            # throughput is set by arrivals, not by width: nothing to learn about width
            self._reset_epoch()
            return None
        self._epoch_ticks += 1
        self._epoch_time += elapsed
        self._epoch_ok += window.ok
        at_width, at_width_latency, at_width_cost = self._weighed(window, at_width=True)
        self._epoch_at_width += at_width
        self._epoch_latency += at_width_latency
        self._epoch_cost += at_width_cost
        self._epoch_area += window.in_flight_area
        needed = s.slow_start_samples if self._slow_start else s.min_samples
        if self._epoch_at_width < needed and self._epoch_ticks < s.max_epoch_ticks:
            return None
        if self._epoch_time <= 0:
            self._reset_epoch()
            return None
        latency: float | None = None
        if self._epoch_cost > 0:
            latency = self._epoch_latency / self._epoch_cost
        elif self._epoch_area > 0 and self._baseline is not None:
            # Requests on the wire and none back in the whole epoch: wait for them.
            self._reset_epoch()
            return None
        # (Nothing on the wire, or nothing back before any baseline: GitHub shows no
        # load to judge, so width is the only lever.)
        if (
            self._quick
            and self._epoch_ticks == 1
            and latency is not None
            and self._baseline is not None
            and latency > s.grow_below * self._baseline
        ):
            # A doubling's first tick shows GitHub's queue building up (the new slots
            # fill as events get their turns), and only its quicker requests are back:
            # a raised latency then is measured one more tick before it is judged.
            return None
        self._quick = False
        point = _Point(
            self._width,
            self._epoch_ok / self._epoch_time,
            latency,
            self._epoch_area / self._epoch_time,
        )
        if self._baseline is None and latency is not None:
            # The first epoch's requests, not the first request: one answer alone (the
            # app's own GET /app at start-up) may be of a kind far faster than the rest.
            self._baseline = latency
        self._current = point
        self._throughput = point.throughput
        self._in_flight_mean = point.in_flight
        self._reset_epoch()
        return point

    def _weigh_kinds(self, window: _Window) -> None:
        """Learn the cost of each kind of request first seen in this tick (enough answers of
        it), and let the known kinds' relative costs follow what their answers show.

        A new kind is taken to be as loaded as the known ones answered in the same
        tick (or as the latency EWMA says), so it may first appear under load."""
        s = self.settings
        known = [(self._costs[k], v) for k, v in window.kinds.items() if k in self._costs]
        cost = sum(c * v.requests for c, v in known)
        load = sum(v.latency for _, v in known) / cost if cost > 0 else self._latency
        if load is None or load <= 0:
            load = 1.0
        steady = [
            (kind, sums)
            for kind, sums in window.kinds.items()
            if kind in self._costs and sums.requests >= s.kind_samples
        ]
        if len(steady) >= 2:
            for kind, sums in steady:
                own = sums.latency / sums.requests / self._costs[kind]
                if own > 0:
                    self._costs[kind] *= (own / load) ** s.kind_drift
        for kind, sums in window.kinds.items():
            if kind not in self._costs and sums.requests >= s.kind_samples:
                self._costs[kind] = max(sums.latency / sums.requests / load, _MIN_COST)

    def _weighed(self, window: _Window, *, at_width: bool) -> tuple[int, float, float]:
        """The answers of kinds with a known cost: how many, their latency, their cost (s)."""
        requests, latency, cost = 0, 0.0, 0.0
        for kind, sums in window.kinds.items():
            kind_cost = self._costs.get(kind)
            if kind_cost is None:
                continue
            count = sums.at_width if at_width else sums.requests
            requests += count
            latency += sums.at_width_latency if at_width else sums.latency
            cost += count * kind_cost
        return requests, latency, cost

    def _seconds(self, latency: float) -> float:
        """A latency against the kinds' costs, in seconds at the recent mix of requests."""
        return latency * (self._mix_cost or 1.0)

    def _brake(self, now: float, point: _Point) -> Decision | None:
        """The latency brake; None when latency gives no reason to act (growth may follow)."""
        s = self.settings
        base = self._baseline
        if base is None or point.latency is None:  # nothing back yet, or nothing on the wire
            self._fresh = False
            return None
        gain = self._gain(point)
        previous = self._previous
        ratio = point.latency / base
        unconfirmed, self._unconfirmed = self._unconfirmed, None
        if unconfirmed is not None and ratio > s.grow_below:
            # The restored width queues after all: the verdict compared an epoch from
            # before a change of GitHub's (its capacity fell) with one after it.
            before, smaller = unconfirmed
            self._baseline = before
            moved = self._seconds(before) * 1000
            return self._change(
                now,
                smaller,
                "shrink",
                f"restored width queues (latency {ratio:.2f}x the moved baseline): the "
                f"slowdown is ours after all; baseline back to {moved:.0f}ms",
            )
        probing, self._probing = self._probing, False
        if probing and gain is not None and previous is not None and previous.width > point.width:
            if gain < s.min_gain and point.width > s.min_width:
                # Latency fell with width: still past the knee, so the baseline (measured
                # past it too, e.g. when GitHub got faster at a wide width) is too high.
                self._follow_baseline(point.latency)
                return self._probe_down(
                    now,
                    point,
                    f"latency fell with width (gain {gain:.2f}): still queueing; lower",
                )
            if ratio <= s.grow_below:
                # Latency stopped falling: the knee lies between the two widths, and this
                # epoch measured GitHub's own latency.
                self._search_knee = False
                self._follow_baseline(point.latency)
                return self._change(
                    now,
                    previous.width,
                    "grow",
                    f"latency stopped falling with width (gain {gain:.2f}): the knee is "
                    f"between {point.width} and {previous.width}",
                )
        if ratio <= s.grow_below:
            self._follow_baseline(point.latency)
            return None
        shown = "unknown" if gain is None else f"{gain:.2f}"
        if previous is not None and gain is not None and gain >= s.follow_gain:
            # Throughput follows width: the latency is GitHub's, not queueing we caused.
            self._baseline = self._latency = point.latency
            if previous.width > point.width:
                # No cooldown (it is for widths found to queue, and the probes' was read
                # wrong): growth resumes once the restored width's first epoch confirms.
                self._grow_after = -math.inf
                self._unconfirmed = (base, point.width)
                return self._change(
                    now,
                    previous.width,
                    "rebaseline",
                    f"latency {ratio:.2f}x baseline, but throughput fell with width "
                    f"(gain {shown}): GitHub is slower; baseline moved, width restored",
                )
            return self._decide(
                now,
                self._width,
                "rebaseline",
                f"latency {ratio:.2f}x baseline, but throughput grew with width (gain {shown})",
            )
        self._slow_start = False
        # A growth that bought only latency is taken back at once (after slow start's
        # doubling past the knee, one step back instead of several probes down). GitHub's
        # throughput did not grow, so by Little's law the requests it serves at a latency
        # of ``aim`` baselines are this width's in flight x aim / ratio: the width goes
        # back to that share of itself (the middle of the band where it holds, a little
        # past the knee, where a dip of the requests in flight still keeps GitHub busy),
        # never below the width measured at baseline.
        if (
            previous is not None
            and gain is not None
            and gain < s.min_gain
            and previous.width < point.width
        ):
            self._grow_after = now + s.cooldown
            self._probe_after = now + s.probe_every  # the two epochs just measured the knee
            aim = (s.grow_below + s.brake_above) / 2
            back = max(previous.width, min(point.width - 1, round(point.width * aim / ratio)))
            return self._change(
                now,
                back,
                "shrink",
                f"latency {ratio:.2f}x baseline and throughput did not grow with width "
                f"(gain {shown}): back to {back}",
            )
        if ratio > s.brake_above:
            decision = self._probe_down(
                now,
                point,
                f"latency {ratio:.2f}x baseline and throughput not following width (gain {shown})",
            )
            if decision.action == "shrink":
                self._grow_after = now + s.cooldown
            return decision
        # Between the two thresholds: now and then try a smaller width; otherwise hold.
        if now >= self._probe_after:
            self._probe_after = now + s.probe_every
            return self._probe_down(
                now,
                point,
                f"latency {ratio:.2f}x baseline: {ROUTINE_PROBE}",
            )
        return self._decide(now, self._width, "hold", f"latency {ratio:.2f}x baseline")

    def _probe_down(self, now: float, point: _Point, reason: str) -> Decision:
        """One step down (by ``probe``); the next epoch says whether latency fell with it.

        From the slots in use when far fewer than the width are (a step down from an
        unused width would change nothing GitHub sees). None while the width is not in
        use and the epoch's requests in flight were far below it: events that make few
        or no requests (a round of events no rule matches) leave GitHub nearly idle,
        and a raised latency of the few requests left is no sign of queueing at its
        knee; stepping down from the few events busy then (and searching on for the
        knee from there) took a width of 19 to 4 in the mixed benchmark."""
        s = self.settings
        idle = self._busy < self._in_use_at()
        if idle and point.in_flight < s.idle_in_flight * point.width:
            return self._decide(
                now,
                self._width,
                "hold",
                f"latency raised, but {self._busy} of {self._width} busy and "
                f"{point.in_flight:.1f} request(s) in flight: GitHub nearly idle, no step "
                "down judged",
            )
        used = self._width if not idle else max(1, self._busy)
        target = min(self._width - 1, math.floor(used * self.settings.probe))
        decision = self._change(now, target, "shrink", reason)
        self._probing = self._search_knee and decision.width != decision.previous
        return decision

    def _follow_baseline(self, latency: float) -> None:
        """A faster backend is followed quickly, a slower one slowly (and only near baseline)."""
        s = self.settings
        base = self._baseline
        if base is None:
            self._baseline = latency
        elif latency < base:
            self._baseline = s.baseline_fall * latency + (1 - s.baseline_fall) * base
            if latency * s.grow_below < base and not self._slow_start:
                # (in slow start the first, cold epochs set a high baseline: no knee to find)
                self._search_knee = True
        elif latency <= s.grow_below * base:
            self._baseline = s.baseline_rise * latency + (1 - s.baseline_rise) * base

    def _blind_lag(self) -> float:
        """Event-loop lag from which a tick's request latencies are not GitHub's."""
        s = self.settings
        if self._baseline is None:
            return s.lag_limit
        return min(s.lag_limit, s.lag_share * self._seconds(self._baseline))

    def _in_use_at(self) -> int:
        """Events busy from which the width counts as in use (slots free up and refill
        between ticks: a few may be being refilled)."""
        return max(1, math.floor(self._width * 0.8))

    def _followed(self, point: _Point) -> bool:
        """Did the requests in flight follow the last growth (at least ``min_follow`` of it,
        in proportion)? True when there is nothing to compare."""
        previous = self._previous
        if (
            previous is None
            or previous.width >= point.width
            or previous.in_flight <= 0
            or point.in_flight <= 0
        ):
            return True
        follow = math.log(point.in_flight / previous.in_flight) / math.log(
            point.width / previous.width
        )
        return follow >= self.settings.min_follow

    def _gain(self, point: _Point) -> float | None:
        """How much GitHub's throughput followed the last change (1 = in proportion).

        GitHub's throughput is its requests in flight / their latency (Little's
        law), so the gain is read from the latencies against the requests in
        flight: 1 - d(log latency) / d(log requests in flight). Both are what
        GitHub saw, whatever the mix of events behind them. Latency averaged over
        an epoch's requests is steadier than a count of completions, and only
        requests started at each width enter it. Only the first epoch after a
        change is compared with the one before it (later ones may straddle a change
        of GitHub's), and only after a step large enough to stand out of the noise.
        """
        previous = self._previous
        fresh, self._fresh = self._fresh, False
        if (
            not fresh
            or previous is None
            or previous.latency is None
            or point.latency is None
            or previous.latency <= 0
            or point.latency <= 0
            or previous.in_flight <= 0
            or point.in_flight <= 0
        ):
            return None
        step = math.log(point.in_flight / previous.in_flight)
        if abs(step) < math.log1p(self.settings.judge_step):
            return None
        elasticity = math.log(point.latency / previous.latency) / step
        gain = 1.0 - elasticity
        return gain if abs(gain) <= self.settings.max_gain else None

    def _grow(self, now: float) -> Decision:
        s = self.settings
        if now < self._grow_after:
            left = self._grow_after - now
            return self._decide(
                now, self._width, "hold", f"cooling down {left:.1f}s after a shrink"
            )
        if self._slow_start:
            target = math.ceil(self._width * s.slow_start)
        else:
            target = self._width + max(1, round(self._width * s.step))
        limit = self._limit()
        if self._width >= limit:
            why = "at the throttle ceiling" if limit == self._ceiling else "at WORKERS_MAX"
            return self._decide(now, self._width, "hold", why)
        return self._change(
            now, min(target, limit), "grow", "backlog, width in use, latency at baseline"
        )

    def _limit(self) -> int:
        """The widest the width may be: WORKERS_MAX, or the throttle ceiling under it."""
        s = self.settings
        return s.max_width if self._ceiling is None else min(s.max_width, self._ceiling)

    def _relax_ceiling(self, now: float) -> None:
        if self._ceiling is not None and now - self._ceiling_at >= self.settings.ceiling_relax:
            self._ceiling += 1
            self._ceiling_at = now
            if self._ceiling >= self.settings.max_width:
                self._ceiling = None

    # -- bookkeeping ------------------------------------------------------------------------

    def _change(self, now: float, target: int, action: str, reason: str) -> Decision:
        s = self.settings
        # The throttle ceiling bounds every way up, a width restored by a verdict included:
        # after a back-off the epochs before and after it straddle GitHub's limit.
        target = min(max(target, s.min_width), self._limit())
        if target == self._width:
            return self._decide(now, target, "hold", f"{reason} (already at the bound)")
        if self._current is not None and self._current.width == self._width:
            self._previous = self._current
        self._current = None
        self._reset_epoch()
        # One tick is left out for the requests of the old width to come back; in slow
        # start's doubling only requests started at the new width once those were back
        # are judged, so its epochs start at once (8 to 32 in about a second, not two)
        # and take a second tick only when too few such requests came back in the first.
        self._skip = 0 if self._slow_start and action == "grow" else 1
        self._quick = self._skip == 0
        self._fresh = True
        # (Otherwise the tick left out lets the old width's requests come back.)
        drain = (self._latency_seconds or 0.0) if self._quick else 0.0
        self._measured_from = now + drain
        self._probing = False
        return self._decide(now, target, action, reason)

    def _reset_epoch(self) -> None:
        self._epoch_ticks = 0
        self._epoch_time = 0.0
        self._epoch_ok = 0
        self._epoch_at_width = 0
        self._epoch_latency = 0.0
        self._epoch_cost = 0.0  # the at-width requests' costs: what their latency would be
        self._epoch_area = 0.0

    def _decide(self, now: float, width: int, action: str, reason: str) -> Decision:
        decision = Decision(now, width, self._width, action, reason)
        self._width = width
        self._decisions += 1
        self._last = decision
        return decision

    def stats(self) -> ControllerStats:
        return ControllerStats(
            width=self._width,
            min_width=self.settings.min_width,
            max_width=self.settings.max_width,
            latency=self._latency_seconds,
            baseline=None if self._baseline is None else self._seconds(self._baseline),
            throughput=self._throughput,
            ceiling=self._ceiling,
            pause_left=self.pause_left(),
            slow_start=self._slow_start,
            decisions=self._decisions,
            last_decision=self._last,
            completed=self._completed,
            throttled=self._throttled,
            errors=self._errors,
            local_throttles=self._local_throttles,
            requests_in_flight=self._requests_in_flight,
            requests_in_flight_mean=self._in_flight_mean,
            requests=self._requests,
            event_latency=self._event_latency,
        )
