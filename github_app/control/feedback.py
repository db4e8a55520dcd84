"""How the runner tells the width controller and the breaker what each event cost.

The runner swallows a processor's GitHub error (one processor failing never
stops another), so the errors of one event are collected on the side: the
runner opens an ``EventReport`` for the event (held in a context variable,
which anyio gives each task its own copy of), notes each GitHub error it
catches, and when the event ends the report's worst outcome and the event's
duration go to the observer. Events that never reached a processor (no
subscriber, the app's own events) did no GitHub work and are not reported:
their near-zero durations would drag the latency baseline down.

GitHub's own latency reaches the controller by another way: the transport
tells a ``RequestMeter`` of every request while it is on the wire.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from github_app.control.controller import Outcome
from github_app.errors import GitHubError, RetryableGitHubError


@dataclass(frozen=True)
class Observation:
    latency: float  # seconds the event took
    outcome: Outcome
    retry_after: float | None = None  # seconds GitHub asked us to wait, when throttled
    installation: int | None = None  # whose limits a throttle concerns (None: the app's/unknown)


Observer = Callable[[Observation], None]


class RequestMeter(Protocol):
    """Told of every request to GitHub while it is on the wire (the width controller).

    The transport calls it around the send itself, after any wait of the app's
    own (an installation's write turn or request slot, a token mint another
    event started), so only GitHub's time is measured.
    """

    def request_started(self) -> None: ...

    def request_finished(self, latency: float | None, kind: str = "request") -> None:
        """``latency``: seconds until GitHub answered; ``None``: no answer (timeout, error).

        ``kind``: what sort of request it was (``mint``, ``read``, ``write``): each
        kind's latency is compared with its own baseline, so a change of the mix of
        requests is not read as GitHub slowing down or speeding up."""


_SEVERITY = {Outcome.OK: 0, Outcome.ERROR: 1, Outcome.THROTTLED: 2}


def outcome_of(error: BaseException) -> tuple[Outcome, float | None]:
    """What a failure says about GitHub: throttled (with retry-after), struggling, or fine.

    A rate limit is what the client layer classified as one (``github.ratelimit``),
    including a request it refused to send during an installation's pause.
    """
    if isinstance(error, RetryableGitHubError):
        if error.rate_limited:
            return Outcome.THROTTLED, error.retry_after
        return Outcome.ERROR, None  # 5xx, timeout, connection failure
    return Outcome.OK, None  # a 404 or 422 is GitHub answering, not GitHub struggling


class EventReport:
    """The worst outcome seen while one event ran."""

    def __init__(self) -> None:
        self.outcome = Outcome.OK
        self.retry_after: float | None = None
        self.did_work = False
        self.waited = 0.0  # seconds spent waiting on the installation's own pacing

    def note(self, error: BaseException) -> None:
        outcome, retry_after = outcome_of(error)
        if _SEVERITY[outcome] > _SEVERITY[self.outcome]:
            self.outcome = outcome
        if retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, retry_after)


_current: ContextVar[EventReport | None] = ContextVar("event_report", default=None)


def note_error(error: BaseException) -> None:
    """Record a GitHub error against the event being processed (if one is)."""
    report = _current.get()
    if report is not None:
        report.note(error)


def note_wait(seconds: float) -> None:
    """The event waited on its installation's pacing (write turn, request slot).

    That wait is the client layer keeping the installation's limits, not GitHub
    answering slowly: it is taken out of the latency the controller sees, or the
    latency brake would shrink the global width against a per-installation limit.
    """
    report = _current.get()
    if report is not None and seconds > 0:
        report.waited += seconds


def note_work() -> None:
    """The event reached its processors: its duration is GitHub work worth reporting."""
    report = _current.get()
    if report is not None:
        report.did_work = True


@contextmanager
def reporting(
    observer: Observer | None,
    clock: Callable[[], float] = time.perf_counter,
    *,
    installation: int | None = None,
) -> Iterator[EventReport]:
    """Collect one event's outcome; on exit send it to ``observer`` (errors raised included).

    ``installation`` scopes a throttle: one installation's secondary limit is that
    installation's business (the client layer pauses it), not a global signal.
    """
    report = EventReport()
    token = _current.set(report)
    started = clock()
    try:
        yield report
    except GitHubError as exc:
        report.note(exc)
        report.did_work = True
        raise
    finally:
        _current.reset(token)
        if observer is not None and report.did_work:
            latency = max(0.0, clock() - started - report.waited)
            observer(Observation(latency, report.outcome, report.retry_after, installation))
