"""One round of recovery, and the loop that runs one at start-up and every RECOVERY_INTERVAL.

A round reads GitHub's delivery log newest first, page by page, back to the
checkpoint (first time: RECOVERY_LOOKBACK; never beyond GitHub's retention),
lets ``plan`` decide, and asks GitHub to redeliver what it chose, one request
at a time through the gateway (which paces them and honours rate limits).

Faults stop a round cleanly and keep the checkpoint, so the next round reads
the same log again: a page that fails (5xx, timeout, a rate limit) or holds a
malformed entry; a rate limit also puts the next round off until GitHub's
``retry-after``. A redelivery request GitHub refuses for good (404, 422)
counts as an attempt, so the guid is given up after RECOVERY_MAX_ATTEMPTS.

Rounds with ``--since`` or ``--event`` (the operator's command) and dry runs
leave the checkpoint where it is: they did not look at everything the loop
would have.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Protocol

import anyio

from github_app.config import DEFAULT_API_URL, Settings
from github_app.errors import GitHubError, RetryableGitHubError, StoreUnavailable
from github_app.github.hook_deliveries import DeliveryPage, LoggedDelivery, MalformedDelivery
from github_app.github.pacing import serving
from github_app.logs import EVENT_CONTEXT
from github_app.queue.priority import Priority
from github_app.recovery.plan import Candidate, Plan, Skip, failed_guids, plan_round
from github_app.recovery.store import RecoveryStore, RequestRecord

log = logging.getLogger(__name__)

Clock = Callable[[], float]

DAY = 24 * 3600.0
RETENTION_GITHUB_COM = 3 * DAY
RETENTION_ENTERPRISE = 7 * DAY
DEFAULT_WINDOW = 300.0  # when the loop is off (operator's command alone)
MAX_REQUESTS_PER_ROUND = 250  # at one a second, a round ends before the next begins
START_DELAY = 5.0  # the first round waits for the server to listen (redeliveries come at once)
ELSEWHERE = "another replica is running a round"


def retention(api_url: str) -> float:
    """How long GitHub keeps deliveries for redelivery: 3 days on github.com, 7 on GHES."""
    return RETENTION_GITHUB_COM if api_url.rstrip("/") == DEFAULT_API_URL else RETENTION_ENTERPRISE


class DeliveryLog(Protocol):
    """The two GitHub calls recovery makes (``GitHubGateway`` has them)."""

    async def delivery_log_page(self, cursor: str | None = None) -> DeliveryPage: ...

    async def redeliver(self, delivery_id: int) -> None: ...


class Progress(Protocol):
    """What a round tells as it goes (the operator command draws it)."""

    def paged(self, pages: int, seen: int, oldest: float | None, since: float) -> None: ...

    def requesting(self, total: int) -> None: ...

    def requested(self, candidate: Candidate, ok: bool) -> None: ...


@dataclass(frozen=True)
class RoundReport:
    """One round: what it read, decided and sent (times are wall-clock epochs)."""

    started_at: float
    since: float
    dry_run: bool = False
    finished_at: float | None = None
    pages: int = 0
    seen: int = 0  # attempts read
    failed: int = 0  # events no attempt delivered
    requested: int = 0  # redeliveries GitHub accepted (dry run: would request)
    request_failed: int = 0  # redelivery requests GitHub refused
    given_up: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    outcome: str = "running"  # complete | stopped: why
    checkpoint: float | None = None
    # what was (or, in a dry run, would be) requested; for the command's table, not the status
    candidates: tuple[Candidate, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class RecoveryStats:
    """Recovery as a whole, for ``/admin/status``, ``/metrics`` and the dashboard."""

    enabled: bool
    off_reason: str | None
    interval: float
    rounds: int
    requested: int  # redeliveries GitHub accepted, since start
    request_failed: int
    recovered: int  # requested events that came back and were admitted
    given_up: int
    outstanding: int  # requested, not back yet
    checkpoint: float | None
    next_round_at: float | None
    last_round: RoundReport | None


class Recovery:
    """Rounds of recovery over one delivery log and one store."""

    def __init__(
        self,
        log: DeliveryLog,
        store: RecoveryStore,
        *,
        interval: float,
        lookback: float,
        retention: float,
        max_attempts: int,
        max_requests: int = MAX_REQUESTS_PER_ROUND,
        off_reason: str | None = None,
        start_delay: float = START_DELAY,
        clock: Clock = time.time,
    ) -> None:
        self._log = log
        self._store = store
        self._interval = interval
        self._lookback = min(lookback, retention)
        self._retention = retention
        self._max_attempts = max_attempts
        self._max_requests = max_requests
        self._off_reason = off_reason if off_reason else (None if interval > 0 else "interval 0")
        self._start_delay = start_delay
        self._clock = clock
        self._window = interval if interval > 0 else DEFAULT_WINDOW
        self._not_before = 0.0
        self._outstanding: dict[str, float] = {}
        self._rounds = 0
        self._requested = 0
        self._request_failed = 0
        self._recovered = 0
        self._given_up = 0
        self._next_round_at: float | None = None
        self._last: RoundReport | None = None
        self.round_done = anyio.Event()  # set after each round (tests and benchmarks wait on it)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        log: DeliveryLog,
        store: RecoveryStore,
        *,
        start_delay: float = START_DELAY,
        clock: Clock = time.time,
    ) -> Recovery:
        off = None
        if not settings.has_credentials:
            off = "no app credentials"
        elif settings.dry_run:
            off = "dry run"
        elif settings.recovery_interval <= 0:
            off = "RECOVERY_INTERVAL is 0"
        return cls(
            log,
            store,
            interval=settings.recovery_interval,
            lookback=settings.recovery_lookback,
            retention=retention(settings.github_api_url),
            max_attempts=settings.recovery_max_attempts,
            off_reason=off,
            start_delay=start_delay,
            clock=clock,
        )

    @property
    def enabled(self) -> bool:
        return self._off_reason is None

    def stats(self) -> RecoveryStats:
        self._count_recovered()
        return RecoveryStats(
            enabled=self.enabled,
            off_reason=self._off_reason,
            interval=self._interval,
            rounds=self._rounds,
            requested=self._requested,
            request_failed=self._request_failed,
            recovered=self._recovered,
            given_up=self._given_up,
            outstanding=len(self._outstanding),
            checkpoint=self._store.checkpoint(),
            next_round_at=self._next_round_at,
            last_round=self._last,
        )

    def _count_recovered(self) -> None:
        """Requested events the queue has admitted since; those older than GitHub keeps are
        dropped (they will not come)."""
        horizon = self._clock() - self._retention
        for guid, at in list(self._outstanding.items()):
            if self._store.knows(guid):
                self._recovered += 1
                del self._outstanding[guid]
            elif at < horizon:
                del self._outstanding[guid]

    async def run(self) -> None:
        """Rounds until cancelled: the first after ``start_delay``, then every interval (or
        later, when GitHub asked us to wait; at once when a round left events over its cap)."""
        if not self.enabled:
            log.info("recovery of failed deliveries is off: %s", self._off_reason)
            return
        log.info(
            "recovery of failed deliveries: every %gs, reading back at most %gs",
            self._interval,
            self._lookback,
        )
        await anyio.sleep(self._start_delay)
        while True:
            interval = self._interval
            try:
                report = await self.round()
            except StoreUnavailable as exc:  # Redis away: the next round reads on from the record
                log.warning("recovery round put off: %s", exc)
            except Exception:  # a bug in one round must not stop the app; the next may work
                log.exception("recovery round failed")
            else:
                if report.skipped.get(Skip.OVER_CAP):
                    interval = 0.0  # more is waiting: the pacing alone spaces the requests
            now = self._clock()
            wait = max(interval, self._not_before - now)
            self._next_round_at = now + wait
            await anyio.sleep(wait)

    async def round(
        self,
        *,
        since: float | None = None,
        event: str | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> RoundReport:
        """Read the log back to ``since`` (default: the checkpoint), request what the plan
        chose (unless ``dry_run``); the report says what happened. Replicas sharing a store
        take turns: while another runs a round, this one is skipped and says so."""
        async with self._store.exclusive() as ours:
            if ours:
                return await self._exclusive_round(since, event, dry_run, progress)
        now = self._clock()
        skipped = RoundReport(
            started_at=now,
            since=now,
            dry_run=dry_run,
            outcome=f"skipped: {ELSEWHERE}",
            checkpoint=self._store.checkpoint(),
        )
        return self._ended(skipped)

    async def _exclusive_round(
        self,
        since: float | None,
        event: str | None,
        dry_run: bool,
        progress: Progress | None,
    ) -> RoundReport:
        self._count_recovered()
        now = self._clock()
        previous = self._store.checkpoint()
        moves_checkpoint = since is None and event is None and not dry_run
        start = since if since is not None else previous
        start = max(start if start is not None else now - self._lookback, now - self._retention)
        report = RoundReport(started_at=now, since=start, dry_run=dry_run, checkpoint=previous)
        self._last = report
        try:
            report = await self._round(report, event, moves_checkpoint, progress)
        except BaseException:
            self._ended(report)
            raise
        return self._ended(report)

    def _ended(self, report: RoundReport) -> RoundReport:
        """Count the round, keep its report (finished now) and wake whoever waits for it."""
        self._rounds += 1
        self._last = replace(report, finished_at=self._clock())
        self.round_done.set()
        self.round_done = anyio.Event()
        return self._last

    async def _round(
        self,
        report: RoundReport,
        event: str | None,
        moves_checkpoint: bool,
        progress: Progress | None,
    ) -> RoundReport:
        deliveries: list[LoggedDelivery] = []
        try:
            pages = await self._read(report.since, deliveries, progress)
        except (GitHubError, MalformedDelivery) as exc:
            self._back_off(exc)
            log.warning("recovery round stopped reading the delivery log: %s", exc)
            return replace(report, seen=len(deliveries), outcome=f"stopped: {exc}")
        report = replace(report, pages=pages)
        store = self._store
        await store.look_up(failed_guids(deliveries) | set(self._outstanding))
        plan = plan_round(
            deliveries,
            knows=store.knows,
            record=store.request_record,
            now=report.started_at,
            window=self._window,
            max_attempts=self._max_attempts,
            max_requests=self._max_requests,
            event=event,
        )
        skipped: dict[str, int] = {str(reason): n for reason, n in plan.skipped.items()}
        report = replace(report, seen=plan.seen, failed=plan.failed, given_up=len(plan.give_up))
        if not report.dry_run:
            await self._give_up(plan)
        sent, refused, outcome = await self._request(plan, report.dry_run, skipped, progress)
        # what was not sent, or refused, must be read again: it holds the checkpoint
        unrequested = [c for c in plan.to_request if c not in sent]
        checkpoint = report.checkpoint
        if moves_checkpoint:
            checkpoint = plan.checkpoint(report.checkpoint, unrequested)
            if checkpoint is not None and checkpoint != report.checkpoint:
                await store.save_checkpoint(checkpoint)
            await store.forget_requests(report.started_at - self._retention)
        if plan.failed or sent or refused:
            log.info(
                "recovery round: %d attempt(s) read, %d failed event(s), %d %srequested, "
                "%d refused, %d given up",
                plan.seen,
                plan.failed,
                len(sent),
                "would be " if report.dry_run else "",
                len(refused),
                len(plan.give_up),
            )
        return replace(
            report,
            requested=len(sent),
            request_failed=len(refused),
            skipped=skipped,
            outcome=outcome,
            checkpoint=checkpoint,
            candidates=tuple(sent),
        )

    async def _read(
        self, since: float, into: list[LoggedDelivery], progress: Progress | None
    ) -> int:
        """Pages newest first until one reaches back past ``since`` or the log ends."""
        cursor: str | None = None
        pages = 0
        while True:
            page = await self._log.delivery_log_page(cursor)
            pages += 1
            into.extend(d for d in page.deliveries if d.delivered_at >= since)
            oldest = min((d.delivered_at for d in page.deliveries), default=None)
            if progress is not None:
                progress.paged(pages, len(into), oldest, since)
            if page.next_cursor is None or oldest is None or oldest < since:
                return pages
            cursor = page.next_cursor

    async def _give_up(self, plan: Plan) -> None:
        for candidate in plan.give_up:
            with about(candidate):
                log.warning(
                    "recovery gives up on delivery %s (%s): %d redelivery request(s) did not "
                    "bring it back",
                    candidate.guid,
                    candidate.name,
                    candidate.attempts,
                )
            await self._store.save_request(
                candidate.guid,
                RequestRecord(candidate.attempts, self._clock(), given_up=True),
            )
            self._given_up += 1

    async def _request(
        self,
        plan: Plan,
        dry_run: bool,
        skipped: dict[str, int],
        progress: Progress | None,
    ) -> tuple[list[Candidate], list[Candidate], str]:
        """Send the plan's requests in order; stop at the first outage or rate limit."""
        sent: list[Candidate] = []
        refused: list[Candidate] = []
        if progress is not None:
            progress.requesting(len(plan.to_request))
        for candidate in plan.to_request:
            if dry_run:
                sent.append(candidate)
                continue
            if self._store.knows(candidate.guid):  # it came by itself meanwhile
                skipped[Skip.ADMITTED] = skipped.get(Skip.ADMITTED, 0) + 1
                if progress is not None:
                    progress.requested(candidate, False)
                continue
            attempt = candidate.attempts + 1
            # the log lines carry the event; the request waits behind token mints for queued
            # events (the app's own principal paces both)
            with about(candidate), serving(Priority.LOW):
                try:
                    await self._log.redeliver(candidate.delivery_id)
                except RetryableGitHubError as exc:
                    self._back_off(exc)
                    log.warning("recovery stopped requesting redeliveries: %s", exc)
                    return sent, refused, f"stopped: {exc}"
                except GitHubError as exc:
                    refused.append(candidate)
                    self._request_failed += 1
                    log.warning(
                        "redelivery of %s (%s) refused: %s",
                        candidate.guid,
                        candidate.name,
                        exc,
                    )
                else:
                    sent.append(candidate)
                    self._requested += 1
                    self._outstanding[candidate.guid] = self._clock()
                    log.info(
                        "requested redelivery of %s (%s), attempt %d of %d",
                        candidate.guid,
                        candidate.name,
                        attempt,
                        self._max_attempts,
                    )
            await self._store.save_request(candidate.guid, RequestRecord(attempt, self._clock()))
            if progress is not None:
                progress.requested(candidate, candidate in sent)
        return sent, refused, "complete"

    def _back_off(self, exc: Exception) -> None:
        """After a rate limit, no round before GitHub's ``retry-after``."""
        if isinstance(exc, RetryableGitHubError) and exc.retry_after is not None:
            wait = exc.retry_after
            if math.isfinite(wait) and wait > 0:
                self._not_before = max(self._not_before, self._clock() + wait)


@contextmanager
def about(candidate: Candidate) -> Iterator[None]:
    """Log lines in the block carry the event's delivery id, event and action."""
    token = EVENT_CONTEXT.set(
        {"delivery_id": candidate.guid, "event": candidate.event, "action": candidate.action}
    )
    try:
        yield
    finally:
        EVENT_CONTEXT.reset(token)
