"""Every few seconds, turns the parts' counters into one history sample (rates, percentiles).

The parts already count everything the dashboard shows; nothing here adds
work where deliveries or events pass. A ``Reading`` is what the parts' stats
say at one instant (gauges, and counters that only grow); two consecutive
readings make a sample: counters become rates per second, the processing
histogram's buckets become p50 and p99 of the events finished in between.
A counter that went down (an installation the gateway forgot) counts as no
change, never as a negative rate.

``Sampler.step`` is synchronous and clock-injected (the tests drive it);
``Sampler.run`` is the task the runtime's task group owns.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from github_app.admin.history import HOUR, History
from github_app.control.controller import Decision
from github_app.dispatch.runner import ProcessorStats
from github_app.github.ratelimit import GatewayStats
from github_app.github.transport import WRITE_METHODS
from github_app.intake.route import IntakeStats
from github_app.queue.memory import QueueStats
from github_app.queue.priority import Priority

log = logging.getLogger(__name__)

Clock = Callable[[], float]

INTERVAL = 2.0  # seconds between samples
ACTIVITY_WINDOW = 60.0  # "requests and writes in the last minute" per installation
DEPTH_SERIES = tuple(f"depth_{p.name.lower()}" for p in Priority)
RATE_SERIES = (
    "received_per_s",
    "admitted_per_s",
    "processed_per_s",
    "failed_per_s",
    "refused_per_s",
    "dead_lettered_per_s",
    "github_ok_per_s",
    "github_not_modified_per_s",
    "github_limited_per_s",
)
SERIES = (
    *DEPTH_SERIES,
    "in_flight",
    "oldest_wait",
    *RATE_SERIES,
    "latency_p50",
    "latency_p99",
    "width",
    "secondary_limits",  # secondary-limit answers in the interval (a count, not a rate)
    "budget_left",  # the lowest known remaining budget among installations
)


@dataclass(frozen=True)
class Reading:
    """What the parts' stats say at one instant: gauges, and counters that only grow."""

    depth: Mapping[str, int]  # per priority name
    in_flight: int
    oldest_wait: float | None
    width: int
    budget_left: int | None
    counters: Mapping[str, int]  # keyed by RATE_SERIES names without "_per_s"
    secondary_limits: int
    latency_bounds: Sequence[float] = ()  # upper bounds of the processing histogram's buckets
    latency_counts: Sequence[float] = ()  # cumulative counts per bucket (the last is +Inf)
    installations: Mapping[int, tuple[int, int]] = field(default_factory=dict)  # requests, writes


def reading_from(
    *,
    queue: QueueStats,
    intake: IntakeStats,
    runner: ProcessorStats,
    width: int,
    github: GatewayStats,
    latency: tuple[Sequence[float], Sequence[float]] = ((), ()),
) -> Reading:
    """A reading from the parts' own stats snapshots (the status document reads the same)."""
    total = github.total
    limited = total.secondary_limit_hits + total.primary_limit_hits
    budgets = [s.remaining for s in github.installations.values() if s.remaining is not None]
    return Reading(
        depth=queue.depth_by_priority,
        in_flight=queue.in_flight,
        oldest_wait=queue.oldest_wait,
        width=width,
        budget_left=min(budgets) if budgets else None,
        counters={
            "received": intake.received,
            "admitted": queue.admitted,
            "processed": runner.events_ok + runner.events_failed,
            "failed": runner.events_failed,
            "refused": sum(queue.refused_by_priority.values()),
            "dead_lettered": sum(queue.dead_lettered_by_reason.values()),
            "github_ok": max(0, total.requests - total.not_modified - limited),
            "github_not_modified": total.not_modified,
            "github_limited": limited,
        },
        secondary_limits=total.secondary_limit_hits,
        latency_bounds=latency[0],
        latency_counts=latency[1],
        installations={
            installation: (
                stats.requests,
                sum(n for method, n in stats.calls.items() if method in WRITE_METHODS),
            )
            for installation, stats in github.installations.items()
        },
    )


def quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The ``q`` quantile of a cumulative histogram, interpolated inside its bucket.

    As Prometheus' ``histogram_quantile``: the lowest bucket starts at 0, and a
    quantile in the open last bucket is the highest finite bound. ``None`` when empty.
    """
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    below = 0.0
    for index, cumulative in enumerate(counts):
        if cumulative >= rank:
            if index >= len(bounds):
                return bounds[-1] if bounds else None
            lower = bounds[index - 1] if index else 0.0
            inside = cumulative - below
            share = (rank - below) / inside if inside else 1.0
            return lower + (bounds[index] - lower) * share
        below = cumulative
    return bounds[-1] if bounds else None


def _growth(now: float, before: float) -> float:
    return max(0.0, now - before)


def sample_between(previous: Reading, current: Reading, seconds: float) -> dict[str, float | None]:
    """One history sample: the current gauges, and what the counters did over ``seconds``."""
    seconds = max(seconds, 1e-9)
    values: dict[str, float | None] = {
        f"depth_{name.lower()}": count for name, count in current.depth.items()
    }
    for name in RATE_SERIES:
        counter = name.removesuffix("_per_s")
        grown = _growth(current.counters.get(counter, 0), previous.counters.get(counter, 0))
        values[name] = grown / seconds
    counts = current.latency_counts
    if len(previous.latency_counts) == len(counts):
        counts = [
            _growth(now, before)
            for now, before in zip(counts, previous.latency_counts, strict=True)
        ]
    values["latency_p50"] = quantile(0.5, current.latency_bounds, counts)
    values["latency_p99"] = quantile(0.99, current.latency_bounds, counts)
    values["in_flight"] = current.in_flight
    values["oldest_wait"] = current.oldest_wait
    values["width"] = current.width
    values["secondary_limits"] = _growth(current.secondary_limits, previous.secondary_limits)
    values["budget_left"] = current.budget_left
    return values


class InstallationActivity:
    """Requests and writes per installation over the last minute, from cumulative counts.

    Keeps the previous counts (one pair per installation the gateway knows, which
    it bounds) and the last minute's increments of installations that did something.
    """

    def __init__(self, window: int) -> None:
        self._previous: dict[int, tuple[int, int]] = {}
        self._increments: deque[dict[int, tuple[int, int]]] = deque(maxlen=max(1, window))

    def add(self, counts: Mapping[int, tuple[int, int]]) -> None:
        increments: dict[int, tuple[int, int]] = {}
        for installation, (requests, writes) in counts.items():
            before = self._previous.get(installation, (0, 0))
            grown = (max(0, requests - before[0]), max(0, writes - before[1]))
            if grown != (0, 0):
                increments[installation] = grown
        self._previous = dict(counts)
        self._increments.append(increments)

    def last_minute(self) -> dict[int, tuple[int, int]]:
        totals: dict[int, tuple[int, int]] = {}
        for increments in self._increments:
            for installation, (requests, writes) in increments.items():
                had = totals.get(installation, (0, 0))
                totals[installation] = (had[0] + requests, had[1] + writes)
        return totals


def width_change_label(decision: Decision) -> str | None:
    """A chart mark for a controller decision that changed the width; ``None`` for a hold."""
    if decision.width == decision.previous:
        return None
    return f"{decision.action} {decision.previous} \u2192 {decision.width}"


class Sampler:
    """Records one sample per ``interval`` into ``history`` from ``read()``."""

    def __init__(
        self,
        history: History,
        read: Callable[[], Reading],
        *,
        interval: float = INTERVAL,
        monotonic: Clock = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError("the sampling interval must be positive")
        self.history = history
        self.interval = interval
        self._read = read
        self._monotonic = monotonic
        self._previous: tuple[float, Reading] | None = None
        self.activity = InstallationActivity(round(ACTIVITY_WINDOW / interval))

    def step(self) -> None:
        """Take a reading; from the second one on, record the sample since the last."""
        now, reading = self._monotonic(), self._read()
        previous, self._previous = self._previous, (now, reading)
        self.activity.add(reading.installations)
        if previous is not None:
            self.history.record(sample_between(previous[1], reading, now - previous[0]))

    def decided(self, decision: Decision) -> None:
        """The width controller's verdict of a tick: width changes become chart marks."""
        label = width_change_label(decision)
        if label is not None:
            self.history.mark(label, decision.reason)

    def document(self, *, start: int | None, span: float = HOUR) -> dict[str, Any]:
        """The history as the status route serves it, with the installations' last minute."""
        window = self.history.window(start=start, span=span)
        window["interval"] = self.interval
        window["installations_last_minute"] = {
            str(installation): {"requests": requests, "writes": writes}
            for installation, (requests, writes) in self.activity.last_minute().items()
        }
        return window

    async def run(self) -> None:
        """Sample on a fixed cadence until cancelled (the runtime's task group owns this).

        A failing reading costs that sample only: the dashboard must never stop the app.
        """
        next_at = anyio.current_time()
        while True:
            try:
                self.step()
            except Exception:
                log.exception("dashboard history: this sample is lost")
            next_at += self.interval
            now = anyio.current_time()
            if next_at < now:  # fell behind (a stalled loop): keep the cadence from now on
                next_at = now + self.interval
            await anyio.sleep(next_at - now)
