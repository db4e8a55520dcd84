"""Runs one queued event through every processor subscribed to it.

This is where the worker does what the request path skipped: decompress,
parse into githubkit's typed model, load the repository's config, and call
each processor in isolation. One processor failing never stops another; each
failure is logged with the delivery's context and counted per processor. An
event any processor failed on is forgotten by the delivery memory, so GitHub's
redelivery of it is accepted again.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from githubkit.exception import GitHubException
from pydantic import ValidationError

from github_app.compression import PayloadCodec
from github_app.deliveries import RecentDeliveries
from github_app.errors import Deferred, GitHubError, InstallationGone, RetryableGitHubError
from github_app.github import GitHubGateway, as_github_error, naming_objects
from github_app.installations import apply_lifecycle
from github_app.logs import event_context
from github_app.processor import Context, Processor
from github_app.queue import QueuedEvent
from github_app.registry import Registry
from github_app.repo_config import RepoConfig, RepoConfigStore
from github_app.webhooks import parse_event

log = logging.getLogger(__name__)


@dataclass
class ProcessorStats:
    """Counters per processor name, for the status endpoint and metrics."""

    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    events_failed: int = 0
    events_ok: int = 0
    own_events_skipped: int = 0
    unparseable: int = 0
    deferred: int = 0
    retried: int = 0
    installation_gone: int = 0


class EventRunner:
    """The dispatcher's handler: one call per queued event."""

    def __init__(
        self,
        *,
        registry: Registry,
        gateway: GitHubGateway,
        configs: RepoConfigStore,
        codec: PayloadCodec,
        deliveries: RecentDeliveries,
        dry_run: bool,
    ) -> None:
        self._registry = registry
        self._gateway = gateway
        self._configs = configs
        self._codec = codec
        self._deliveries = deliveries
        self._dry_run = dry_run
        self.stats = ProcessorStats()

    async def __call__(self, item: QueuedEvent) -> None:
        envelope = item.envelope
        with event_context(envelope), naming_objects(envelope.repository, envelope.issue_number):
            try:
                ok = await self._run(item)
            except Deferred as exc:
                # Nothing ran: the queue holds the event until the installation may go on.
                self.stats.deferred += 1
                log.debug("deferred: %s", exc.reason)
                raise
            except RetryableGitHubError as exc:
                self.stats.retried += 1
                log.debug("back to the queue: %s", exc)
                raise
            except InstallationGone as exc:
                self.stats.installation_gone += 1
                log.warning("dropped: %s", exc)
                raise
        if ok:
            self.stats.events_ok += 1
        else:
            self.stats.events_failed += 1
            self._deliveries.forget(envelope.delivery_id)

    async def _run(self, item: QueuedEvent) -> bool:
        envelope = item.envelope
        apply_lifecycle(envelope, self._gateway)
        processors = self._registry.for_event(envelope.event, envelope.action)
        if not processors:
            return True
        bot = self._gateway.bot_login
        if bot is not None and envelope.sender_login == bot:
            self.stats.own_events_skipped += 1
            log.debug("skipped: sent by this app")
            return True
        if self._gateway.app is not None and envelope.installation_id is None:
            log.warning("skipped: the delivery names no installation, so the app cannot act on it")
            return True
        installation_id = envelope.installation_id
        if self._gateway.is_gone(installation_id):
            raise InstallationGone(f"installation {installation_id} was deleted or suspended")
        hold = self._gateway.hold_until(installation_id)
        if hold is not None:
            raise Deferred(*hold)
        body = self._codec.decompress(envelope.payload)
        try:
            event: Any = parse_event(envelope.event, body)
        except ValidationError as exc:
            # GitHub's payloads drift from the published schema (its own examples lack fields
            # the schema requires). Processors still get the raw payload; the typed one is None.
            self.stats.unparseable += 1
            event = None
            log.warning("payload differs from githubkit's schema: %s", _first_error(exc))
        payload: dict[str, Any] = json.loads(body)
        github = self._gateway.installation(envelope.installation_id)
        try:
            config = (
                await self._configs.get(github, envelope.repository)
                if envelope.repository
                else RepoConfig()
            )
        except (RetryableGitHubError, InstallationGone):
            raise
        except GitHubError as exc:
            log.error("cannot read the repository config: %s", exc)
            return False
        ok = True
        retry: RetryableGitHubError | None = None
        for processor in processors:
            processor_config = config.for_processor(processor)
            if not processor_config.enabled:
                continue
            context: Context[Any] = Context(
                envelope=envelope,
                event=event,
                payload=payload,
                github=github,
                config=processor_config,
                dry_run=self._dry_run,
                log=logging.getLogger(f"processors.{processor.name}"),
                bot_login=bot,
            )
            error = await self._call(processor, context)
            if isinstance(error, InstallationGone):
                raise error
            if isinstance(error, RetryableGitHubError):
                retry = error
            ok = ok and error is None
        if retry is not None:
            # The whole event goes back to the queue; processors check before writing again.
            raise retry
        return ok

    async def _call(self, processor: Processor[Any], context: Context[Any]) -> Exception | None:
        """Run one processor in isolation; returns its failure, ``None`` on success."""
        started = time.perf_counter()
        try:
            await processor.handle(context)
        except (GitHubError, GitHubException) as exc:
            self.stats.failed[processor.name] += 1
            error = as_github_error(exc)
            if isinstance(error, RetryableGitHubError):
                log.warning(
                    "processor %s failed, the event will be retried: %s", processor.name, error
                )
            else:
                log.error("processor %s failed: %s", processor.name, error)
            return error
        except Exception as exc:
            self.stats.failed[processor.name] += 1
            log.exception("processor %s raised", processor.name)
            return exc
        finally:
            elapsed = time.perf_counter() - started
            self.stats.seconds[processor.name] = (
                self.stats.seconds.get(processor.name, 0.0) + elapsed
            )
        self.stats.ok[processor.name] += 1
        return None


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    first = errors[0]
    location = ".".join(str(part) for part in first["loc"][:6])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{location}: {first['msg']}{more}"
