"""Installation tokens: minted once per installation at a time, reused until near expiry.

githubkit alone mints one token per concurrent first request and does not
refresh a token that starts answering 401 before its expiry. Here twenty
concurrent first requests share one mint (a lock per installation), a token
is minted again a few minutes before GitHub's ``expires_at``, and a 401 on a
cached token evicts it and re-mints once.

Tokens in use are renewed ahead of that in the background (``due``,
``renew``; the gateway's ``renew_tokens`` loop), one at a time through the
app's paced principal, so an installation's events rarely wait for a mint and
a burst never needs hundreds of mints at once.

An event that waits for the mint another event of its installation started
notes that wait (``note_wait``) like its pacing waits: the app keeping to its
own principal's pace, not GitHub answering slowly (the minting event notes its
own wait for the app principal's turn in the transport).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

import anyio
import httpx
from cachetools import LRUCache
from githubkit.auth.base import BaseAuthStrategy

from github_app.control.feedback import note_wait

Clock = Callable[[], float]
TOKEN_REFRESH_MARGIN = 5 * 60.0  # re-mint this long before GitHub's expiry
RENEW_AHEAD = 20 * 60.0  # the background renews tokens this long before their expiry


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
        monotonic: Clock = time.monotonic,
        margin: float = TOKEN_REFRESH_MARGIN,
        capacity: int = 10_000,
    ) -> None:
        """``clock`` is wall time (tokens expire at a wall-clock instant); ``monotonic``
        measures the waits for another event's mint."""
        self._mint = mint
        self._clock = clock
        self._monotonic = monotonic
        self._margin = margin
        self._tokens: LRUCache[int, CachedToken] = LRUCache(maxsize=capacity)
        self._locks: dict[int, anyio.Lock] = {}
        self.minted = 0
        self.renewed = 0

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
        asked = self._monotonic()
        async with lock:
            note_wait(self._monotonic() - asked)  # for another event's mint, if one was on
            cached = self._fresh(installation_id)  # another task may have minted meanwhile
            if cached is None:
                cached = await self._mint(installation_id)
                self.minted += 1
                self._tokens[installation_id] = cached
        if not lock.locked():
            self._locks.pop(installation_id, None)
        return cached.token

    def due(self, ahead: float = RENEW_AHEAD) -> list[int]:
        """Installations whose token expires within ``ahead`` seconds, soonest first."""
        limit = self._clock() + ahead
        found = [(t.expires_at, i) for i, t in list(self._tokens.items()) if t.expires_at < limit]
        return [installation for _, installation in sorted(found)]

    async def renew(self, installation_id: int, ahead: float = RENEW_AHEAD) -> bool:
        """Mint a new token if the cached one expires within ``ahead`` s; the old one serves
        meanwhile (``get`` does not wait while it is fresh). ``False``: nothing to renew."""
        lock = self._locks.setdefault(installation_id, anyio.Lock())
        async with lock:
            cached = self._tokens.get(installation_id)
            if cached is None or cached.expires_at - ahead > self._clock():
                return False  # forgotten, or renewed meanwhile
            renewed = await self._mint(installation_id)
            self.minted += 1
            self.renewed += 1
            self._tokens[installation_id] = renewed
        if not lock.locked():
            self._locks.pop(installation_id, None)
        return True

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
