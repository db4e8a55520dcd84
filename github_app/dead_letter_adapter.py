"""The admin routes' view of the queue's dead letters: the one place that knows its method names.

The dead-letter queue is built in parallel (issue 4) with, as planned,
``dead_letters()``, ``redrive(delivery_id)``, ``redrive_all()`` and
``purge_dead_letters()`` on the queue. This adapter calls those when the
queue has them and otherwise behaves as an empty dead-letter queue (an empty
list, unknown ids, nothing to redrive or purge), so the admin routes and their
tests do not change when it lands; reconciling names is an edit to this file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from github_app.status import jsonable

# Fields of a dead-lettered entry worth showing; the payload (compressed bytes) never is.
ENTRY_FIELDS = ("reason", "error", "attempts", "dead_lettered_at", "enqueued_at")
ENVELOPE_FIELDS = ("delivery_id", "event", "action", "installation_id", "repository")


class DeadLetterAdapter:
    """List, redrive and purge dead letters of whatever queue the runtime has."""

    def __init__(self, queue: object, *, on_redrive: Callable[[], None]) -> None:
        self._queue = queue
        self._on_redrive = on_redrive

    @property
    def supported(self) -> bool:
        """Whether the queue has a dead-letter queue at all (shown by the admin route)."""
        return callable(getattr(self._queue, "dead_letters", None))

    def list(self) -> list[dict[str, Any]]:
        entries = getattr(self._queue, "dead_letters", None)
        if not callable(entries):
            return []
        return [describe(entry) for entry in entries()]

    def redrive(self, delivery_id: str) -> bool:
        """Put one dead letter back in the queue; ``False`` when there is no such delivery."""
        redrive = getattr(self._queue, "redrive", None)
        if not callable(redrive):
            return False
        found = bool(redrive(delivery_id))
        if found:
            self._on_redrive()
        return found

    def redrive_all(self) -> int:
        redrive_all = getattr(self._queue, "redrive_all", None)
        if not callable(redrive_all):
            return 0
        count = int(redrive_all())
        if count:
            self._on_redrive()
        return count

    def purge(self) -> int:
        purge = getattr(self._queue, "purge_dead_letters", None)
        return int(purge()) if callable(purge) else 0


def describe(entry: Any) -> dict[str, Any]:
    """A dead letter as JSON: the delivery's routing fields and why it died, no payload."""
    item = getattr(entry, "item", entry)
    envelope = getattr(item, "envelope", None) or getattr(entry, "envelope", None)
    described: dict[str, Any] = {}
    for name in ENVELOPE_FIELDS:
        if envelope is not None and hasattr(envelope, name):
            described[name] = jsonable(getattr(envelope, name))
    priority = getattr(item, "priority", None)
    if priority is not None:
        described["priority"] = jsonable(priority)
    for name in ENTRY_FIELDS:
        for source in (entry, item):
            if hasattr(source, name):
                described[name] = jsonable(getattr(source, name))
                break
    return described
