"""githubkit's typed models of webhook payloads, for the processors that ask for them.

Building a model costs far more than reading the routing fields, so it happens
in the worker, lazily (``LazyEvent``: only when a processor asks, once per
event), with one pydantic TypeAdapter per event name built once. The first
build of one imports githubkit's models of that event (about half a second of
CPU for ``issues``), so ``warm_up`` builds them at start-up for the processors
that declare they read the model (``Processor.reads_event_model``), and for no
others: none of the built-ins does, and a start that builds what nobody reads
only delays the moment the server listens. An undeclared reader still gets its
model, built on first use (the event loop waits meanwhile, once, and says so
in the log).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from githubkit_schemas.latest.webhooks import VALID_EVENT_NAMES, WebhookNamespace
from pydantic import TypeAdapter, ValidationError

from github_app.errors import WebhookError

log = logging.getLogger(__name__)

_ADAPTERS: dict[str, TypeAdapter[Any]] = {}
"""One parser per event name, built once for the life of the process (see ``_adapter``)."""


def _adapter(event: str, *, on_demand: bool) -> TypeAdapter[Any]:
    # githubkit's own ``parse`` builds this adapter on every call (milliseconds); we build it
    # once per event name, from the same schema version githubkit's namespace uses.
    adapter = _ADAPTERS.get(event)
    if adapter is not None:
        return adapter
    if event not in VALID_EVENT_NAMES:
        raise WebhookError(400, "unknown_event", f"unknown event type {event!r}")
    started = time.perf_counter()
    package = WebhookNamespace.__module__.rsplit(".", 1)[0]
    module = importlib.import_module(f"{package}.{event}")
    adapter = _ADAPTERS[event] = TypeAdapter(module.Event)
    if on_demand:
        log.info(
            "githubkit's parser of %r events was built on first use (%.2f s, the event loop "
            "waited): a processor that reads ctx.event declares reads_event_model=True to have "
            "it built at start-up",
            event,
            time.perf_counter() - started,
        )
    return adapter


def warm_up(events: Iterable[str]) -> None:
    """Build the parsers of these events now: the first build of one takes up to a second.

    Done at start-up for the events of processors that read the typed model, before
    the server accepts deliveries; otherwise the first such event a worker parses
    stalls the event loop, and every acknowledgement with it.
    """
    for event in {name.split(".", 1)[0] for name in events}:
        if event in VALID_EVENT_NAMES:
            _adapter(event, on_demand=False)


def parse_event(event: str, payload: Mapping[str, Any]) -> Any:
    """The typed githubkit model of a decoded payload (``IssuesOpened``, ...).

    Raises pydantic's ``ValidationError`` when the payload does not match the schema.
    """
    return _adapter(event, on_demand=True).validate_python(payload)


class LazyEvent:
    """One event's typed model, built the first time a processor asks, then kept.

    Every processor of an event shares one ``LazyEvent``, so the payload is
    validated at most once per event, and never when no processor asks.
    GitHub's payloads drift from the published schema (its own examples lack
    fields the schema requires): such a payload's model is ``None``, and
    ``on_mismatch`` is told once.
    """

    __slots__ = ("_built", "_event", "_model", "_on_mismatch", "_payload")

    def __init__(
        self,
        event: str,
        payload: Mapping[str, Any],
        on_mismatch: Callable[[ValidationError], None] | None = None,
    ) -> None:
        self._event = event
        self._payload = payload
        self._on_mismatch = on_mismatch
        self._built = False
        self._model: Any = None

    def get(self) -> Any:
        """The typed model, or ``None`` when the payload does not match the schema."""
        if not self._built:
            self._built = True
            try:
                self._model = parse_event(self._event, self._payload)
            except ValidationError as exc:
                if self._on_mismatch is not None:
                    self._on_mismatch(exc)
        return self._model


def first_error(exc: ValidationError) -> str:
    """The first of a validation's errors in one line (where, what), and how many more."""
    errors = exc.errors()
    if not errors:
        return str(exc)
    first = errors[0]
    location = ".".join(str(part) for part in first["loc"][:6])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{location}: {first['msg']}{more}"
