"""The status document and the readiness verdict, computed in one place from the parts' stats.

``/admin/status``, the ``/admin`` page, ``/readyz`` and the Prometheus
gauges all read what this module computes, so they never disagree. Parts
that other work adds later (the gateway's rate-limit ledger, the
concurrency controller, the circuit breaker) are read with ``getattr`` and
shown as ``null`` until they exist.

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
from typing import TYPE_CHECKING, Any

import psutil

from github_app import __version__
from github_app.queue.priority import Priority

if TYPE_CHECKING:
    from github_app.runtime import Runtime

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


def stats_of(part: object | None) -> Any:
    """``part.stats()`` or ``part.stats`` rendered as JSON; ``None`` when there is no such part."""
    if part is None:
        return None
    stats = getattr(part, "stats", None)
    if callable(stats):
        stats = stats()
    return jsonable(stats)


def breaker_open(breaker: object | None) -> bool:
    """Whether the circuit breaker (``github_app.control.breaker``) refuses GitHub calls now.

    Reads ``is_open`` if it has one, else a ``state`` named ``open``.
    """
    if breaker is None:
        return False
    is_open = getattr(breaker, "is_open", None)
    if callable(is_open):
        is_open = is_open()
    if isinstance(is_open, bool):
        return is_open
    state = getattr(breaker, "state", None)
    if callable(state):
        state = state()
    name = state.name if isinstance(state, enum.Enum) else str(state or "")
    return name.lower() == "open"


def readiness(runtime: Runtime) -> str | None:
    """Why the app cannot accept work now, or ``None`` when it can."""
    if runtime.shutting_down:
        return "shutting down"
    if not runtime.queue.accepts(Priority.NORMAL):
        return "queue full: NORMAL events are refused"
    if breaker_open(getattr(runtime, "breaker", None)):
        return "circuit breaker open: GitHub is failing"
    return None


class StatusReporter:
    """Builds the status document of one runtime (holds the psutil handle between calls)."""

    def __init__(self, runtime: Runtime, *, clock: Callable[[], float] = time.time) -> None:
        self._runtime = runtime
        self._clock = clock
        self._process = psutil.Process()
        # cpu_percent compares with the previous call; prime both so the first answer is real.
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)

    def host(self) -> dict[str, Any]:
        memory = self._process.memory_info()
        return {
            "cpu_percent": psutil.cpu_percent(None),
            "cpu_count": psutil.cpu_count(),
            "process_cpu_percent": self._process.cpu_percent(None),
            "rss_bytes": memory.rss,
        }

    def document(self) -> dict[str, Any]:
        runtime = self._runtime
        settings = runtime.settings
        queue = runtime.queue.stats()
        runner = runtime.runner.stats
        gateway = runtime.gateway
        reason = readiness(runtime)
        breaker = getattr(runtime, "breaker", None)
        document: dict[str, Any] = {
            "app": {
                "version": __version__,
                "uptime_seconds": round(max(0.0, self._clock() - runtime.started_at), 3),
                "dry_run": settings.dry_run,
                "credentials": settings.has_credentials,
                "app_id": settings.app_id,
                "app_slug": gateway.app_slug,
                "github_api_url": settings.github_api_url,
                "webhook_path": settings.webhook_path,
                "shutting_down": runtime.shutting_down,
            },
            "ready": {"ready": reason is None, "reason": reason},
            "totals": {
                "received": runtime.intake.stats.received,
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
            "dispatcher": stats_of(runtime.dispatcher),
            # Issue 5: width bounds, latency EWMAs, last decision and its reason.
            "controller": stats_of(getattr(runtime, "controller", None)),
            "breaker": None
            if breaker is None
            else {"open": breaker_open(breaker), "stats": stats_of(breaker)},
            "intake": jsonable(runtime.intake.stats),
            "processors": _processors(runner, (p.name for p in runtime.registry)),
            "github": {
                "tokens_cached": len(gateway.tokens),
                "tokens_minted": gateway.tokens.minted,
                # Issue 3: per-installation rate-limit budget (limit, remaining, reset).
                "rate_limits": stats_of(gateway) if hasattr(gateway, "stats") else None,
            },
            "config_errors": {
                repo: list(errors) for repo, errors in runtime.configs.errors.items()
            },
            "host": self.host(),
        }
        return _scrub(document, _secret_values(runtime))

    def json(self) -> bytes:
        return json.dumps(self.document()).encode("utf-8")


def _processors(runner: Any, names: Iterable[str]) -> dict[str, Any]:
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


def _secret_values(runtime: Runtime) -> list[str]:
    settings = runtime.settings
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
