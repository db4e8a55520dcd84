"""GitHub's side of the app's webhook, simulated on a respx router.

It keeps the delivery log as GitHub does (one entry per attempt, the list
fields of ``GET /app/hook/deliveries``), serves it newest first with cursor
pagination in the ``Link`` header, and answers ``POST
/app/hook/deliveries/{id}/attempts`` with 202 ``{}``. With ``send`` it also
plays the sender: it posts a delivery to the app, logs the attempt with the
app's answer (``status_code`` 0 when the app could not be reached), and a
requested redelivery is sent again, same body and ``X-GitHub-Delivery``, by
``redeliver_pending`` (GitHub answers the request first and delivers later).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import respx

from tests.deliveries import Delivery

API = "https://api.github.com"
LOG_PATH = "/app/hook/deliveries"


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeHookLog:
    router: respx.MockRouter
    api: str = API
    clock: Callable[[], float] = time.time
    entries: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    redelivery_requests: list[int] = field(default_factory=list)  # attempt ids asked for
    pages_served: int = 0
    # attempt id -> what to answer instead of the page/202 (faults); consumed once each
    page_faults: list[httpx.Response | Exception] = field(default_factory=list)
    redeliver_faults: list[httpx.Response | Exception] = field(default_factory=list)
    sent: dict[str, Delivery] = field(default_factory=dict)  # guid -> what was delivered
    pending: list[str] = field(default_factory=list)  # guids to redeliver
    on_page: Callable[[], None] | None = None  # called before a page is served
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def __post_init__(self) -> None:
        self.router.get(f"{self.api}{LOG_PATH}", name="delivery_log").mock(side_effect=self._page)
        self.router.post(
            url__regex=rf"^{self.api}{LOG_PATH}/(?P<attempt>\d+)/attempts$", name="redeliver"
        ).mock(side_effect=self._redeliver)

    def log(
        self,
        guid: str,
        *,
        status_code: int,
        event: str = "issues",
        action: str | None = "opened",
        redelivery: bool = False,
        at: float | None = None,
    ) -> dict[str, Any]:
        """Add one attempt to the log (newest unless ``at`` says otherwise)."""
        entry = {
            "id": next(self._ids),
            "guid": guid,
            "delivered_at": iso(self.clock() if at is None else at),
            "redelivery": redelivery,
            "duration": 0.01,
            "status": "OK" if 200 <= status_code < 300 else f"Invalid HTTP Response: {status_code}",
            "status_code": status_code,
            "event": event,
            "action": action,
            "installation_id": 42,
            "repository_id": 1296269,
            "throttled_at": None,
        }
        self.entries.append(entry)
        self.entries.sort(key=lambda e: (e["delivered_at"], e["id"]))
        return entry

    def requested_guids(self) -> list[str]:
        by_id = {e["id"]: e["guid"] for e in self.entries}
        return [by_id[attempt] for attempt in self.redelivery_requests]

    # --- GitHub as the sender ----------------------------------------------------------------

    async def send(self, client: httpx.AsyncClient, url: str, delivery: Delivery) -> int:
        """Deliver to the app as GitHub does and log the attempt; the app's status (0: none)."""
        guid = delivery.delivery_id
        redelivery = guid in self.sent
        self.sent[guid] = delivery
        try:
            response = await client.post(url, content=delivery.body, headers=delivery.headers)
            status = response.status_code
        except httpx.TransportError:
            status = 0
        payload_action = _action(delivery)
        self.log(
            guid,
            status_code=status,
            event=delivery.headers["X-GitHub-Event"],
            action=payload_action,
            redelivery=redelivery,
        )
        return status

    async def redeliver_pending(self, client: httpx.AsyncClient, url: str) -> list[int]:
        """Send the redeliveries asked for so far, in the order asked."""
        pending, self.pending = self.pending, []
        return [await self.send(client, url, self.sent[guid]) for guid in pending]

    # --- the REST endpoints -------------------------------------------------------------------

    def _page(self, request: httpx.Request) -> httpx.Response:
        if self.on_page is not None:
            self.on_page()
        if self.page_faults:
            fault = self.page_faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        self.pages_served += 1
        per_page = int(request.url.params.get("per_page", "30"))
        newest_first = list(reversed(self.entries))
        cursor = request.url.params.get("cursor")
        start = 0
        if cursor is not None:
            start = next(
                i for i, e in enumerate(newest_first) if e["id"] == int(cursor.removeprefix("v1_"))
            )
        page = newest_first[start : start + per_page]
        headers = {}
        if start + per_page < len(newest_first):
            after = newest_first[start + per_page]["id"]
            headers["link"] = (
                f'<{self.api}{LOG_PATH}?per_page={per_page}&cursor=v1_{after}>; rel="next"'
            )
        return httpx.Response(200, json=page, headers=headers)

    def _redeliver(self, request: httpx.Request, attempt: str) -> httpx.Response:
        if self.redeliver_faults:
            fault = self.redeliver_faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        attempt_id = int(attempt)
        entry = next((e for e in self.entries if e["id"] == attempt_id), None)
        if entry is None:
            return httpx.Response(404, json={"message": "Not Found"})
        self.redelivery_requests.append(attempt_id)
        if entry["guid"] in self.sent:
            self.pending.append(entry["guid"])
        return httpx.Response(202, json={})


def _action(delivery: Delivery) -> str | None:
    import json

    payload = json.loads(delivery.body)
    action = payload.get("action") if isinstance(payload, dict) else None
    return action if isinstance(action, str) else None
