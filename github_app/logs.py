"""Logging set-up: text or one JSON object per line, with the event's context on every line.

The context (delivery id, event, action, installation, repository) lives in a
ContextVar set by the worker for the event it runs; anyio tasks copy context
when spawned, so every line logged while handling an event carries it, down
to the HTTP layer's dry-run lines, without passing a logger around.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from github_app.envelope import Envelope

EVENT_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("event_context", default=None)
CONTEXT_FIELDS = ("delivery_id", "event", "action", "installation", "repository")


def envelope_context(envelope: Envelope) -> dict[str, Any]:
    return {
        "delivery_id": envelope.delivery_id,
        "event": envelope.event,
        "action": envelope.action,
        "installation": envelope.installation_id,
        "repository": envelope.repository,
    }


@contextmanager
def event_context(envelope: Envelope) -> Iterator[None]:
    """Every log line inside this block carries the envelope's routing fields."""
    token = EVENT_CONTEXT.set(envelope_context(envelope))
    try:
        yield
    finally:
        EVENT_CONTEXT.reset(token)


_base_factory = logging.getLogRecordFactory()


def _record_with_context(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    record.ctx = EVENT_CONTEXT.get()
    return record


def install_context() -> None:
    """Make every log record carry the current event context as ``record.ctx``.

    A record factory (not a handler filter) so that any handler sees it,
    including ones added later by an embedding program or a test.
    """
    if logging.getLogRecordFactory() is not _record_with_context:
        logging.setLogRecordFactory(_record_with_context)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = getattr(record, "ctx", None)
        if ctx:
            fields = " ".join(f"{k}={ctx[k]}" for k in CONTEXT_FIELDS if ctx.get(k) is not None)
            line = f"{line} [{fields}]"
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ctx = getattr(record, "ctx", None)
        if ctx:
            entry.update({k: v for k, v in ctx.items() if v is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Route our and uvicorn's loggers to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    install_context()
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("httpx").setLevel(logging.WARNING)


NAMED_IDS = 50  # delivery ids named in one line; the rest are counted


def named_ids(delivery_ids: Sequence[str], most: int = NAMED_IDS) -> str:
    """Delivery ids for a log line (an audit, what a shutdown leaves): the first ``most``."""
    shown = ", ".join(delivery_ids[:most])
    extra = len(delivery_ids) - most
    return f"{shown} and {extra} more" if extra > 0 else shown
