"""Runs one queued event through every processor subscribed to it.

This is where the worker does what the request path skipped: decompress,
decode the payload (once, with orjson; every processor gets the same dict),
load the repository's config, and call each processor in isolation.
githubkit's typed model is built only if a processor reads ``ctx.event``
(``event_models.LazyEvent``), once per event. One processor failing never stops another; each
failure is logged with the delivery's context and counted per processor. The
runner answers whether every processor succeeded: the queue forgets a failed
event's delivery, so GitHub's redelivery of it is accepted again.

Failures that may pass are not handled here but raised to the dispatcher,
which owns retries: a ``RetryableGitHubError`` (after the other processors
had their turn), ``InstallationGone`` and ``Deferred``. The processors that
succeeded are recorded per delivery (``SucceededProcessors``, kept by the
queue's backend), so a retry, a replay after a restart or GitHub's
redelivery runs only the others and no write is made twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from githubkit.exception import GitHubException
from pydantic import ValidationError

from github_app.control.feedback import Observer, note_error, note_work, reporting
from github_app.dispatch.installations import apply_lifecycle, is_lifecycle_event
from github_app.dispatch.registry import Registry
from github_app.dispatch.repo_config import RepoConfig, RepoConfigStore
from github_app.errors import Deferred, GitHubError, InstallationGone, RetryableGitHubError
from github_app.event_models import LazyEvent, first_error
from github_app.github.gateway import GitHubGateway, as_github_error, naming_objects
from github_app.github.pacing import serving
from github_app.logs import event_context
from github_app.processor import BACKFILL_EVENT, BackfillChange, Context, Processor
from github_app.queue.compression import CompressionError, PayloadCodec
from github_app.queue.event import QueuedEvent
from github_app.queue.succeeded import SucceededProcessors

log = logging.getLogger(__name__)


@dataclass
class ProcessorStats:
    """Counters per processor name, for the status endpoint and metrics.

    ``unparseable`` counts events whose typed model a processor asked for and
    whose payload did not match githubkit's schema (each event once); the
    processors still ran, with ``ctx.event`` ``None``.
    """

    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    events_failed: int = 0
    events_ok: int = 0
    own_events_skipped: int = 0
    unparseable: int = 0


class RunObserver(Protocol):
    """Told of every processor call and every finished event: metrics feed on this hook."""

    def processor_finished(
        self, item: QueuedEvent, processor: str, seconds: float, ok: bool
    ) -> None: ...

    def event_finished(self, item: QueuedEvent, ok: bool) -> None: ...


class BackfillObserver(Protocol):
    """Told what the processors did to each existing issue a backfill job sent (by delivery id).

    ``ok`` False: a processor failed for good on it (a retryable failure is not reported:
    the event comes back).
    """

    async def wanted(self, delivery_id: str) -> bool:
        """False once the event's job was cancelled or is gone: it is skipped. (Awaited: with
        replicas, the job may be running on another one, which the shared store says.)"""

    def backfilled(
        self, delivery_id: str, changes: Mapping[str, BackfillChange], ok: bool
    ) -> None: ...


class EventRunner:
    """The dispatcher's handler: one call per queued event."""

    def __init__(
        self,
        *,
        registry: Registry,
        gateway: GitHubGateway,
        configs: RepoConfigStore,
        codec: PayloadCodec,
        succeeded: SucceededProcessors,
        dry_run: bool,
        observer: RunObserver | None = None,
        feedback: Observer | None = None,
        backfills: BackfillObserver | None = None,
    ) -> None:
        self._registry = registry
        self._backfills = backfills
        self._observer = observer
        self._gateway = gateway
        self._configs = configs
        self._codec = codec
        self._succeeded = succeeded
        self._dry_run = dry_run
        self._feedback = feedback  # told each event's latency and outcome (the width controller)
        self.stats = ProcessorStats()
        self.states: dict[str, Any] = {
            p.name: p.state_factory() for p in registry if p.state_factory is not None
        }

    async def __call__(self, item: QueuedEvent) -> bool:
        """Run ``item`` through its processors; ``False`` when one of them failed for good."""
        envelope = item.envelope
        with (
            event_context(envelope),
            reporting(self._feedback, installation=envelope.installation_id),
            naming_objects(envelope.repository, envelope.issue_number),
            serving(item.priority),  # its writes wait behind those of more urgent events
        ):
            changes: dict[str, BackfillChange] = {}
            ok = await self._run(item, changes)
        if envelope.event == BACKFILL_EVENT and self._backfills is not None:
            self._backfills.backfilled(envelope.delivery_id, changes, ok)
        if self._observer is not None:
            self._observer.event_finished(item, ok)
        if ok:
            self.stats.events_ok += 1
            self._succeeded.clear(envelope.delivery_id)
        else:
            self.stats.events_failed += 1
        return ok

    async def _run(self, item: QueuedEvent, changes: dict[str, BackfillChange]) -> bool:
        """``changes``: what each processor did, for a backfill's event."""
        envelope = item.envelope
        if is_lifecycle_event(envelope.event):
            lifecycle = self._read_payload(envelope.payload)
            if lifecycle is not None:
                await apply_lifecycle(envelope, lifecycle, self._gateway)
        backfill = envelope.event == BACKFILL_EVENT
        if (
            backfill
            and self._backfills is not None
            and not await self._backfills.wanted(envelope.delivery_id)
        ):
            log.debug("skipped: its backfill job was cancelled")
            return True
        processors = (
            tuple(p for p in self._registry if p.backfill is not None)
            if backfill
            else self._registry.for_event(envelope.event, envelope.action)
        )
        if not processors:
            return True
        bot = self._gateway.bot_login
        if bot is not None and envelope.sender_login == bot:
            self.stats.own_events_skipped += 1
            log.debug("skipped: sent by this app")
            return True
        if bot is None and self._gateway.app is not None and envelope.sender_type == "Bot":
            # Who the app is is not known yet (GitHub did not answer GET /app): any bot may
            # be this app, and reacting to its own changes could loop.
            self.stats.own_events_skipped += 1
            log.info("skipped: sent by a bot while this app's own identity is not known yet")
            return True
        if self._gateway.app is not None and envelope.installation_id is None:
            log.warning("skipped: the delivery names no installation, so the app cannot act on it")
            return True
        installation_id = envelope.installation_id
        if self._gateway.is_gone(installation_id):
            raise InstallationGone(f"installation {installation_id} was deleted or suspended")
        await self._gateway.refresh(installation_id)  # what other replicas met meanwhile
        hold = self._gateway.hold_until(installation_id, item.priority)
        if hold is not None:
            raise Deferred(*hold)
        payload = self._read_payload(envelope.payload)
        if payload is None:
            return False
        job = payload.get("backfill") if backfill else None
        if isinstance(job, dict):
            wanted = set(job.get("processors") or ())
            processors = tuple(p for p in processors if p.name in wanted)
        typed = LazyEvent(envelope.event, payload, on_mismatch=self._schema_mismatch)
        github = self._gateway.installation(envelope.installation_id)
        note_work()
        try:
            config = (
                await self._configs.get(github, envelope.repository)
                if envelope.repository
                else RepoConfig()
            )
        except (RetryableGitHubError, InstallationGone):
            raise
        except GitHubError as exc:
            note_error(exc)
            log.error("cannot read the repository config: %s", exc)
            return False
        ok = True
        retryable: RetryableGitHubError | None = None
        already = self._succeeded.of(envelope.delivery_id)
        for processor in processors:
            if processor.name in already:
                log.debug("processor %s already handled this delivery", processor.name)
                continue
            processor_config = config.for_processor(processor)
            if not processor_config.enabled:
                continue
            context: Context[Any] = Context(
                envelope=envelope,
                payload=payload,
                github=github,
                config=processor_config,
                dry_run=self._dry_run or (isinstance(job, dict) and bool(job.get("dry_run"))),
                log=logging.getLogger(f"processors.{processor.name}"),
                bot_login=bot,
                state=self.states.get(processor.name),
                typed_event=typed.get,
            )
            started = time.perf_counter()
            try:
                succeeded = await self._call(processor, context, changes if backfill else None)
            except RetryableGitHubError as exc:
                self._observe(item, processor.name, started, ok=False)
                retryable = exc  # the others still get their turn; the event comes back
                continue
            self._observe(item, processor.name, started, ok=succeeded)
            if succeeded:
                self._succeeded.add(envelope.delivery_id, processor.name)
            ok = succeeded and ok
        if retryable is not None:
            raise retryable
        return ok

    def _read_payload(self, packed: bytes) -> dict[str, Any] | None:
        """The queued payload, decoded once for every processor; ``None`` (logged) if unreadable."""
        try:
            payload = orjson.loads(self._codec.decompress(packed))
        except (CompressionError, orjson.JSONDecodeError) as exc:
            log.error("cannot read the queued payload: %s", exc)
            return None
        if not isinstance(payload, dict):
            log.error("cannot read the queued payload: not a JSON object")
            return None
        return payload

    def _schema_mismatch(self, exc: ValidationError) -> None:
        # GitHub's payloads drift from the published schema (its own examples lack fields
        # the schema requires): the processor gets ``ctx.event`` None and the raw payload.
        self.stats.unparseable += 1
        log.warning("payload differs from githubkit's schema: %s", first_error(exc))

    def _observe(self, item: QueuedEvent, name: str, started: float, *, ok: bool) -> None:
        if self._observer is not None:
            elapsed = time.perf_counter() - started
            self._observer.processor_finished(item, name, elapsed, ok)

    async def _call(
        self,
        processor: Processor[Any],
        context: Context[Any],
        changes: dict[str, BackfillChange] | None = None,
    ) -> bool:
        """True if the processor succeeded; a failure that may pass or stop all is raised.

        With ``changes`` the event is a backfill's: the processor's ``backfill`` runs and
        what it did is kept there under its name.
        """
        started = time.perf_counter()
        try:
            if changes is not None and processor.backfill is not None:
                changes[processor.name] = await processor.backfill(context)
            else:
                await processor.handle(context)
        except (GitHubError, GitHubException) as exc:
            self.stats.failed[processor.name] += 1
            error = exc if isinstance(exc, GitHubError) else as_github_error(exc)
            note_error(error)
            if isinstance(error, RetryableGitHubError | InstallationGone):
                log.warning("processor %s failed, may pass: %s", processor.name, error)
                raise error from None
            log.error("processor %s failed: %s", processor.name, error)
            return False
        except Deferred:
            raise  # the installation must wait: not a failure of this processor
        except Exception:
            self.stats.failed[processor.name] += 1
            log.exception("processor %s raised", processor.name)
            return False
        finally:
            elapsed = time.perf_counter() - started
            self.stats.seconds[processor.name] = (
                self.stats.seconds.get(processor.name, 0.0) + elapsed
            )
        self.stats.ok[processor.name] += 1
        return True
