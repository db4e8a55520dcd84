"""One way to GitHub for the whole process: app auth, installation clients, one connection pool.

The gateway owns everything GitHub-facing that outlives a request: the shared
connection pool (``transport``), the token cache (``tokens``), and per
installation a kept client, a rate-limit ledger (``ratelimit``), a pacer
(``pacing``) and a share of the conditional-GET cache (``etag_cache``). The
pacers' budgets live in this process, or with ``QUEUE_BACKEND=redis`` in Redis
(``shared_limits``) with the pauses and budgets the replicas report, so that
replicas together keep each installation's limits like one process.
githubkit's own retries (which sleep inside a call, up to a rate-limit reset,
and re-send POSTs) and its HTTP cache (unbounded) are turned off: retries
belong to the queue, and the runner asks ``hold_until`` before an event runs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import httpx
from cachetools import LRUCache
from githubkit import AppAuthStrategy, GitHub, UnauthAuthStrategy
from githubkit.auth.base import BaseAuthStrategy
from githubkit.exception import RequestError, RequestFailed, RequestTimeout
from githubkit.utils import UNSET

from github_app.config import Settings
from github_app.control.feedback import RequestMeter
from github_app.errors import GitHubError, InstallationGone, RetryableGitHubError, SettingsError
from github_app.github.app_auth import PreloadedAppAuthStrategy
from github_app.github.etag_cache import DEFAULT_MAX_BYTES, ETagCache
from github_app.github.hook_deliveries import PER_PAGE, DeliveryPage, MalformedDelivery, parse_page
from github_app.github.pace_store import LocalPaceStore, PaceStore
from github_app.github.pacing import BACKGROUND, LIVE, InstallationPacer, Sleep, serving
from github_app.github.ratelimit import GatewayStats, RateLimitLedger, rate_limit_of, total_of
from github_app.github.secondary_limits import (
    GITHUB_LIMITS,
    UNLIMITED,
    ContentRules,
    SecondaryLimits,
)
from github_app.github.shared_limits import RedisLimits, SharedLimitsStats
from github_app.github.tokens import (
    RENEW_AHEAD,
    CachedToken,
    InstallationAuthStrategy,
    TokenCache,
)
from github_app.github.transport import (
    NOT_FOUND_DELAYS,
    WRITE_METHODS,
    DryRunTransport,
    GitHubTransport,
    SharedTransport,
    naming_objects,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]
USER_AGENT = "auto-issue-processor"
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=20.0, pool=10.0)
WARM_MODELS = (
    "InstallationToken",
    "Installation",
    "BasicError",
    "ValidationError",
    "Issue",
    "IssueComment",
    "Label",
    "ContentFile",
    "Reaction",
)
RENEW_EVERY = 60.0  # seconds between looks for tokens to renew
MAX_WAITING_WRITERS = 1  # beyond this, an installation's next events wait in the queue

__all__ = [
    "WRITE_METHODS",
    "CachedToken",
    "DryRunTransport",
    "GitHubGateway",
    "SharedTransport",
    "TokenCache",
    "as_github_error",
    "naming_objects",
]


class PooledGitHub(GitHub[Any]):
    """A githubkit client that keeps one httpx client instead of building one per call.

    githubkit builds (and closes) an ``httpx.AsyncClient`` for every request
    unless it is used as a context manager, which a starlette lifespan cannot
    share with request handlers (a ContextVar). Building one costs about 80 us;
    keeping it saves that on every call. The connections live in the shared
    transport either way.
    """

    _kept: httpx.AsyncClient | None = None

    @asynccontextmanager
    async def get_async_client(self) -> AsyncGenerator[httpx.AsyncClient, None]:
        if self._kept is None:
            self._kept = await self._create_async_client()
        yield self._kept

    async def close_kept(self) -> None:
        if self._kept is not None:
            await self._kept.aclose()
            self._kept = None


@dataclass
class _Installation:
    """What the gateway keeps per installation (strong references: see ``PooledGitHub``)."""

    ledger: RateLimitLedger
    pacer: InstallationPacer
    client: PooledGitHub | None = None


class GitHubGateway:
    """Builds and keeps the app client and one client per installation, on one transport."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        max_connections: int = 64,
        max_installations: int = 4096,
        etag_max_bytes: int = DEFAULT_MAX_BYTES,
        not_found_delays: Sequence[float] = NOT_FOUND_DELAYS,
        max_waiting_writers: int = MAX_WAITING_WRITERS,
        meter: RequestMeter | None = None,
        limits: SecondaryLimits = GITHUB_LIMITS,
        shared: RedisLimits | None = None,
    ) -> None:
        """``meter`` is told of every request on the wire (the width controller); ``limits``
        are GitHub's documented secondary limits (a benchmark may scale them); ``shared``
        keeps them, the pauses and the budgets in Redis for every replica (none: in this
        process; a dry run keeps them here too, as it sends no writes)."""
        self._settings = settings
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep  # waits measured on ``monotonic`` (an installation's write turn)
        if transport is None and settings.has_credentials:
            transport = httpx.AsyncHTTPTransport(
                limits=httpx.Limits(
                    max_connections=max_connections,
                    max_keepalive_connections=max_connections,
                    keepalive_expiry=60.0,
                ),
                retries=0,
            )
        self._pool = (
            SharedTransport(transport, meter, clock=monotonic) if transport is not None else None
        )
        self.dry_run_transport: DryRunTransport | None = None
        outbound: httpx.AsyncBaseTransport | None = self._pool
        if settings.dry_run or outbound is None:
            self.dry_run_transport = DryRunTransport(
                self._pool if settings.has_credentials else None
            )
            outbound = self.dry_run_transport
        self._transport: httpx.AsyncBaseTransport = outbound
        self._base_path = httpx.URL(settings.github_api_url).path
        self._not_found_delays = tuple(not_found_delays)
        self._max_waiting_writers = max_waiting_writers
        self.etags = ETagCache(etag_max_bytes)
        keep = self.dry_run_transport is None and settings.github_secondary_limits == "github"
        self._limits = limits if keep else UNLIMITED
        self._content = ContentRules(
            filter(None, (rule.strip() for rule in settings.github_content_creating.split(",")))
        )
        self._shared = shared if self.dry_run_transport is None else None
        self._app_ledger = self._ledger(None)
        # The app's own JWT calls (token mints, the delivery log) are one more principal.
        self.app_pacer = self._pacer("app", self._app_ledger)
        self.app: GitHub[AppAuthStrategy] | None = None
        if settings.app_id is not None and settings.private_key is not None:
            pem = settings.private_key.get_secret_value()
            signing_key = _load_private_key(pem)
            app_transport = GitHubTransport(
                self._transport,
                self._app_ledger,
                pacer=self.app_pacer,
                base_path=self._base_path,
                content=self._content,
            )
            self.app = self._client(
                PreloadedAppAuthStrategy(settings.app_id, pem, signing_key=signing_key),
                app_transport,
            )
        self.tokens = TokenCache(self._mint_token, clock=clock, monotonic=monotonic)
        self._installations: LRUCache[int, _Installation] = LRUCache(maxsize=max_installations)
        self._gone: LRUCache[int, float] = LRUCache(maxsize=max_installations)
        self.app_slug: str | None = None

    def _ledger(self, installation_id: int | None) -> RateLimitLedger:
        return RateLimitLedger(installation_id, monotonic=self._monotonic, wall=self._clock)

    def _client(self, auth: BaseAuthStrategy, transport: httpx.AsyncBaseTransport) -> PooledGitHub:
        return PooledGitHub(
            auth,
            base_url=self._settings.github_api_url + "/",
            user_agent=USER_AGENT,
            timeout=DEFAULT_TIMEOUT,
            async_transport=transport,
            http_cache=False,
            auto_retry=False,
        )

    def _pacer(self, principal: str, ledger: RateLimitLedger) -> InstallationPacer:
        dry_run = self.dry_run_transport is not None
        interval = 0.0 if dry_run else self._settings.github_write_interval
        limits = dataclasses.replace(self._limits, write_interval=interval)
        store: PaceStore = (
            LocalPaceStore(limits, self._monotonic)
            if self._shared is None
            else self._shared.store(principal, limits, ledger)
        )
        return InstallationPacer(
            concurrency=self._settings.github_concurrency,
            store=store,
            clock=self._monotonic,
            sleep=self._sleep,
        )

    def _state(self, installation_id: int | None) -> _Installation:
        key = installation_id if installation_id is not None else 0
        state = self._installations.get(key)
        if state is None:
            ledger = self._ledger(installation_id)
            state = _Installation(ledger, self._pacer(str(installation_id), ledger))
            self._installations[key] = state
        return state

    def installation(self, installation_id: int | None) -> GitHub[Any]:
        """The client acting as ``installation_id`` (kept, so its pool slot and auth are reused)."""
        state = self._state(installation_id)
        if state.client is None:
            auth: BaseAuthStrategy
            if self.app is None or installation_id is None:
                auth = UnauthAuthStrategy()
            else:
                auth = InstallationAuthStrategy(self.tokens, installation_id)
            transport = GitHubTransport(
                self._transport,
                state.ledger,
                pacer=state.pacer,
                etags=self.etags,
                base_path=self._base_path,
                not_found_delays=self._not_found_delays,
                content=self._content,
            )
            state.client = self._client(auth, transport)
        return state.client

    def warm_up(self) -> None:
        """Import now what githubkit loads lazily on first use (about 50 ms on the event loop).

        Otherwise the first token mint and the first calls of each kind stall the
        loop, and every webhook acknowledgement in flight with it.
        """
        from githubkit_schemas.latest import models

        for name in WARM_MODELS:
            getattr(models, name, None)
        if self.app is not None:
            for namespace in ("apps", "issues", "repos", "pulls", "reactions"):
                getattr(self.app.rest, namespace, None)

    async def renew_tokens(self, *, every: float = RENEW_EVERY, ahead: float = RENEW_AHEAD) -> None:
        """Renew tokens in use before they expire, one at a time, until cancelled.

        The mints go through the app's pacer like any other of its writes, at the lowest
        urgency (``BACKGROUND``): an event's own mint goes first.
        """
        with serving(BACKGROUND):
            while True:
                for installation_id in self.tokens.due(ahead):
                    if self.is_gone(installation_id):
                        continue
                    try:
                        await self.tokens.renew(installation_id, ahead)
                    except GitHubError as exc:
                        log.warning("could not renew the token of %s: %s", installation_id, exc)
                await self._sleep(every)

    async def refresh(self, installation_id: int | None) -> None:
        """Take in what the other replicas know of this installation (a pause one of them met,
        the budget they saw) before ``hold_until`` is asked; nothing to do in one process."""
        if installation_id is not None and self._shared is not None:
            await self._state(installation_id).pacer.store.share()

    def hold_until(
        self, installation_id: int | None, urgency: int = LIVE
    ) -> tuple[float, str] | None:
        """Must new work of this installation wait? ``(until, reason)`` in monotonic time.

        Yes while GitHub paused it (secondary limit), while its budget is under
        the reserve (until the reset), and while it already has writers queued
        for a turn that is some time off (so one installation cannot fill every worker slot;
        ``InstallationPacer.turn_wait``: at a zero interval, none is). Only writers at
        least as urgent count (``urgency``, the event's priority): a live event is not held
        behind a backfill's writer, whose turn it takes. Work held for a turn lines up
        (``InstallationPacer.hold``): each asking is a place in that line, given out once.
        """
        if installation_id is None:
            return None
        state = self._installations.get(installation_id)
        if state is None:
            return None
        hold = state.ledger.hold_until()
        if hold is None:
            until = state.pacer.hold(urgency, self._max_waiting_writers)
            if until is not None:
                ahead = state.pacer.writers_ahead_of(urgency)
                hold = (until, f"{ahead} writes waiting for their turn")
        if hold is not None:
            state.ledger.waits += 1
        return hold

    def is_gone(self, installation_id: int | None) -> bool:
        return installation_id is not None and installation_id in self._gone

    def forget(self, installation_id: int, *, gone: bool = True) -> None:
        """Drop an installation: its token, client, ledger and cached answers.

        ``gone`` (deleted or suspended) also makes its queued events fail fast
        with ``InstallationGone`` instead of minting a token first.
        """
        self.tokens.invalidate(installation_id)
        self._installations.pop(installation_id, None)
        self.etags.forget_installation(installation_id)
        if gone:
            self._gone[installation_id] = self._clock()
        else:
            self._gone.pop(installation_id, None)

    async def confirm_gone(self, installation_id: int) -> bool:
        """Ask GitHub whether an installation is gone: a fresh token mint answers 404 or 403.

        True (and the installation dropped as gone) only on that answer; a mint
        that succeeds means it is alive. Without app credentials nothing can be
        asked, so nothing is believed. An outage is raised (retryable).
        """
        if self.app is None:
            return False
        self.tokens.invalidate(installation_id)
        try:
            await self.tokens.get(installation_id)
        except InstallationGone:
            return True  # the mint has already dropped it as gone
        return False

    def stats(self) -> GatewayStats:
        """A frozen snapshot per installation and in total, for the status endpoint and metrics."""
        installations = {
            key: state.ledger.stats() for key, state in list(self._installations.items()) if key
        }
        app = self._app_ledger.stats()
        return GatewayStats(
            total=total_of([*installations.values(), app]),
            installations=installations,
            app=app,
        )

    def shared_stats(self) -> SharedLimitsStats | None:
        """Where GitHub's limits are kept now (``None``: in this process, not shared)."""
        return self._shared.stats() if self._shared is not None else None

    async def _mint_token(self, installation_id: int) -> CachedToken:
        if self.app is None:
            raise GitHubError("no app credentials: cannot act as an installation")
        try:
            response = await self.app.rest.apps.async_create_installation_access_token(
                installation_id
            )
        except RequestFailed as exc:
            status = exc.response.status_code
            if status in (403, 404) and rate_limit_of(exc.response.raw_response) is None:
                self.forget(installation_id)
                raise InstallationGone(
                    f"installation {installation_id} is gone or suspended ({status})",
                    status_code=status,
                ) from None
            raise as_github_error(exc) from None
        except RequestError as exc:
            raise as_github_error(exc) from None
        self._state(installation_id).ledger.tokens_minted += 1
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

    async def delivery_log_page(self, cursor: str | None = None) -> DeliveryPage:
        """One page of the app's delivery log (``GET /app/hook/deliveries``), newest first.

        GitHub's errors come as ``GitHubError`` (retryable for an outage or a rate limit,
        with its wait); an answer that is not a list of entries as ``MalformedDelivery``.
        """
        hooks = self._require_hooks()
        try:
            response = await hooks.rest.apps.async_list_webhook_deliveries(
                per_page=PER_PAGE, cursor=UNSET if cursor is None else cursor
            )
        except RequestError as exc:
            raise as_github_error(exc) from None
        raw = response.raw_response
        try:
            body = raw.json()
        except ValueError:
            raise MalformedDelivery("the delivery log answer is not JSON") from None
        return parse_page(body, raw.headers.get("link"))

    async def redeliver(self, delivery_id: int) -> None:
        """Ask GitHub to deliver attempt ``delivery_id``'s event again (it answers 202).

        A write of the app's own principal: paced with its token mints (one at a time,
        ``GITHUB_WRITE_INTERVAL`` apart, within its secondary-limit budget); GitHub's errors
        come as ``GitHubError``.
        """
        hooks = self._require_hooks()
        try:
            await hooks.rest.apps.async_redeliver_webhook_delivery(delivery_id)
        except RequestError as exc:
            raise as_github_error(exc) from None

    def _require_hooks(self) -> GitHub[AppAuthStrategy]:
        if self.app is None:
            raise GitHubError("no app credentials: the delivery log cannot be read")
        return self.app

    @property
    def bot_login(self) -> str | None:
        """The login GitHub shows as the sender of the app's own actions."""
        return f"{self.app_slug}[bot]" if self.app_slug else None

    async def aclose(self) -> None:
        clients = [state.client for state in self._installations.values() if state.client]
        self._installations.clear()
        for client in clients:
            await client.close_kept()
        if isinstance(self.app, PooledGitHub):
            await self.app.close_kept()
        if self._pool is not None:
            await self._pool.close()


def as_github_error(exc: Exception) -> GitHubError:
    """Turn githubkit's exceptions into ours: retryable or not, with the status and the wait.

    Errors our own layers raise inside a request (a token mint that failed, a
    request refused during a pause) reach the caller wrapped in githubkit's
    ``RequestError``; they are unwrapped here.
    """
    if isinstance(exc, GitHubError):
        return exc
    if isinstance(exc, RequestFailed):
        response = exc.response
        status = response.status_code
        message = f"GitHub answered {status} to {response.raw_request.method} " + str(
            response.raw_request.url.path
        )
        limit = rate_limit_of(response.raw_response)  # the transport's verdict on this answer
        if limit is not None:
            return RetryableGitHubError(message, status_code=status, retry_after=limit.retry_after)
        if status >= 500:
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


def _load_private_key(pem: str) -> Any:
    """The parsed key; fails at start-up, in one line, if it cannot sign the app's JWT."""
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        return load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SettingsError(f"private key cannot be loaded: {reason}") from None
