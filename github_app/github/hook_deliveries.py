"""GitHub's log of the app's webhook deliveries, read as plain values (no I/O here).

``GET /app/hook/deliveries`` answers one page of attempts, newest first, and
the next page's ``cursor`` in the ``Link`` header. Each entry is one attempt
to deliver one event: ``guid`` is the event's ``X-GitHub-Delivery`` (kept by
every redelivery), ``id`` the attempt's own number, the one that
``POST /app/hook/deliveries/{id}/attempts`` redelivers.

Entries are read from the JSON by hand rather than through githubkit's model:
one odd entry must stop a recovery round with a message naming it, not fail
the whole page inside a schema validation, and a field GitHub adds later must
change nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

PER_PAGE = 100  # GitHub's largest page


class MalformedDelivery(ValueError):
    """An entry of the delivery log is not what GitHub documents."""


@dataclass(frozen=True, slots=True)
class LoggedDelivery:
    """One attempt of the delivery log; ``delivered_at`` as a wall-clock epoch."""

    id: int
    guid: str
    delivered_at: float
    redelivery: bool
    status: str
    status_code: int
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None

    @property
    def ok(self) -> bool:
        """Did this attempt reach the app and get a 2xx? (0: no answer at all.)"""
        return 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    """One page of the log and the cursor of the next (older) one, ``None`` on the last."""

    deliveries: tuple[LoggedDelivery, ...]
    next_cursor: str | None


def parse_time(text: str) -> float:
    """GitHub's ISO 8601 time (``2019-06-03T00:57:16Z``) as an epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _field(item: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = item.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise MalformedDelivery(f"delivery log entry {item.get('id')!r}: bad or missing {name!r}")
    return value


def parse_delivery(item: object) -> LoggedDelivery:
    """One entry of the list, checked; ``MalformedDelivery`` says which field is wrong."""
    if not isinstance(item, Mapping):
        raise MalformedDelivery(f"delivery log entry is not an object: {type(item).__name__}")
    guid = _field(item, "guid", str)
    if not guid.strip():
        raise MalformedDelivery(f"delivery log entry {item.get('id')!r}: empty 'guid'")
    try:
        delivered_at = parse_time(_field(item, "delivered_at", str))
    except ValueError as exc:
        if isinstance(exc, MalformedDelivery):
            raise
        raise MalformedDelivery(
            f"delivery log entry {item.get('id')!r}: 'delivered_at' is not a time"
        ) from None
    return LoggedDelivery(
        id=_field(item, "id", int),
        guid=guid,
        delivered_at=delivered_at,
        redelivery=bool(item.get("redelivery", False)),
        status=str(item.get("status", "")),
        status_code=_field(item, "status_code", int),
        event=_field(item, "event", str),
        action=_optional(item, "action", str),
        installation_id=_optional(item, "installation_id", int),
        repository_id=_optional(item, "repository_id", int),
    )


def _optional(item: Mapping[str, Any], name: str, kind: type) -> Any:
    return None if item.get(name) is None else _field(item, name, kind)


def next_cursor(link_header: str | None) -> str | None:
    """The ``cursor`` of the ``rel="next"`` link, ``None`` when this is the last page."""
    if not link_header:
        return None
    response = httpx.Response(200, headers={"link": link_header})
    nxt = response.links.get("next")
    if nxt is None or "url" not in nxt:
        return None
    cursor = httpx.URL(nxt["url"]).params.get("cursor")
    return cursor or None


def parse_page(body: object, link_header: str | None) -> DeliveryPage:
    """A whole answer of ``GET /app/hook/deliveries``; ``MalformedDelivery`` if it is not a list
    of entries."""
    if not isinstance(body, Sequence) or isinstance(body, str | bytes):
        raise MalformedDelivery("the delivery log answer is not a list")
    return DeliveryPage(tuple(parse_delivery(item) for item in body), next_cursor(link_header))
