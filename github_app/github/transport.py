"""The httpx transports under every GitHub client: one shared pool, one metered layer each.

``SharedTransport`` wraps the process-wide connection pool; its ``aclose`` does
nothing because githubkit closes its client after every call, and the pool
must outlive those clients (the gateway closes it for real at shutdown). Every
request to GitHub passes it, and only on its way to the wire: it tells the
``RequestMeter`` (the width controller) of each one, with the seconds GitHub
took to answer and the request's kind (``request_kind``: a token mint, a
read or a write take GitHub different times, so the controller keeps a
baseline per kind). Waits of the app's own happen above it (pacing, a token mint
in progress) and writes a dry run only logs never reach it.

``GitHubTransport`` is the per-installation layer every request of that
installation passes through, in this order:

1. refuse at once (a retryable error, nothing sent) while the installation
   is paused after a secondary limit or its budget is at zero;
2. reads keep the points allowance; writes wait for their turn and go one
   at a time (``pacing``, ``secondary_limits``); a pause learnt meanwhile
   (from another replica, through the pacer's store) refuses as in 1;
3. GETs carry ``If-None-Match`` when an answer is cached; a 304 serves it;
4. a concurrency slot is held while the request is on the wire;
5. every answer updates the ledger; a 403 or 429 is classified once
   (``ratelimit.classify``), the verdict left on the response for the error
   the caller sees, and a secondary limit pauses the installation (shared with
   the other replicas when the store is: ``PaceStore.share``); a 404 on
   a read of an object the running event names is retried after a short
   delay (GitHub's replication race), a bounded number of times. Nothing
   else is ever re-sent here: a failed write goes back to the queue, whose
   processors check before writing again.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import anyio
import httpx

from github_app.control.feedback import RequestMeter, note_wait
from github_app.errors import RetryableGitHubError
from github_app.github.etag_cache import MAX_ENTRY_BYTES, CacheKey, ETagCache
from github_app.github.pacing import InstallationPacer
from github_app.github.ratelimit import (
    LIMIT_STATUSES,
    RATE_LIMIT_EXTENSION,
    RateLimited,
    RateLimitLedger,
)
from github_app.github.secondary_limits import ContentRules

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_PATH = re.compile(r"/app/installations/\d+/access_tokens$")
NOT_FOUND_DELAYS = (1.0, 2.0)
DROPPED_ON_REPLAY = ("content-length", "content-encoding", "content-type", "transfer-encoding")

# Paths (relative to the API root) of the objects the running event names: a 404 on them
# may be GitHub's replication lag rather than a real absence.
EVENT_OBJECTS: ContextVar[tuple[str, ...]] = ContextVar("event_objects", default=())


@contextmanager
def naming_objects(repository: str | None, issue_number: int | None) -> Iterator[None]:
    """While the block runs, reads of this issue (and its sub-resources) survive a brief 404."""
    objects: tuple[str, ...] = ()
    if repository is not None:
        objects = (f"/repos/{repository}",) if issue_number is None else ()
        if issue_number is not None:
            objects = (
                f"/repos/{repository}/issues/{issue_number}",
                f"/repos/{repository}/pulls/{issue_number}",
            )
    token = EVENT_OBJECTS.set(objects)
    try:
        yield
    finally:
        EVENT_OBJECTS.reset(token)


def request_kind(request: httpx.Request) -> str:
    """``mint``, ``read`` or ``write``: kinds of request GitHub answers in different times
    (a token mint is far faster than a write), whose mix changes as a burst goes on."""
    if TOKEN_PATH.search(request.url.path):
        return "mint"
    return "write" if request.method in WRITE_METHODS else "read"


class SharedTransport(httpx.AsyncBaseTransport):
    """A pooled transport that outlives the short-lived clients githubkit makes per call,
    and meters every request on the wire (``meter``)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        meter: RequestMeter | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._meter = meter
        self._clock = clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        meter = self._meter
        if meter is None:
            return await self._inner.handle_async_request(request)
        meter.request_started()
        started = self._clock()
        latency: float | None = None
        try:
            response = await self._inner.handle_async_request(request)
            latency = self._clock() - started  # until the answer's headers: GitHub's time
        finally:
            meter.request_finished(latency, request_kind(request))
        return response

    async def aclose(self) -> None:
        """Clients call this when they are done; the pool stays open for the next one."""

    async def close(self) -> None:
        await self._inner.aclose()


class DryRunTransport(httpx.AsyncBaseTransport):
    """Logs the writes a processor would make instead of sending them.

    Token mints still go through (reads need them). Without an ``inner``
    transport (no credentials at all) reads are answered 404 locally, so
    processors fall back to their defaults and nothing leaves the machine.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport | None) -> None:
        self._inner = inner
        self.writes: list[tuple[str, str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method in WRITE_METHODS and not TOKEN_PATH.search(path):
            body = (await request.aread()).decode("utf-8", "replace")
            self.writes.append((request.method, path, body))
            log.info("dry-run: would %s %s %s", request.method, path, body)
            return httpx.Response(200, json={}, request=request)
        if self._inner is None:
            return httpx.Response(
                404,
                json={"message": "Not Found (dry run without app credentials)"},
                request=request,
            )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Owned by the gateway, like ``SharedTransport``."""


async def _read_raw(response: httpx.Response) -> bytes:
    """The body as sent (still content-encoded); releases the connection."""
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    try:
        # The stream itself, not aiter_raw(): an in-memory answer was already "consumed".
        return b"".join([chunk async for chunk in stream])
    finally:
        await response.aclose()


class _Resumed(httpx.AsyncByteStream):
    """A body whose first chunks were already read: those, then the rest of the same stream."""

    def __init__(
        self, head: list[bytes], rest: AsyncIterator[bytes], response: httpx.Response
    ) -> None:
        self._head = head
        self._rest = rest
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._head:
            yield chunk
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


async def _read_cacheable(
    response: httpx.Response, request: httpx.Request, limit: int = MAX_ENTRY_BYTES
) -> tuple[bytes | None, httpx.Response]:
    """The raw body if it is at most ``limit`` bytes, and a response to hand on either way.

    A larger body is not worth a cache slot, and must not be held whole in
    memory here before the caller's own size check (a 100 MB file in a
    repository): the caller gets the chunks read so far and the rest, unread.
    """
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    rest = stream.__aiter__()
    head: list[bytes] = []
    size = 0
    try:
        async for chunk in rest:
            head.append(chunk)
            size += len(chunk)
            if size > limit:
                return None, _replay(response, _Resumed(head, rest, response), request)
    except BaseException:
        await response.aclose()
        raise
    await response.aclose()
    raw = b"".join(head)
    return raw, _replay(response, raw, request)


def _replay(
    response: httpx.Response,
    raw: bytes | httpx.AsyncByteStream,
    request: httpx.Request,
    extensions: dict[str, object] | None = None,
) -> httpx.Response:
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "content-length"]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=raw if isinstance(raw, bytes) else None,
        stream=None if isinstance(raw, bytes) else raw,
        request=request,
        extensions={**response.extensions, **(extensions or {})},
    )


class GitHubTransport(httpx.AsyncBaseTransport):
    """One installation's (or the app's) way onto the shared pool; see the module docstring."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        ledger: RateLimitLedger,
        *,
        pacer: InstallationPacer | None = None,
        etags: ETagCache | None = None,
        base_path: str = "",
        not_found_delays: Sequence[float] = NOT_FOUND_DELAYS,
        content: ContentRules | None = None,
    ) -> None:
        self._inner = inner
        self._content = content if content is not None else ContentRules()
        self._ledger = ledger
        self._pacer = pacer
        self._etags = etags
        self._base_path = base_path.rstrip("/")
        self._not_found_delays = tuple(not_found_delays)

    def _refuse_if_blocked(self, request: httpx.Request) -> None:
        blocked = self._ledger.blocked_for()
        if blocked is not None:
            raise RetryableGitHubError(
                f"not sent: installation {self._ledger.installation_id} must wait "
                f"{blocked:.0f}s for GitHub's rate limit ({request.method} {request.url.path})",
                retry_after=blocked,
            )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        method = request.method
        self._refuse_if_blocked(request)
        is_write = method in WRITE_METHODS
        key: CacheKey | None = None
        cached = None
        if method == "GET" and self._etags is not None:
            accept = request.headers.get("accept", "")
            key = (self._ledger.installation_id, str(request.url), accept)
            cached = self._etags.get(key)
            if cached is not None and "if-none-match" not in request.headers:
                request.headers["If-None-Match"] = cached.etag
        response = await self._send_with_race_retries(request)
        status = response.status_code
        if status == 304 and cached is not None and self._etags is not None:
            await response.aclose()
            headers = [
                (k, v) for k, v in response.headers.multi_items() if k not in DROPPED_ON_REPLAY
            ]
            headers += [(k, v) for k, v in cached.headers if k not in response.headers]
            return httpx.Response(
                cached.status_code,
                headers=headers,
                content=self._etags.body(cached),
                request=request,
                extensions=response.extensions,
            )
        if status in LIMIT_STATUSES:
            raw = await _read_raw(response)
            limit = await self._note_limit(response, raw, is_write)
            return _replay(response, raw, request, {RATE_LIMIT_EXTENSION: limit})
        if key is not None and self._etags is not None:
            etag = response.headers.get("etag")
            if status == 200 and etag:
                body, replayed = await _read_cacheable(response, request)
                if body is not None:
                    self._etags.put(key, etag, status, dict(response.headers), body)
                else:
                    self._etags.discard(key)
                return replayed
            if cached is not None:
                self._etags.discard(key)
        return response

    async def _send_with_race_retries(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            if self._pacer is not None:
                response = await self._paced_send(request, self._pacer)
            else:
                response = await self._inner.handle_async_request(request)
            self._ledger.observe(request.method, response)
            if self._pacer is not None and self._ledger.hold_until() is not None:
                # a budget under the reserve holds every replica now; the rest of what the
                # ledger learns reaches the others with this replica's next booking
                await self._pacer.store.share()
            if (
                response.status_code != 404
                or request.method != "GET"
                or attempt >= len(self._not_found_delays)
                or not self._names_event_object(request.url.path)
            ):
                return response
            await response.aclose()
            self._ledger.not_found_retries += 1
            await anyio.sleep(self._not_found_delays[attempt])
            attempt += 1

    async def _paced_send(self, request: httpx.Request, pacer: InstallationPacer) -> httpx.Response:
        """Send within the principal's allowances: a write in its turn and alone on the wire."""
        method = request.method
        if method not in WRITE_METHODS:
            note_wait(await pacer.read_turn(method))
            self._refuse_if_blocked(request)  # a pause another replica met, learnt while booking
            async with pacer.slot() as waited:
                note_wait(waited)
                return await self._inner.handle_async_request(request)
        content = self._content(method, self._api_path(request.url.path))
        async with pacer.write(method, content=content) as waited:
            if waited > 0:
                self._ledger.paced_writes += 1
                note_wait(waited)
            self._refuse_if_blocked(request)  # a pause may have begun meanwhile, or elsewhere
            async with pacer.slot() as slot_waited:
                note_wait(slot_waited)
                return await self._inner.handle_async_request(request)

    def _api_path(self, path: str) -> str:
        if self._base_path and path.startswith(self._base_path):
            return path[len(self._base_path) :]
        return path

    def _names_event_object(self, path: str) -> bool:
        path = self._api_path(path)
        return any(path == p or path.startswith(p + "/") for p in EVENT_OBJECTS.get())

    async def _note_limit(
        self, response: httpx.Response, raw: bytes, is_write: bool
    ) -> RateLimited | None:
        """Let the ledger classify and record a refusal; a secondary limit also slows writes.

        Both are shared with every replica when the pacer's store is (``PaceStore.share``).
        """
        limit = self._ledger.refused(response.status_code, response.headers, raw)
        installation = self._ledger.installation_id
        if limit is None:
            return None
        if limit.secondary:
            if self._pacer is not None:
                await self._pacer.store.share()  # the pause, before anyone sends again
                await self._pacer.slow_down()  # the rest of the hour at a lower pace
            log.warning(
                "secondary rate limit for installation %s: pausing it for %.0fs",
                installation,
                limit.retry_after,
            )
        else:
            log.warning("installation %s has used its hourly budget", installation)
        return limit

    async def aclose(self) -> None:
        """Owned by the gateway."""
