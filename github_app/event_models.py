"""githubkit's typed models of webhook payloads, for the processors that ask for them.

Building a model costs far more than reading the routing fields, so it happens
in the worker, lazily (``LazyEvent``: only when a processor asks, once per
event), with one pydantic TypeAdapter per event name built once (``warm_up``
builds them at start-up, before the first delivery).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from githubkit_schemas.latest.webhooks import VALID_EVENT_NAMES, WebhookNamespace
from pydantic import TypeAdapter, ValidationError

from github_app.errors import WebhookError


@functools.cache
def _adapter(event: str) -> TypeAdapter[Any]:
    # githubkit's own ``parse`` builds this adapter on every call (milliseconds); we build it
    # once per event name, from the same schema version githubkit's namespace uses.
    if event not in VALID_EVENT_NAMES:
        raise WebhookError(400, "unknown_event", f"unknown event type {event!r}")
    package = WebhookNamespace.__module__.rsplit(".", 1)[0]
    module = importlib.import_module(f"{package}.{event}")
    return TypeAdapter(module.Event)


def warm_up(events: Iterable[str]) -> None:
    """Build the parsers of these events now: the first build of one takes up to a second.

    Done at start-up, before the server accepts deliveries; otherwise the first
    event a worker parses stalls the event loop, and every acknowledgement with it.
    """
    for event in {name.split(".", 1)[0] for name in events}:
        if event in VALID_EVENT_NAMES:
            _adapter(event)


def parse_event(event: str, payload: Mapping[str, Any]) -> Any:
    """The typed githubkit model of a decoded payload (``IssuesOpened``, ...).

    Raises pydantic's ``ValidationError`` when the payload does not match the schema.
    """
    return _adapter(event).validate_python(payload)


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
