"""githubkit's typed models of webhook payloads, for the processors that ask for them.

Building a model costs far more than reading the routing fields, so it happens
in the worker, lazily, with one pydantic TypeAdapter per event name built once
(``warm_up`` builds them at start-up, before the first delivery).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable
from typing import Any

from githubkit_schemas.latest.webhooks import VALID_EVENT_NAMES, WebhookNamespace
from pydantic import TypeAdapter

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


def parse_event(event: str, json_body: bytes) -> Any:
    """The typed githubkit model of a payload (``IssuesOpened``, ``IssueCommentCreated``, ...)."""
    return _adapter(event).validate_json(json_body)
