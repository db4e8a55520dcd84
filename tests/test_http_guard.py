"""Slow or greedy clients against the real server: deadlines, a connection cap, a reading cap.

Raw sockets play the attacker (a slowloris trickling headers or a body, idle
connections piling up, big unsigned bodies held open); each test would hang
or pass on a server without the guard, and each waits on the server closing
the connection, never on a clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketStream

from tests.conftest import RunningApp, make_settings, running_app, wait_for
from tests.deliveries import issue_event, signed

pytestmark = pytest.mark.anyio

REQUEST_START = b"POST /api/github/webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def delivery_head(length: int) -> bytes:
    """A webhook request's line and headers, announcing ``length`` bytes of body."""
    return REQUEST_START + (
        b"Content-Type: application/json\r\nX-GitHub-Event: issues\r\n"
        b"X-GitHub-Delivery: d-1\r\nX-Hub-Signature-256: sha256=00\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


@asynccontextmanager
async def raw_connection(app: RunningApp) -> AsyncIterator[SocketStream]:
    port = int(app.url.rsplit(":", 1)[1])
    stream = await anyio.connect_tcp("127.0.0.1", port)
    async with stream:
        yield stream


async def closed_by_server(stream: SocketStream) -> bool:
    """Wait (up to 5 s) for the server to close without answering."""
    with anyio.fail_after(5):
        try:
            return await stream.receive() == b""
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            return True


async def trickle_until_closed(stream: SocketStream, piece: bytes, limit: int = 400) -> bool:
    """Send ``piece`` every 20 ms, as a slowloris does; True once the server has closed."""
    for _ in range(limit):
        try:
            await stream.send(piece)
            with anyio.move_on_after(0.02):
                if await stream.receive() == b"":
                    return True
                return True  # it answered (and will close): not left hanging either
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            return True
    return False


async def test_headers_trickled_byte_by_byte_are_cut_off() -> None:
    settings = make_settings(None, HTTP_HEADER_TIMEOUT="0.3")
    async with running_app(settings) as app, raw_connection(app) as stream:
        await stream.send(REQUEST_START)
        assert await trickle_until_closed(stream, b"X")


async def test_a_body_trickled_after_its_headers_is_cut_off_and_counted() -> None:
    settings = make_settings(None, HTTP_BODY_TIMEOUT="0.3")
    async with running_app(settings) as app:
        async with raw_connection(app) as stream:
            await stream.send(delivery_head(100_000))
            assert await trickle_until_closed(stream, b" ")
        rejected = app.runtime.intake.stats.rejected
        await wait_for(lambda: rejected["client_disconnected"] == 1, what="the count")
        assert app.runtime.intake.reading_bytes == 0


async def test_connections_beyond_the_cap_are_closed_at_once_and_served_again_below_it() -> None:
    settings = make_settings(None, HTTP_MAX_CONNECTIONS="2", HTTP_HEADER_TIMEOUT="60")
    async with running_app(settings) as app:
        async with raw_connection(app), raw_connection(app) as second:
            async with raw_connection(app) as third:
                assert await closed_by_server(third)
            await second.aclose()
        health = await app.client.get(app.url + "/healthz")
    assert health.status_code == 200


async def test_bodies_being_read_are_capped_in_bytes_and_a_delivery_beyond_is_a_503() -> None:
    settings = make_settings(None, WEBHOOK_MAX_READING_BYTES=str(25 * 1024 * 1024))
    async with running_app(settings) as app:
        async with raw_connection(app) as holder:
            await holder.send(delivery_head(20_000_000) + b"{")
            intake = app.runtime.intake
            await wait_for(lambda: intake.reading_bytes == 20_000_000, what="the reservation")
            padded = issue_event()
            padded["padding"] = "x" * 7_000_000  # 20 MB + 7 MB > 25 MiB
            refused = await app.post(signed(padded, "issues"))
        await wait_for(lambda: intake.reading_bytes == 0, what="the release")
        accepted = await app.post(signed(padded, "issues"))
    assert refused.status_code == 503
    assert refused.json()["error"] == "busy_reading"
    assert refused.headers["retry-after"]
    assert accepted.status_code == 202
