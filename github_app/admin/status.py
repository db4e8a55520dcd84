"""The status document and the readiness verdict, computed in one place from the parts' stats.

``/admin/status``, the ``/admin`` page, ``/readyz`` and the Prometheus
gauges all read what this module computes, so they never disagree. The
reporter is given the parts it reads at construction (intake, queue,
dispatcher, runner, controller, breaker, gateway, config store), each typed,
and asks each for its own ``stats()``: it knows nothing of the runtime that
wires them.

No secret ever reaches the document: settings are copied field by field
(never the key, secrets or tokens), stats objects are rendered generically
but any field named like a credential is dropped, and as a last guard the
rendered document is checked for the configured secret values themselves.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields, is_dataclass
from typing import Any

import psutil

from github_app import __version__
from github_app.config import Settings
from github_app.control.breaker import BreakerState, CircuitBreaker
from github_app.control.controller import WidthController
from github_app.dispatch.dispatcher import Dispatcher
from github_app.dispatch.registry import Registry
from github_app.dispatch.repo_config import RepoConfigStore
from github_app.dispatch.runner import ProcessorStats
from github_app.github.gateway import GitHubGateway
from github_app.intake.route import WebhookIntake
from github_app.queue.memory import EventQueue
from github_app.queue.priority import Priority
from github_app.recovery.loop import Recovery

# Field names that may hold a credential in any part's stats; never rendered.
SECRET_FIELDS = frozenset(
    {"token", "tokens", "private_key", "pem", "webhook_secret", "admin_token", "jwt", "secret"}
)
REDACTED = "[redacted]"


def jsonable(value: Any) -> Any:
    """A stats value as plain JSON types: dataclasses and mappings become objects."""
    if isinstance(value, enum.Enum):  # before int: Priority is an IntEnum
        return value.name
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        # getattr over the dataclass's own declared fields: the one generic read left here
        return {
            f.name: jsonable(getattr(value, f.name))
            for f in fields(value)
            if f.name.lower() not in SECRET_FIELDS and f.repr
        }
    if isinstance(value, Mapping):
        return {
            str(jsonable(k)): jsonable(v)
            for k, v in value.items()
            if str(k).lower() not in SECRET_FIELDS
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def readiness(*, accepting: bool, queue: EventQueue, breaker: CircuitBreaker) -> str | None:
    """Why the app cannot accept work now, or ``None`` when it can."""
    if not accepting:
        return "shutting down"
    unavailable = queue.unavailable
    if unavailable is not None:
        return unavailable
    if not queue.accepts(Priority.NORMAL):
        return "queue full: NORMAL events are refused"
    if breaker.state is BreakerState.OPEN:
        return "circuit breaker open: GitHub is failing"
    return None


class StatusReporter:
    """Builds the status document from the parts (holds the psutil handle between calls)."""

    def __init__(
        self,
        *,
        settings: Settings,
        started_at: float,
        intake: WebhookIntake,
        queue: EventQueue,
        dispatcher: Dispatcher,
        processors: ProcessorStats,
        registry: Registry,
        controller: WidthController,
        breaker: CircuitBreaker,
        gateway: GitHubGateway,
        configs: RepoConfigStore,
        recovery: Recovery | None = None,
        clock: Callable[[], float] = time.time,
        backfills: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        """``backfills``: the backfill jobs not finished yet (``BackfillService.document``)."""
        self._backfills = backfills
        self._settings = settings
        self._started_at = started_at
        self._intake = intake
        self._queue = queue
        self._dispatcher = dispatcher
        self._processors = processors
        self._registry = registry
        self._controller = controller
        self._breaker = breaker
        self._gateway = gateway
        self._configs = configs
        self._recovery = recovery
        self._clock = clock
        self._process = psutil.Process()
        # cpu_percent compares with the previous call; prime both so the first answer is real.
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)

    def readiness(self) -> str | None:
        """Why the app cannot accept work now (``/readyz``), or ``None`` when it can."""
        return readiness(accepting=self._intake.accepting, queue=self._queue, breaker=self._breaker)

    def host(self) -> dict[str, Any]:
        memory = self._process.memory_info()
        return {
            "cpu_percent": psutil.cpu_percent(None),
            "cpu_count": psutil.cpu_count(),
            "process_cpu_percent": self._process.cpu_percent(None),
            "rss_bytes": memory.rss,
        }

    def document(self) -> dict[str, Any]:
        settings = self._settings
        queue = self._queue.stats()
        runner = self._processors
        gateway = self._gateway
        reason = self.readiness()
        document: dict[str, Any] = {
            "app": {
                "version": __version__,
                "uptime_seconds": round(max(0.0, self._clock() - self._started_at), 3),
                "dry_run": settings.dry_run,
                "credentials": settings.has_credentials,
                "app_id": settings.app_id,
                "app_slug": gateway.app_slug,
                "github_api_url": settings.github_api_url,
                "webhook_path": settings.webhook_path,
                "shutting_down": not self._intake.accepting,
            },
            "ready": {"ready": reason is None, "reason": reason},
            "totals": {
                "received": self._intake.stats.received,
                "admitted": queue.admitted,
                "refused": sum(queue.refused_by_priority.values()),
                "processed": runner.events_ok + runner.events_failed,
                "failed": runner.events_failed,
                "retried": queue.retried,
                "expired": queue.expired,
                "dead_lettered": sum(queue.dead_lettered_by_reason.values()),
                "redriven": queue.redriven,
            },
            "queue": jsonable(queue),
            "dispatcher": jsonable(self._dispatcher.stats()),
            # width bounds, latency EWMAs, last decision and its reason
            "controller": jsonable(self._controller.stats()),
            "breaker": {
                "open": self._breaker.state is BreakerState.OPEN,
                "stats": jsonable(self._breaker.stats()),
            },
            "intake": jsonable(self._intake.stats),
            "processors": _processors(runner, (p.name for p in self._registry)),
            "github": {
                "tokens_cached": len(gateway.tokens),
                "tokens_minted": gateway.tokens.minted,
                # per-installation rate-limit budget (limit, remaining, reset)
                "rate_limits": jsonable(gateway.stats()),
                # with QUEUE_BACKEND=redis: whether the replicas share the limits right now
                # (kept_in "redis"), or Redis is unreachable and this replica paces alone
                "shared_limits": jsonable(gateway.shared_stats()),
            },
            "backfills": self._backfills(),
            # failed deliveries asked for again: totals and the last round (when, seen, requested)
            "recovery": jsonable(self._recovery.stats()) if self._recovery is not None else None,
            "config_errors": {repo: list(errors) for repo, errors in self._configs.errors.items()},
            "host": self.host(),
        }
        return _scrub(document, _secret_values(settings))

    def json(self) -> bytes:
        return json.dumps(self.document()).encode("utf-8")


def _processors(runner: ProcessorStats, names: Iterable[str]) -> dict[str, Any]:
    known = set(names) | set(runner.ok) | set(runner.failed)
    return {
        "events_ok": runner.events_ok,
        "events_failed": runner.events_failed,
        "own_events_skipped": runner.own_events_skipped,
        "unparseable": runner.unparseable,
        "by_processor": {
            name: {
                "ok": runner.ok[name],
                "failed": runner.failed[name],
                "seconds": round(runner.seconds.get(name, 0.0), 6),
            }
            for name in sorted(known)
        },
    }


def _secret_values(settings: Settings) -> list[str]:
    values = [settings.private_key, settings.webhook_secret, settings.admin_token]
    return [v.get_secret_value() for v in values if v and len(v.get_secret_value()) >= 4]


def _scrub(document: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    """Last guard: a configured secret found anywhere in the document is replaced."""
    text = json.dumps(document)
    escaped = [json.dumps(secret)[1:-1] for secret in secrets]
    if not any(secret in text for secret in escaped):
        return document
    for secret in escaped:
        text = text.replace(secret, REDACTED)
    scrubbed: dict[str, Any] = json.loads(text)
    return scrubbed
