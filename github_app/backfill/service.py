"""Runs backfill jobs: lists issues, offers them to the queue at LOW priority, keeps checkpoints.

Owned by the runtime (``run`` lives in its task group); the admin API calls
``submit``, ``cancel``, ``get`` and ``list``; the event runner reports every
backfilled issue (``backfilled``), which is how a job learns what was done.

Flow control: a job holds at most ``WINDOW_PAGES`` pages whose issues are not
all processed; it lists the next page only when the oldest is done, and
offers an issue only when the queue admits it at LOW priority (LOW may fill
the queue only up to its share, so live events always find room). Live
events go first: the queue serves higher levels first, and an installation's
writes of a live event take their turn before a backfill's.

A checkpoint is saved when a page is done and at most every
``SAVE_INTERVAL`` seconds: after a restart the job lists again only the first
page not fully done and skips the issues of it already processed.

Replicas sharing a store (Redis) share the jobs: every ``REFRESH`` seconds
each takes in the jobs the others saved (to show them, and to run one whose
replica died: a job runs where its ``claim`` is held), and a job cancelled on
another replica is cancelled here. An issue offered here may be processed by
another replica's dispatcher; that replica reports the outcome through the
store, and the job counts it as it counts its own.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson

from github_app.backfill.job import Job, JobSpec, JobStats
from github_app.backfill.lister import JobFailed, Lister
from github_app.backfill.store import JobStore, Outcome, StoredJob
from github_app.dispatch.registry import Registry
from github_app.envelope import Envelope
from github_app.errors import GitHubError, StoreUnavailable
from github_app.processor import BACKFILL_EVENT, BackfillChange
from github_app.queue.compression import PayloadCodec
from github_app.queue.memory import DUPLICATE, EventQueue
from github_app.queue.priority import Priority
from github_app.redis_lease import LeaseLost

log = logging.getLogger(__name__)

WINDOW_PAGES = 2
SAVE_INTERVAL = 2.0
POLL = 0.5  # seconds between looks for room in the queue and for dead-lettered issues
REFRESH = 2.0  # seconds between looks at the jobs other replicas saved


class Conflict(Exception):
    """A job on the same repository (or installation) is already running."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


@dataclass
class _Page:
    url: str
    next_url: str | None
    waiting: set[int] = field(default_factory=set)
    done: set[int] = field(default_factory=set)
    listed_all: bool = False


@dataclass
class _Issue:
    job: Job
    page: _Page
    number: int


class BackfillService:
    """Every backfill job of this server and the tasks that run them."""

    def __init__(
        self,
        *,
        store: JobStore,
        lister: Lister,
        queue: EventQueue,
        codec: PayloadCodec,
        registry: Registry,
        notify: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        poll: float = POLL,
        window_pages: int = WINDOW_PAGES,
    ) -> None:
        self._store = store
        self._lister = lister
        self._queue = queue
        self._codec = codec
        self._notify = notify
        self._clock = clock
        self.poll = poll  # seconds between looks for room and for dead-lettered issues
        self._window = window_pages
        self.backfilling = tuple(p.name for p in registry if p.backfill is not None)
        self._jobs: dict[str, Job] = {job.id: job for job in store.jobs()}
        self._waiting: dict[str, _Issue] = {}  # delivery id -> issue offered, not yet done
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._changed = anyio.Event()
        self._new: list[Job] = [job for job in self._jobs.values() if not job.state.final]
        self._saved_at: dict[str, float] = {}
        self._pages: dict[str, deque[_Page]] = {}  # per running job: pages not fully done
        self._forwarding: set[str] = set()  # delivery ids of other replicas' runs, in process here
        self._claiming: set[str] = set()  # job ids this replica is about to run
        self._refreshed_at = -REFRESH

    @property
    def lister_retries(self) -> int:
        """Reads of GitHub's lists that failed and were sent again."""
        return self._lister.retries

    # --- what the admin API calls ------------------------------------------------------

    def submit(self, request: Any) -> Job:
        """Check a request and queue its job; ``BadRequest`` or ``Conflict`` say why not."""
        spec = JobSpec.from_request(request, self.backfilling)
        for job in self._jobs.values():
            if job.state.final:
                continue
            same = spec.repository is not None and job.spec.repository == spec.repository
            same = same or (
                spec.installation is not None and job.spec.installation == spec.installation
            )
            if same:
                raise Conflict(f"job {job.id} is already backfilling {spec.target}", job.id)
        job = Job(id=secrets.token_hex(6), spec=spec, created_at=self._clock())
        self._jobs[job.id] = job
        self._store.save(job)
        self._new.append(job)
        self._wake()
        log.info("backfill job %s queued for %s", job.id, spec.target)
        return job

    def cancel(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if job.cancel(self._clock()):
            self._store.save(job)
            scope = self._scopes.get(job_id)
            if scope is not None:
                scope.cancel()
            log.info("backfill job %s cancelled", job_id)
        return job

    def get(self, job_id: str) -> JobStats | None:
        job = self._jobs.get(job_id)
        return None if job is None else job.stats(self._clock())

    def list(self) -> list[JobStats]:
        now = self._clock()
        return [job.stats(now) for job in sorted(self._jobs.values(), key=lambda j: j.created_at)]

    # --- what the event runner calls ---------------------------------------------------

    async def wanted(self, delivery_id: str) -> bool:
        """Is this backfill event's job still running? A cancelled job's events, and those
        of an earlier run of it, are skipped; so is an event of this replica's run the queue
        had before. An issue another replica's run offered is processed here and reported."""
        issue = self._waiting.get(delivery_id)
        if issue is not None:
            return not issue.job.state.final
        run = run_of(delivery_id)
        if run is None or run[0] in self._scopes or run[0] in self._claiming:
            return False  # not a job, or one this replica runs: an earlier run's event
        try:
            stored = await self._store.current(run[0])
        except StoreUnavailable as exc:  # run it: an issue done twice beats a job stuck on it
            log.warning("backfill: cannot tell whether %s is wanted (%s)", delivery_id, exc)
            self._forwarding.add(delivery_id)
            return True
        if run[0] in self._scopes or run[0] in self._claiming:
            # This replica began to run the job while the store was read: the claim it took
            # may be in ``stored`` before the record of its new run is, so the earlier run
            # would look current and its event would run besides the one offered now.
            return False
        if stored is None or not stored.claimed or stored.job.state.final:
            return False
        if stored.job.runs != run[1]:
            return False
        self._forwarding.add(delivery_id)
        return True

    def backfilled(self, delivery_id: str, changes: Mapping[str, BackfillChange], ok: bool) -> None:
        issue = self._waiting.pop(delivery_id, None)
        if issue is None:
            if delivery_id in self._forwarding:  # another replica's run: tell it
                self._forwarding.discard(delivery_id)
                run = run_of(delivery_id)
                assert run is not None
                self._store.report(run[0], Outcome(delivery_id, ok, dict(changes)))
            return
        issue.job.note(issue.number, changes, ok)
        issue.page.waiting.discard(issue.number)
        issue.page.done.add(issue.number)
        pages = self._pages.get(issue.job.id)
        if pages is not None:  # saved every SAVE_INTERVAL even while a page read is retried
            self._advance(issue.job, pages)
        self._wake()

    # --- running ----------------------------------------------------------------------

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def run(self) -> None:
        """Run queued jobs (those left unfinished by a previous run first) until cancelled;
        every ``REFRESH`` seconds take in what other replicas saved."""
        async with anyio.create_task_group() as group:
            while True:
                while self._new:
                    group.start_soon(self._run_job, self._new.pop(0))
                changed = self._changed
                with anyio.move_on_after(REFRESH):
                    await changed.wait()
                if anyio.current_time() - self._refreshed_at >= REFRESH:
                    await self.refresh()

    async def refresh(self) -> None:
        """Take in every job as the replicas sharing the store saved it (nothing to do for a
        store this process alone uses)."""
        self._refreshed_at = anyio.current_time()
        try:
            stored = await self._store.shared()
        except StoreUnavailable as exc:
            log.warning("backfill: cannot read the shared jobs (%s)", exc)
            return
        for entry in stored:
            self._take_in(entry)

    async def look_up(self, job_id: str) -> None:
        """Bring one job up to date from the shared store (an admin request may reach any
        replica, the job may be another's)."""
        if job_id in self._scopes:
            return
        try:
            entry = await self._store.current(job_id)
        except StoreUnavailable as exc:
            log.warning("backfill: cannot read job %s (%s)", job_id, exc)
            return
        if entry is not None:
            self._take_in(entry)

    def _take_in(self, entry: StoredJob) -> None:
        """Show another replica's record of a job; run it if it is unfinished and nobody holds
        its claim (its replica died); cancel it here if it was cancelled elsewhere."""
        job = entry.job
        if job.id in self._scopes:  # running here: this replica's record is the newer one
            if job.state.final and not self._jobs[job.id].state.final:
                log.info("backfill job %s was cancelled on another replica", job.id)
                self.cancel(job.id)
            return
        self._jobs[job.id] = job
        if job.state.final or entry.claimed or any(new.id == job.id for new in self._new):
            return
        self._new.append(job)
        self._wake()

    async def _run_job(self, job: Job) -> None:
        """Run ``job`` here if this replica gets its claim (always, with a store of its own)."""
        self._claiming.add(job.id)
        try:
            async with self._store.claim(job) as claimed:
                if claimed is not None:
                    self._jobs[job.id] = claimed
                    await self._run_claimed(claimed)
        except StoreUnavailable as exc:  # unclaimed: the next refresh offers it again
            log.warning("backfill job %s waits for the shared store: %s", job.id, exc)
        except LeaseLost:
            log.warning("backfill job %s stopped here: another replica took it over", job.id)
        finally:
            self._claiming.discard(job.id)

    async def _run_claimed(self, job: Job) -> None:
        with anyio.CancelScope() as scope:
            self._scopes[job.id] = scope
            try:
                if job.state.final:
                    return
                job.start(self._clock())
                self._store.save(job)
                log.info("backfill job %s started: %s", job.id, job.spec.target)
                await self._work(job)
                job.finish(self._clock())
                log.info("backfill job %s finished: %d issues", job.id, job.progress.processed)
            except (JobFailed, GitHubError) as exc:
                job.fail(self._clock(), str(exc))
                log.warning("backfill job %s failed: %s", job.id, exc)
            finally:
                self._scopes.pop(job.id, None)
                pages = self._pages.pop(job.id, None)
                if pages is not None and not job.state.final:
                    self._advance(job, pages)  # what was done up to now
                self._forget_waiting(job)
                self._store.save(job)  # on shutdown: still running, resumed from here

    def _forget_waiting(self, job: Job) -> None:
        for delivery_id in [d for d, issue in self._waiting.items() if issue.job is job]:
            del self._waiting[delivery_id]

    async def _work(self, job: Job) -> None:
        spec, checkpoint = job.spec, job.checkpoint
        installation = checkpoint.installation
        if installation is None:
            installation = spec.installation
            if installation is None:
                assert spec.repository is not None
                installation = await self._lister.installation_of(spec.repository)
        if checkpoint.repositories is None:
            if spec.repository is not None:
                counts = [
                    (spec.repository, await self._lister.open_issues(installation, spec.repository))
                ]
            else:
                counts = await self._lister.repositories(installation)
            if spec.state == "open":
                job.progress.estimated_total = sum(count for _, count in counts)
            checkpoint = dataclasses.replace(
                checkpoint,
                installation=installation,
                repositories=tuple(name for name, _ in counts),
            )
            job.checkpoint = checkpoint
            self._store.save(job)
        assert checkpoint.repositories is not None
        for index in range(checkpoint.repository_index, len(checkpoint.repositories)):
            repository = checkpoint.repositories[index]
            await self._repository(job, installation, repository)
            job.checkpoint = dataclasses.replace(
                job.checkpoint, repository_index=index + 1, page_url=None, done=frozenset()
            )
            self._store.save(job)

    async def _repository(self, job: Job, installation: int, repository: str) -> None:
        """List one repository's issues page by page and offer them; return when all are done."""
        start = job.checkpoint
        pages: deque[_Page] = deque()
        self._pages[job.id] = pages
        url = start.page_url
        skip = set(start.done)

        def room() -> bool:
            self._advance(job, pages)
            return len(pages) < self._window

        def all_done() -> bool:
            self._advance(job, pages)
            return not pages

        while True:
            await self._until(room, job)
            page = await self._lister.page(installation, repository, job.spec, url)
            job.progress.reads += 1
            entry = _Page(page.url, page.next_url, done=set(skip))
            pages.append(entry)
            for issue in page.issues:
                number = issue.get("number")
                if not isinstance(number, int) or number in skip:
                    continue
                job.progress.listed += 1
                await self._offer(job, installation, repository, issue, entry, number)
            entry.listed_all = True
            skip = set()
            self._advance(job, pages)
            if page.next_url is None:
                break
            url = page.next_url
        await self._until(all_done, job)

    def _advance(self, job: Job, pages: deque[_Page]) -> bool:
        """Drop the finished pages at the front and move the checkpoint past them."""
        moved = False
        while pages and pages[0].listed_all and not pages[0].waiting:
            done = pages.popleft()
            moved = True
            job.checkpoint = dataclasses.replace(
                job.checkpoint, page_url=done.next_url, done=frozenset()
            )
        if pages:
            front = pages[0]
            job.checkpoint = dataclasses.replace(
                job.checkpoint, page_url=front.url, done=frozenset(front.done)
            )
        now = self._clock()
        if moved or now - self._saved_at.get(job.id, 0.0) >= SAVE_INTERVAL:
            self._saved_at[job.id] = now
            self._store.save(job)
        return moved

    async def _offer(
        self,
        job: Job,
        installation: int,
        repository: str,
        issue: dict[str, Any],
        page: _Page,
        number: int,
    ) -> None:
        # One id per run of the job: an event of an earlier run that the spool kept is
        # skipped (``wanted``), its issue is offered again unless the checkpoint has it done.
        delivery_id = backfill_delivery_id(job, repository, number)
        envelope = self._envelope(job, installation, repository, issue, delivery_id)
        while not (admission := await self._queue.admit(envelope, Priority.LOW)).admitted:
            if admission.error == DUPLICATE.error:
                # already in the shared queue (this run listed the issue on two pages, or a
                # replica resumed the job from a record older than the run it took over):
                # queued, it comes back through ``backfilled`` as any other
                break
            await self._until(lambda: False, job, timeout=self.poll)
        if delivery_id in self._waiting:  # offered before in this run: it is waited for
            return
        page.waiting.add(number)
        self._waiting[delivery_id] = _Issue(job, page, number)
        self._notify()

    def _envelope(
        self,
        job: Job,
        installation: int,
        repository: str,
        issue: dict[str, Any],
        delivery_id: str,
    ) -> Envelope:
        owner, name = repository.split("/", 1)
        payload = {
            "action": "backfill",
            "issue": issue,
            "repository": {"full_name": repository, "name": name, "owner": {"login": owner}},
            "installation": {"id": installation},
            "backfill": {
                "job": job.id,
                "processors": list(job.spec.processors),
                "dry_run": job.spec.dry_run,
            },
        }
        raw = orjson.dumps(payload)
        return Envelope(
            delivery_id=delivery_id,
            event=BACKFILL_EVENT,
            action=None,
            installation_id=installation,
            repository=repository,
            issue_number=issue["number"],
            sender_login=None,
            sender_type=None,
            received_at=self._clock(),
            payload=self._codec.compress(raw),
            raw_size=len(raw),
        )

    async def _until(
        self, condition: Callable[[], bool], job: Job, timeout: float | None = None
    ) -> None:
        """Wait until ``condition`` holds (re-checked on every report and every ``poll``).

        Meanwhile an issue of ``job`` the queue no longer knows was dead-lettered
        (retries exhausted, or expired): it counts as done, with an error.
        """
        deadline = None if timeout is None else anyio.current_time() + timeout
        while not condition():
            if deadline is not None and anyio.current_time() >= deadline:
                return
            changed = self._changed
            with anyio.move_on_after(self.poll):
                await changed.wait()
            await self._collect(job)
            self._settle_lost(job)

    async def _collect(self, job: Job) -> None:
        """Count the outcomes other replicas reported for the job's issues."""
        try:
            outcomes = await self._store.reports(job.id)
        except StoreUnavailable as exc:
            log.warning("backfill job %s: cannot read reports (%s)", job.id, exc)
            return
        for outcome in outcomes:
            self.backfilled(outcome.delivery_id, outcome.changes, outcome.ok)

    def _settle_lost(self, job: Job) -> None:
        lost = [
            delivery_id
            for delivery_id, issue in self._waiting.items()
            if issue.job is job and not self._queue.knows(delivery_id)
        ]
        for delivery_id in lost:
            log.warning("backfill job %s: %s was dead-lettered", job.id, delivery_id)
            self.backfilled(delivery_id, {}, False)

    def document(self) -> dict[str, Any]:
        """The jobs not finished yet, for the status document and the dashboard's panel
        (each with ``label``, ``done``, ``total`` and ``state`` besides its stats)."""
        now = self._clock()
        jobs = []
        for job in self._jobs.values():
            if job.state.final:
                continue
            stats = job.stats(now)
            total = stats.estimated_total if stats.estimated_total is not None else stats.listed
            row = {"label": stats.spec.target, "done": stats.processed, "total": total}
            jobs.append({**stats.as_json(), **row})
        return {"jobs": jobs}


def backfill_delivery_id(job: Job, repository: str, number: int) -> str:
    """One id per issue and run of its job (job ids are hex: ``run_of`` reads them back)."""
    return f"backfill-{job.id}-{job.runs}-{repository}#{number}"


def run_of(delivery_id: str) -> tuple[str, int] | None:
    """The job id and run a backfill event's delivery id names."""
    parts = delivery_id.split("-", 3)
    if len(parts) != 4 or parts[0] != "backfill" or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])
