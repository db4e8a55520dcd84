"""uvicorn's HTTP protocol with deadlines and a cap, so a slow client cannot hold the server.

Anyone on the network reaches the webhook route before any signature is
checked. uvicorn alone has no header or body read timeout: its keep-alive
timer is reset by every byte, so a request trickled at one byte a second
stays open for ever, and every such connection holds a socket, a task and
its buffered bytes. Here, per connection:

- the request line and headers must arrive within ``header_timeout`` of the
  connection (or of the previous response), and be at most
  ``MAX_HEADER_BYTES``;
- the body must arrive within ``body_timeout`` of the headers;
- beyond ``max_connections`` open connections, a new one is closed at once.

A connection past a deadline is closed: the route reading its body sees a
disconnect (and counts it), GitHub sees a failed delivery it can redeliver.
The defaults fit GitHub, which sends a delivery at once and gives up after
10 seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from github_app.config import Settings

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024  # GitHub's headers are about 1 KiB
REFUSAL_LOG_INTERVAL = 60.0  # at most one line a minute per kind of closed connection


class GuardedHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with the deadlines and the cap of the module docstring."""

    header_timeout: float = 5.0
    body_timeout: float = 10.0
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._reading_headers = True
        self._in_message = False  # between a request's first byte and its body's last
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refused = True
            self._refuse(transport)
            return
        self._expect_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._reading_headers:  # still, after this data: all of it was request line/headers
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._close("headers larger than 64 KiB")

    def on_message_begin(self) -> None:
        self._in_message = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._arm(self.body_timeout, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_message = False
        self._cancel_deadline()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Answered before its body was in (a 413): the body's deadline still runs.
        if not self.transport.is_closing() and not self._in_message:
            self._expect_headers()

    def _expect_headers(self) -> None:
        self._reading_headers = True
        self._header_bytes = 0
        self._arm(self.header_timeout, "request line and headers")

    def _arm(self, seconds: float, what: str) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(seconds, self._close, f"{what} too slow")

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _close(self, why: str) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            client = "{}:{}".format(*self.client) if self.client else "a client"
            _note(why, f"closed the connection of {client}: {why}")
            self.transport.close()

    def _refuse(self, transport: asyncio.Transport) -> None:
        _note("cap", f"{self.max_connections} connections open, the cap: closed a new one at once")
        transport.close()


_noted: dict[str, float] = {}  # kind of line -> when it was last logged
_counts: dict[str, int] = {}  # kind of line -> how many since


def _note(kind: str, line: str) -> None:
    """Log a closed or refused connection, at most once a minute per kind (a flood is many)."""
    _counts[kind] = _counts.get(kind, 0) + 1
    now = time.monotonic()
    if now - _noted.get(kind, -REFUSAL_LOG_INTERVAL) >= REFUSAL_LOG_INTERVAL:
        _noted[kind] = now
        count, _counts[kind] = _counts[kind], 0
        log.warning("%s (%d like it in the last minute at most)", line, count)


def guarded_protocol(settings: Settings) -> type[GuardedHttpProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, with this server's settings."""
    return type(
        "GuardedHttpProtocol",
        (GuardedHttpProtocol,),
        {
            "header_timeout": settings.http_header_timeout,
            "body_timeout": settings.http_body_timeout,
            "max_connections": settings.http_max_connections,
        },
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What every server of this app passes to ``uvicorn.Config`` (``serve`` and the tests)."""
    return {"http": guarded_protocol(settings), "timeout_keep_alive": 5}
