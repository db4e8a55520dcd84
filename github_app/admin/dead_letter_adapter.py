"""The admin routes' view of the queue's dead letters: the one place that knows its method names.

The queue (``github_app.queue.memory.EventQueue``) lists, re-drives and purges dead
letters; this adapter turns that into what the admin routes answer and wakes
the dispatcher after a re-drive. Every re-drive and purge leaves an audit line
naming the deliveries it touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from github_app.admin.status import jsonable
from github_app.logs import named_ids
from github_app.queue.memory import EventQueue

log = logging.getLogger(__name__)

ENTRY_FIELDS = (
    "delivery_id",
    "event",
    "action",
    "installation_id",
    "repository",
    "issue_number",
    "priority",
    "attempts",
    "reason",
    "last_error",
    "received_at",
    "dead_lettered_at",
)


class DeadLetterAdapter:
    """List, redrive and purge the queue's dead letters."""

    def __init__(self, queue: EventQueue, *, on_redrive: Callable[[], None]) -> None:
        self._queue = queue
        self._on_redrive = on_redrive

    @property
    def supported(self) -> bool:
        return True

    def list(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The oldest ``limit`` dead letters (all when ``None``)."""
        return [describe(entry) for entry in self._queue.list_dead_letters(limit=limit)]

    def __len__(self) -> int:
        return len(self._queue.list_dead_letters())

    def redrive(self, delivery_id: str) -> bool:
        """Put one dead letter back in the queue; ``False`` when there is no such delivery."""
        found = self._queue.redrive([delivery_id]) > 0
        if found:
            log.info("admin: re-drove dead letter %s", delivery_id)
            self._on_redrive()
        return found

    def redrive_all(self) -> int:
        ids = self._ids()
        count = self._queue.redrive(None)
        if count:
            log.info("admin: re-drove %d dead letter(s): %s", count, named_ids(ids))
            self._on_redrive()
        return count

    def purge(self) -> int:
        ids = self._ids()
        count = self._queue.purge_dead_letters(None)
        if count:
            log.warning("admin: purged %d dead letter(s): %s", count, named_ids(ids))
        return count

    def _ids(self) -> Sequence[str]:
        return [entry.delivery_id for entry in self._queue.list_dead_letters()]


def describe(entry: Any) -> dict[str, Any]:
    """A dead letter as JSON: the delivery's routing fields and why it died, never the payload."""
    return {name: jsonable(getattr(entry, name)) for name in ENTRY_FIELDS if hasattr(entry, name)}
