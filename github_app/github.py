"""One way to GitHub for the whole process: app auth, installation tokens, one connection pool.

githubkit builds a fresh ``httpx.AsyncClient`` per call unless it is used as
a context manager, and such a client closes its transport when it is done.
Every client here therefore shares one pooled transport whose ``aclose`` does
nothing; the gateway closes it for real at shutdown. githubkit's own retries
(which sleep inside a call, up to a rate-limit reset, and re-send POSTs) and
its HTTP cache (unbounded) are turned off: retries belong to the queue.

Installation tokens are minted by the gateway itself, once per installation
at a time, cached until shortly before they expire, and minted again once if
GitHub answers 401 to a cached one.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import anyio
import httpx
from cachetools import LRUCache
from githubkit import AppAuthStrategy, GitHub, UnauthAuthStrategy
from githubkit.auth.base import BaseAuthStrategy
from githubkit.exception import RequestError, RequestFailed, RequestTimeout

from github_app.config import Settings
from github_app.errors import GitHubError, InstallationGone, RetryableGitHubError, SettingsError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
USER_AGENT = "auto-issue-processor"
TOKEN_REFRESH_MARGIN = 5 * 60.0  # re-mint this long before GitHub's expiry
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_PATH = re.compile(r"/app/installations/\d+/access_tokens$")
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=20.0, pool=10.0)


class SharedTransport(httpx.AsyncBaseTransport):
    """A pooled transport that outlives the short-lived clients githubkit makes per call."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

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


@dataclass(frozen=True)
class CachedToken:
    token: str
    expires_at: float


class TokenCache:
    """Installation tokens, minted once per installation at a time and reused until near expiry."""

    def __init__(
        self,
        mint: Callable[[int], Awaitable[CachedToken]],
        *,
        clock: Clock = time.time,
        margin: float = TOKEN_REFRESH_MARGIN,
        capacity: int = 10_000,
    ) -> None:
        self._mint = mint
        self._clock = clock
        self._margin = margin
        self._tokens: LRUCache[int, CachedToken] = LRUCache(maxsize=capacity)
        self._locks: dict[int, anyio.Lock] = {}
        self.minted = 0

    def _fresh(self, installation_id: int) -> CachedToken | None:
        cached = self._tokens.get(installation_id)
        if cached is not None and cached.expires_at - self._margin > self._clock():
            return cached
        return None

    async def get(self, installation_id: int) -> str:
        cached = self._fresh(installation_id)
        if cached is not None:
            return cached.token
        lock = self._locks.setdefault(installation_id, anyio.Lock())
        async with lock:
            cached = self._fresh(installation_id)  # another task may have minted meanwhile
            if cached is None:
                cached = await self._mint(installation_id)
                self.minted += 1
                self._tokens[installation_id] = cached
        if not lock.locked():
            self._locks.pop(installation_id, None)
        return cached.token

    def invalidate(self, installation_id: int, token: str | None = None) -> None:
        """Forget the cached token (only if it is still ``token``, when given)."""
        cached = self._tokens.get(installation_id)
        if cached is not None and (token is None or cached.token == token):
            del self._tokens[installation_id]

    def __len__(self) -> int:
        return len(self._tokens)


class InstallationAuth(httpx.Auth):
    """Adds the installation's token; on a 401 re-mints once and repeats the request."""

    def __init__(self, tokens: TokenCache, installation_id: int) -> None:
        self._tokens = tokens
        self._installation_id = installation_id

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._tokens.get(self._installation_id)
        request.headers["Authorization"] = f"token {token}"
        response = yield request
        if response.status_code == 401:
            self._tokens.invalidate(self._installation_id, token)
            token = await self._tokens.get(self._installation_id)
            request.headers["Authorization"] = f"token {token}"
            yield request


@dataclass(frozen=True)
class InstallationAuthStrategy(BaseAuthStrategy):
    tokens: TokenCache
    installation_id: int

    def get_auth_flow(self, github: object) -> httpx.Auth:
        return InstallationAuth(self.tokens, self.installation_id)


class GitHubGateway:
    """Builds and keeps the app client and one client per installation, on one transport."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
        max_connections: int = 64,
    ) -> None:
        self._settings = settings
        if transport is None and settings.has_credentials:
            transport = httpx.AsyncHTTPTransport(
                limits=httpx.Limits(
                    max_connections=max_connections,
                    max_keepalive_connections=max_connections,
                    keepalive_expiry=60.0,
                ),
                retries=0,
            )
        self._pool = SharedTransport(transport) if transport is not None else None
        self.dry_run_transport: DryRunTransport | None = None
        outbound: httpx.AsyncBaseTransport | None = self._pool
        if settings.dry_run:
            self.dry_run_transport = DryRunTransport(
                self._pool if settings.has_credentials else None
            )
            outbound = self.dry_run_transport
        self._transport = outbound
        self.app: GitHub[AppAuthStrategy] | None = None
        if settings.app_id is not None and settings.private_key is not None:
            _check_private_key(settings.private_key)
            self.app = self._client(AppAuthStrategy(settings.app_id, settings.private_key))
        self.tokens = TokenCache(self._mint_token, clock=clock)
        self._installations: LRUCache[int, GitHub[BaseAuthStrategy]] = LRUCache(maxsize=1024)
        self.app_slug: str | None = None

    def _client(self, auth: BaseAuthStrategy) -> GitHub:  # type: ignore[type-arg]
        return GitHub(
            auth,
            base_url=self._settings.github_api_url + "/",
            user_agent=USER_AGENT,
            timeout=DEFAULT_TIMEOUT,
            async_transport=self._transport,
            http_cache=False,
            auto_retry=False,
        )

    def installation(self, installation_id: int | None) -> GitHub[BaseAuthStrategy]:
        """The client acting as ``installation_id`` (kept, so its pool slot and auth are reused)."""
        key = installation_id if installation_id is not None else 0
        client = self._installations.get(key)
        if client is None:
            auth: BaseAuthStrategy
            if self.app is None or installation_id is None:
                auth = UnauthAuthStrategy()
            else:
                auth = InstallationAuthStrategy(self.tokens, installation_id)
            client = self._client(auth)
            self._installations[key] = client
        return client

    async def _mint_token(self, installation_id: int) -> CachedToken:
        if self.app is None:
            raise GitHubError("no app credentials: cannot act as an installation")
        try:
            response = await self.app.rest.apps.async_create_installation_access_token(
                installation_id
            )
        except RequestFailed as exc:
            status = exc.response.status_code
            if status in (403, 404):
                raise InstallationGone(
                    f"installation {installation_id} is gone or suspended ({status})",
                    status_code=status,
                ) from None
            raise as_github_error(exc) from None
        except RequestError as exc:
            raise as_github_error(exc) from None
        data = response.parsed_data
        expires = datetime.fromisoformat(data.expires_at.replace("Z", "+00:00")).timestamp()
        log.info("minted a token for installation %s", installation_id)
        return CachedToken(data.token, expires)

    async def identify(self) -> str | None:
        """Ask GitHub who the app is (``GET /app``): checks the credentials, learns the bot login.

        A 401 means the credentials are wrong and is raised as ``SettingsError``;
        an outage is logged and the slug stays unknown.
        """
        if self.app is None:
            return None
        try:
            response = await self.app.rest.apps.async_get_authenticated()
        except RequestFailed as exc:
            if exc.response.status_code == 401:
                raise SettingsError(
                    "GitHub rejected the app credentials (401): check APP_ID and the private key"
                ) from None
            log.warning("could not identify the app: GitHub answered %s", exc.response.status_code)
            return None
        except RequestError as exc:
            log.warning("could not identify the app: %s", type(exc.__cause__ or exc).__name__)
            return None
        # Only the slug is needed; reading it from the JSON keeps start-up immune to schema drift.
        data = response.raw_response.json()
        slug = data.get("slug") if isinstance(data, dict) else None
        self.app_slug = slug if isinstance(slug, str) else None
        log.info("authenticated as app %r", self.app_slug)
        return self.app_slug

    @property
    def bot_login(self) -> str | None:
        """The login GitHub shows as the sender of the app's own actions."""
        return f"{self.app_slug}[bot]" if self.app_slug else None

    async def aclose(self) -> None:
        self._installations.clear()
        if self._pool is not None:
            await self._pool.close()


def as_github_error(exc: Exception) -> GitHubError:
    """Turn githubkit's exceptions into ours: retryable or not, with the status code."""
    if isinstance(exc, RequestFailed):
        status = exc.response.status_code
        message = f"GitHub answered {status} to {exc.response.raw_request.method} " + str(
            exc.response.raw_request.url.path
        )
        rate_limited = status == 429 or (
            status == 403
            and (
                "retry-after" in exc.response.headers
                or exc.response.headers.get("x-ratelimit-remaining") == "0"
            )
        )
        if status >= 500 or rate_limited:
            return RetryableGitHubError(message, status_code=status)
        return GitHubError(message, status_code=status)
    if isinstance(exc, RequestTimeout):
        return RetryableGitHubError("GitHub did not answer in time")
    if isinstance(exc, RequestError):
        cause = exc.__cause__ or exc
        if isinstance(cause, GitHubError):  # raised inside our auth flow (a token mint)
            return cause
        return RetryableGitHubError(f"cannot reach GitHub: {type(cause).__name__}")
    return GitHubError(str(exc))


def _check_private_key(pem: str) -> None:
    """Fail at start-up, in one line, if the key cannot sign the app's JWT."""
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SettingsError(f"private key cannot be loaded: {reason}") from None
