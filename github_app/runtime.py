"""Wires the parts from settings and owns their lifetime (no setup at import time).

Start-up and shutdown order live here so the CLI, the tests and any embedding
program go through the same steps. Construction opens the state directory
(with ``QUEUE_BACKEND=sqlite``: locks it, opens the spool and replays it);
the dispatcher and the spool's commit writer run in a task group owned by
``running()``; shutdown refuses new deliveries first (503), lets in-flight
work finish within the timeout (``stop_now`` cuts that short), logs what is
still queued, commits the spool's last writes, then closes the GitHub
connections and the spool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import httpx
from anyio.abc import TaskGroup

from github_app.admin.history import HOUR, History
from github_app.admin.metrics import Metrics
from github_app.admin.sampler import INTERVAL, SERIES, Reading, Sampler, reading_from
from github_app.admin.status import StatusReporter
from github_app.backfill.lister import Lister
from github_app.backfill.redis_store import RedisJobStore
from github_app.backfill.service import BackfillService
from github_app.backfill.store import JobStore, MemoryJobStore, SpoolJobStore
from github_app.config import Settings
from github_app.control.autoscale import Autoscaler, GitHubGate, HostSampler
from github_app.control.breaker import CircuitBreaker
from github_app.control.controller import Backlog, ControllerSettings, Decision, WidthController
from github_app.control.feedback import Observation
from github_app.dispatch.dispatcher import Dispatcher
from github_app.dispatch.registry import Registry
from github_app.dispatch.repo_config import RepoConfigStore
from github_app.dispatch.runner import EventRunner
from github_app.errors import SettingsError
from github_app.event_models import warm_up
from github_app.github.gateway import GitHubGateway
from github_app.github.secondary_limits import GITHUB_LIMITS, SecondaryLimits
from github_app.github.shared_limits import RedisLimits
from github_app.intake.route import WebhookIntake
from github_app.logs import install_context, named_ids
from github_app.queue.compression import PayloadCodec
from github_app.queue.dead_letters import DeadLetterQueue
from github_app.queue.deliveries import RecentDeliveries
from github_app.queue.journal import SpoolJournal
from github_app.queue.memory import MemoryQueue
from github_app.queue.priority import Priority, PriorityRules
from github_app.queue.redis_queue import RedisQueue
from github_app.queue.retry import RetryPolicy
from github_app.queue.spool import GroupCommitter, SpoolStore
from github_app.queue.spooled import SpooledQueue, replay
from github_app.queue.state_lock import StateLock, open_state_dir
from github_app.queue.succeeded import REDELIVERY_WINDOW, SucceededProcessors
from github_app.recovery.loop import START_DELAY, Recovery
from github_app.recovery.redis_store import RedisRecoveryStore
from github_app.recovery.spool_store import SpoolRecoveryStore
from github_app.recovery.store import MemoryRecoveryStore, RecoveryStore
from github_app.redis_link import PREFIX, RedisLink

log = logging.getLogger(__name__)

IDENTIFY_TIMEOUT = 10.0
IDENTIFY_RETRY_FIRST = 1.0  # then doubling, up to IDENTIFY_RETRY_MAX, until GitHub answers
IDENTIFY_RETRY_MAX = 300.0
# The adaptive width's start: as many requests as one installation may have on the wire
# (GITHUB_CONCURRENCY's default), so nothing GitHub would not take from a single org; slow
# start doubles from here and reaches a knee of 16-32 within about a second of a burst.
INITIAL_WIDTH = 8


class Runtime:
    """Everything with state: queue, dispatcher, GitHub gateway, config cache, counters."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Registry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        paused: bool = False,
        clock: Callable[[], float] = time.time,
        history_interval: float = INTERVAL,
        on_observation: Callable[[Observation], None] | None = None,
        on_decision: Callable[[Decision], None] | None = None,
        backfill_store: JobStore | None = None,
        github_limits: SecondaryLimits = GITHUB_LIMITS,
        recovery_delay: float = START_DELAY,
    ) -> None:
        """``on_observation`` and ``on_decision`` see what the width controller is told and
        decides (benchmarks record them). ``backfill_store`` keeps backfill jobs (default:
        the spool, or memory); ``github_limits`` are GitHub's secondary limits, which a
        benchmark scales down in time; ``recovery_delay`` is how long after start-up the first
        recovery round waits (for the server to listen)."""
        install_context()
        self.settings = settings
        self.started_at = clock()
        self.registry = registry if registry is not None else Registry.load()
        self.codec = PayloadCodec()
        self._lock: StateLock | None = None
        self._store: SpoolStore | None = None
        self._committer: GroupCommitter | None = None
        # QUEUE_BACKEND=redis: the one Redis client of this process and its replica id, for every
        # part whose state the replicas share
        self.redis: RedisLink | None = None
        journal: SpoolJournal | None = None
        if settings.queue_backend == "sqlite":
            self._lock = open_state_dir(settings.state_dir)
            try:
                self._store = SpoolStore(settings.state_dir, sync=settings.spool_sync)
            except BaseException:
                self._lock.release()
                raise
            self._committer = GroupCommitter(self._store, window=REDELIVERY_WINDOW, clock=clock)
            journal = SpoolJournal(self._committer, wall_clock=clock)
        deliveries = RecentDeliveries(journal=journal, clock=clock)
        self.succeeded = SucceededProcessors(journal=journal, clock=clock)
        ttl = {
            Priority.CRITICAL: settings.queue_ttl_critical,
            Priority.HIGH: settings.queue_ttl_high,
            Priority.NORMAL: settings.queue_ttl_normal,
            Priority.LOW: settings.queue_ttl_low,
        }
        memory = MemoryQueue(
            settings.queue_max_events,
            settings.queue_max_bytes,
            ttl=ttl,
            ageing=settings.queue_ageing,
            dead_letters=DeadLetterQueue(settings.dead_letter_max, clock=clock),
            deliveries=deliveries,
            journal=journal,
        )
        self.queue: MemoryQueue | SpooledQueue | RedisQueue = memory
        if settings.queue_backend == "redis" and settings.redis_url is not None:
            self.redis = RedisLink(settings.redis_url.get_secret_value(), clock=clock)
            self.queue = RedisQueue(
                self.redis,
                settings.queue_max_events,
                settings.queue_max_bytes,
                claim_idle=settings.redis_claim_idle,
                dead_letter_max=settings.dead_letter_max,
                ttl=ttl,
                ageing=settings.queue_ageing,
                notify=lambda: self.dispatcher.notify(),
                wall_clock=clock,
            )
            self.succeeded = self.queue.succeeded  # the record other replicas see too
        if self._store is not None and self._committer is not None:
            replay(
                self._store,
                memory,
                deliveries,
                self.succeeded,
                window=REDELIVERY_WINDOW,
                clock=clock,
            )
            self.queue = SpooledQueue(memory, self._store, self._committer)
        # The width starts modestly (well under GitHub's limits) and the controller moves it,
        # steered by the requests the gateway's transport puts on the wire.
        self.controller = WidthController(
            ControllerSettings(min_width=settings.workers_min, max_width=settings.workers_max),
            clock=time.monotonic,
            start=min(settings.workers_max, max(settings.workers_min, INITIAL_WIDTH)),
        )
        self.gateway = GitHubGateway(
            settings,
            transport=transport,
            clock=clock,
            meter=self.controller,
            limits=github_limits,
            shared=self._shared_limits(),
        )
        self.configs = RepoConfigStore(self.registry)
        self.metrics = Metrics(clock=clock)
        self.breaker = CircuitBreaker(clock=time.monotonic)
        self.gate = GitHubGate(self.controller, self.breaker, on_observation=on_observation)
        # Backfill jobs offer existing issues at LOW priority; the runner reports each one back.
        self.job_store = backfill_store if backfill_store is not None else self._job_store()
        self.backfills = BackfillService(
            store=self.job_store,
            lister=Lister(self.gateway),
            queue=self.queue,
            codec=self.codec,
            registry=self.registry,
            notify=lambda: self.dispatcher.notify(),
            clock=clock,
        )
        self.runner = EventRunner(
            registry=self.registry,
            gateway=self.gateway,
            configs=self.configs,
            codec=self.codec,
            succeeded=self.succeeded,
            dry_run=settings.dry_run,
            observer=self.metrics,
            feedback=self.gate.observe,
            backfills=self.backfills,
        )
        self.dispatcher = Dispatcher(
            self.queue,
            self.runner,
            width=self.controller.width,
            paused=paused,
            retry=RetryPolicy(
                attempts=settings.retry_attempts, base=settings.retry_base, cap=settings.retry_max
            ),
            gate=self.gate,
        )
        # The dashboard's last hour, sampled from the parts' stats by a task of ``running``.
        self.sampler = Sampler(
            History(SERIES, round(HOUR / history_interval), clock=clock),
            self.reading,
            interval=history_interval,
        )
        self.host = HostSampler()

        def decided(decision: Decision) -> None:
            self.sampler.decided(decision)  # the dashboard marks width changes
            if on_decision is not None:
                on_decision(decision)

        self.autoscaler = Autoscaler(
            self.controller,
            self.dispatcher,
            backlog=self.backlog,
            host=self.host.sample,
            on_decision=decided,
        )
        self.intake = WebhookIntake(
            secret=settings.webhook_secret.get_secret_value(),
            registry=self.registry,
            queue=self.queue,
            rules=PriorityRules(),
            codec=self.codec,
            on_admitted=self.dispatcher.notify,
            clock=clock,
            max_reading=settings.webhook_max_reading_bytes,
            observe=self.configs.observe,
        )
        # Failed deliveries asked for again from GitHub's delivery log (off without credentials);
        # its checkpoint and requests live in the spool when there is one, or in the replicas'
        # Redis (one replica at a time runs a round).
        recovery_store: RecoveryStore = MemoryRecoveryStore(self.queue.knows)
        if self._store is not None and self._committer is not None:
            recovery_store = SpoolRecoveryStore(self._store, self._committer, self.queue.knows)
        elif self.redis is not None and isinstance(self.queue, RedisQueue):
            recovery_store = RedisRecoveryStore(
                self.redis.client, self.queue.knows, prefix=PREFIX, admitted=self.queue.seen
            )
        self.recovery = Recovery.from_settings(
            settings, self.gateway, recovery_store, start_delay=recovery_delay, clock=clock
        )
        self.status = StatusReporter(
            settings=settings,
            started_at=self.started_at,
            intake=self.intake,
            queue=self.queue,
            dispatcher=self.dispatcher,
            processors=self.runner.stats,
            registry=self.registry,
            controller=self.controller,
            breaker=self.breaker,
            gateway=self.gateway,
            configs=self.configs,
            recovery=self.recovery,
            clock=clock,
            backfills=self.backfills.document,
        )
        self.metrics.watch(self.status.document)
        self._identity_checked = False
        self._shutdown_started = False
        self._shutdown_done = anyio.Event()
        self._stop_now = False
        self._drain_scope: anyio.CancelScope | None = None

    def _shared_limits(self) -> RedisLimits | None:
        """With QUEUE_BACKEND=redis GitHub's limits are the replicas' together, in Redis; alone
        (Redis unreachable) this replica keeps its share, by the replicas seen last."""
        link = self.redis
        if link is None:
            return None
        return RedisLimits(
            link.client, prefix=f"{PREFIX}limits:", replicas=lambda: len(link.replicas)
        )

    def _job_store(self) -> JobStore:
        """Backfill jobs live in the spool when there is one, in Redis when the replicas share
        it, else in memory."""
        if self._store is not None and self._committer is not None:
            return SpoolJobStore(self._store, self._committer)
        if self.redis is not None:
            return RedisJobStore(self.redis.client, prefix=PREFIX)
        return MemoryJobStore()

    def backlog(self) -> Backlog:
        """The queue for the controller: takeable work, and work that must wait.

        Events delayed or deferred (an installation's pause, budget or write backlog;
        a retry's back-off) or behind their issue cannot be taken now: more width
        would not serve them, so they count as blocked, not ready.
        """
        ready = sum(self.queue.ready_by_priority().values())
        return Backlog(
            ready=ready,
            in_flight=self.dispatcher.in_flight,
            blocked=max(0, len(self.queue) - ready),
        )

    def reading(self) -> Reading:
        """The parts' counters and gauges now, for the dashboard's history."""
        return reading_from(
            queue=self.queue.stats(),
            intake=self.intake.stats,
            runner=self.runner.stats,
            width=self.dispatcher.width,
            github=self.gateway.stats(),
            latency=self.metrics.processing_buckets(),
        )

    @property
    def shutting_down(self) -> bool:
        return self._shutdown_started

    async def identify(self) -> None:
        """Check the app's credentials with GitHub once (a 401 is fatal; an outage is not)."""
        if self.gateway.app is None or self._identity_checked:
            return
        self._identity_checked = True
        with anyio.move_on_after(IDENTIFY_TIMEOUT):
            await self.gateway.identify()

    async def _identify_until_known(self) -> None:
        """Ask again, backing off, until GitHub says who the app is.

        Without its identity the app cannot tell its own events from others
        (it would react to its own label changes); meanwhile the runner skips
        every bot sender, which includes the app.
        """
        delay = IDENTIFY_RETRY_FIRST
        while self.gateway.app is not None and self.gateway.app_slug is None:
            await anyio.sleep(delay)
            delay = min(delay * 2, IDENTIFY_RETRY_MAX)
            try:
                with anyio.move_on_after(IDENTIFY_TIMEOUT):
                    await self.gateway.identify()
            except SettingsError as exc:  # credentials revoked meanwhile: nothing will work
                log.error("%s", exc)
                return

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Runtime]:
        """Run the dispatcher for the duration of the block, then shut down gracefully."""
        try:
            async with anyio.create_task_group() as spool_group:
                if self._committer is not None:
                    await spool_group.start(self._committer.run)
                if self.redis is not None and isinstance(self.queue, RedisQueue):
                    await spool_group.start(self.redis.watch)
                    await spool_group.start(self.queue.run)
                spool_group.start_soon(self.job_store.run)  # a shared store writes behind
                async with anyio.create_task_group() as group:
                    await self._run(group)
                    try:
                        yield self
                    finally:
                        with anyio.CancelScope(shield=True):
                            await self.shutdown()
                        group.cancel_scope.cancel()  # the controller's loops run until told
                if self._committer is not None and self._committer.problem is not None:
                    self._report_unsaved(self._committer.problem)
                if isinstance(self.queue, RedisQueue):
                    # every handler has ended (a cut-off one put its event back, try counted)
                    with anyio.CancelScope(shield=True):
                        await self._leave_redis(self.queue)
                # the commit writer stops last: it commits what the shutdown left to write
                spool_group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.gateway.aclose()
                if self.redis is not None:
                    await self.redis.aclose()
            self.close()

    async def _run(self, group: TaskGroup) -> None:
        """Start the parts that run for the life of the app."""
        await self.identify()
        warm_up(
            event
            for processor in self.registry
            if processor.reads_event_model
            for event in processor.events
        )
        self.gateway.warm_up()
        group.start_soon(self.dispatcher.run)
        group.start_soon(self._identify_until_known)
        group.start_soon(self.host.run)
        group.start_soon(self.autoscaler.run)
        group.start_soon(self.sampler.run)
        group.start_soon(self.backfills.run)
        group.start_soon(self.gateway.renew_tokens)
        group.start_soon(self.recovery.run)

    def _report_unsaved(self, problem: str) -> None:
        """At shutdown, every handler ended, with a spool that cannot be written (a full or
        read-only disk): what the restart will and may not find."""
        log.error(
            "shutdown: the spool cannot be written (%s); what changed since it failed is not "
            "saved: events finished meanwhile run again after the restart (processors with a "
            "hidden marker do not repeat their writes)",
            problem,
        )
        waiting = self.queue.waiting_delivery_ids()
        if waiting and self.settings.spool_sync == "normal":
            # a file system the kernel turned read-only drops what the OS had not written out
            log.warning(
                "shutdown: with SPOOL_SYNC=normal the events acknowledged in the last seconds "
                "before the spool failed may not be on disk; redeliver from the app's settings "
                "any of these not processed after the restart: %s",
                named_ids(waiting),
            )

    async def _leave_redis(self, queue: RedisQueue) -> None:
        """Give the events this replica holds back to the shared queue, for the other replicas."""
        given_back = await queue.give_back()
        if self.redis is not None:
            await self.redis.leave()
        log.info(
            "shutdown: %d event(s) held by this replica went back to the shared queue in Redis "
            "for the other replicas",
            given_back,
        )

    def close(self) -> None:
        """Close the spool and let go of the state directory (after ``running`` ends)."""
        if self._store is not None:
            self._store.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def stopped_at_once(self) -> bool:
        """``stop_now`` was called: in-flight events were not waited for."""
        return self._stop_now

    def stop_now(self) -> None:
        """A second signal: stop waiting for in-flight events; they stay queued (in the spool)."""
        self._stop_now = True
        if self._drain_scope is not None:
            self._drain_scope.cancel()

    async def shutdown(self) -> None:
        """Refuse new deliveries, finish in-flight work within the timeout, report what remains.

        Safe to call more than once (a signal and the server's lifespan both call it).
        """
        if self._shutdown_started:
            await self._shutdown_done.wait()
            return
        self._shutdown_started = True
        self.intake.stop_accepting()
        in_flight = self.dispatcher.in_flight
        log.info(
            "shutting down: refusing new deliveries, finishing %d in-flight event(s) (up to %gs)",
            in_flight,
            self.settings.shutdown_timeout,
        )
        with anyio.CancelScope() as self._drain_scope:
            if self._stop_now:
                self._drain_scope.cancel()
            await self.dispatcher.drain(self.settings.shutdown_timeout)
        cut_off = self.dispatcher.cancel_running()
        remaining = len(self.queue)
        if cut_off:
            log.error("shutdown: %d in-flight event(s) were cut off unfinished", cut_off)
        # with QUEUE_BACKEND=redis what this replica holds goes back to the shared queue once
        # its handlers have ended (``_leave_redis``)
        if self._store is not None:
            log.info(
                "shutdown: %d queued event(s) stay in the spool %s; "
                "they will be processed after the restart",
                remaining + cut_off,
                self._store.path,
            )
        elif self.redis is None and remaining + cut_off:
            log.warning(
                "shutdown: %d queued event(s) remain unprocessed and are lost "
                "(QUEUE_BACKEND=memory; GitHub shows them as delivered: redeliver them "
                "from the app's settings): %s",
                remaining + cut_off,
                named_ids(self.queue.waiting_delivery_ids()),
            )
        elif self.redis is None:
            log.info("shutdown: no queued event remains")
        durable = self._store is not None or self.redis is not None
        dead = [] if durable else self.queue.list_dead_letters()
        if dead:
            log.warning(
                "shutdown: %d dead letter(s) are lost with the process (QUEUE_BACKEND=memory): %s",
                len(dead),
                named_ids([entry.delivery_id for entry in dead]),
            )
        self._shutdown_done.set()


__all__ = ["Runtime", "SettingsError"]
