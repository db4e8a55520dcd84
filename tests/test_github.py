"""The GitHub gateway: installation tokens, their cache and refresh, and error mapping."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import anyio
import httpx
import pytest
import respx
from starlette.types import Receive, Scope, Send

from github_app.control.feedback import Observation, note_work, reporting
from github_app.errors import InstallationGone, RetryableGitHubError, SettingsError
from github_app.github.gateway import GitHubGateway
from tests.conftest import API, app_response, make_settings

pytestmark = pytest.mark.anyio

EXPIRES_AT = "2030-01-01T00:00:00Z"
EXPIRY = datetime(2030, 1, 1, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def minting(router: respx.MockRouter, installation: int = 7) -> respx.Route:
    counter = iter(range(1, 1000))
    return router.post(f"{API}/app/installations/{installation}/access_tokens").mock(
        side_effect=lambda request: httpx.Response(
            201, json={"token": f"ghs_{next(counter)}", "expires_at": EXPIRES_AT}
        )
    )


async def test_fifty_concurrent_first_requests_mint_exactly_one_token(private_key_pem: str) -> None:
    with respx.mock(assert_all_mocked=True) as router:
        mint = minting(router)
        issue = router.get(f"{API}/repos/o/r/issues/1").mock(
            return_value=httpx.Response(200, json={})
        )
        gateway = GitHubGateway(make_settings(private_key_pem))
        client = gateway.installation(7)
        async with anyio.create_task_group() as group:
            for _ in range(50):
                group.start_soon(client.arequest, "GET", "/repos/o/r/issues/1")
        await gateway.aclose()
    assert mint.call_count == 1
    assert issue.call_count == 50
    assert {c.request.headers["authorization"] for c in issue.calls} == {"token ghs_1"}


class SlowMintGitHub:
    """An ASGI GitHub whose token mint answers only when the test says so."""

    def __init__(self) -> None:
        self.minting = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body: dict[str, str] = {}
        status = 200
        if scope["path"].endswith("/access_tokens"):
            self.minting.set()
            await self.release.wait()
            status, body = 201, {"token": "ghs_1", "expires_at": EXPIRES_AT}
        start = {"type": "http.response.start", "status": status, "headers": []}
        await send(start | {"headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def test_an_event_waiting_for_another_events_token_mint_notes_it_as_the_apps_own_wait(
    private_key_pem: str,
) -> None:
    clock = Clock(0.0)
    github = SlowMintGitHub()
    gateway = GitHubGateway(
        make_settings(private_key_pem), transport=httpx.ASGITransport(app=github), monotonic=clock
    )
    seen: list[Observation] = []

    async def event() -> None:
        with reporting(seen.append, installation=7, clock=clock):
            note_work()
            await gateway.installation(7).arequest("GET", "/repos/o/r/issues/1")

    async with anyio.create_task_group() as group:
        group.start_soon(event)
        await github.minting.wait()
        group.start_soon(event)  # the same installation: it waits for that mint
        await anyio.wait_all_tasks_blocked()
        clock.now += 2.0  # the mint takes two seconds
        github.release.set()
    await gateway.aclose()
    assert gateway.tokens.minted == 1
    # the minting event spent them on GitHub's answer; the other waited for the app's mint
    assert sorted(observation.latency for observation in seen) == [0.0, 2.0]


async def test_token_is_reused_until_shortly_before_expiry_then_minted_again(
    private_key_pem: str,
) -> None:
    clock = Clock(EXPIRY - 3600)
    with respx.mock() as router:
        mint = minting(router)
        gateway = GitHubGateway(make_settings(private_key_pem), clock=clock)
        assert await gateway.tokens.get(7) == "ghs_1"
        clock.now = EXPIRY - 6 * 60  # still more than the 5-minute margin
        assert await gateway.tokens.get(7) == "ghs_1"
        clock.now = EXPIRY - 4 * 60  # inside the margin: refresh before GitHub expires it
        assert await gateway.tokens.get(7) == "ghs_2"
        await gateway.aclose()
    assert mint.call_count == 2


async def test_a_401_on_a_cached_token_mints_a_new_one_once_and_repeats_the_request(
    private_key_pem: str,
) -> None:
    with respx.mock() as router:
        mint = minting(router)
        issue = router.get(f"{API}/repos/o/r/issues/1").mock(
            side_effect=[
                httpx.Response(401, json={"message": "Bad credentials"}),
                httpx.Response(200, json={"ok": True}),
            ]
        )
        gateway = GitHubGateway(make_settings(private_key_pem))
        response = await gateway.installation(7).arequest("GET", "/repos/o/r/issues/1")
        await gateway.aclose()
    assert response.raw_response.json() == {"ok": True}
    assert mint.call_count == 2
    assert [c.request.headers["authorization"] for c in issue.calls] == [
        "token ghs_1",
        "token ghs_2",
    ]


async def test_mint_answered_404_means_the_installation_is_gone(private_key_pem: str) -> None:
    with respx.mock() as router:
        router.post(f"{API}/app/installations/9/access_tokens").mock(
            return_value=httpx.Response(404, json={"message": "Not Found"})
        )
        gateway = GitHubGateway(make_settings(private_key_pem))
        with pytest.raises(InstallationGone):
            await gateway.tokens.get(9)
        await gateway.aclose()


async def test_mint_during_an_outage_is_a_retryable_error(private_key_pem: str) -> None:
    with respx.mock() as router:
        router.post(f"{API}/app/installations/9/access_tokens").mock(
            side_effect=httpx.ConnectError("connection refused")
        )
        router.post(f"{API}/app/installations/10/access_tokens").mock(
            return_value=httpx.Response(503, json={"message": "unavailable"})
        )
        gateway = GitHubGateway(make_settings(private_key_pem))
        with pytest.raises(RetryableGitHubError, match="cannot reach GitHub"):
            await gateway.tokens.get(9)
        with pytest.raises(RetryableGitHubError, match="503"):
            await gateway.tokens.get(10)
        await gateway.aclose()


async def test_identify_learns_the_bot_login_and_rejected_credentials_are_a_settings_error(
    private_key_pem: str,
) -> None:
    with respx.mock() as router:
        route = router.get(f"{API}/app").mock(return_value=app_response())
        gateway = GitHubGateway(make_settings(private_key_pem))
        await gateway.identify()
        assert gateway.bot_login == "auto-issue-processor-test[bot]"
        route.mock(
            return_value=httpx.Response(
                401, json={"message": "A JSON web token could not be decoded"}
            )
        )
        with pytest.raises(SettingsError, match="401"):
            await gateway.identify()
        await gateway.aclose()


def test_unloadable_private_key_is_a_one_line_settings_error() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nnot really a key\n-----END RSA PRIVATE KEY-----\n"
    with pytest.raises(SettingsError) as raised:
        GitHubGateway(make_settings(pem))
    assert "private key cannot be loaded" in str(raised.value)
    assert "\n" not in str(raised.value)


async def test_tokens_in_use_are_renewed_in_the_background_before_they_expire(
    private_key_pem: str,
) -> None:
    clock = Clock(EXPIRY - 3600)
    naps: list[float] = []
    renewed = anyio.Event()

    async def sleep(seconds: float) -> None:
        if seconds < 1:  # the app principal's spacing between two mints
            await anyio.sleep(seconds)
            return
        naps.append(seconds)  # the renewal loop's pause: one look, then the test stops it
        renewed.set()
        await anyio.sleep_forever()

    with respx.mock() as router:
        mints = {n: minting(router, n) for n in (7, 8)}
        gateway = GitHubGateway(make_settings(private_key_pem), clock=clock, sleep=sleep)
        assert await gateway.tokens.get(7) == "ghs_1"
        assert await gateway.tokens.get(8) == "ghs_1"
        assert gateway.tokens.due() == []  # an hour left: nothing to renew yet
        clock.now = EXPIRY - 15 * 60  # within the 20 minutes ahead, outside the 5-minute margin
        assert gateway.tokens.due() == [7, 8]
        async with anyio.create_task_group() as group:
            group.start_soon(gateway.renew_tokens)
            await renewed.wait()
            group.cancel_scope.cancel()
        assert await gateway.tokens.get(7) == "ghs_2"  # the renewed one, no mint on the way
        assert await gateway.tokens.get(8) == "ghs_2"
        stats = gateway.stats()
        await gateway.aclose()
    assert [m.call_count for m in mints.values()] == [2, 2]
    assert gateway.tokens.renewed == 2 and naps == [60.0]
    assert stats.app.calls == {"POST": 4}  # the mints, on the app's own paced principal


async def test_a_renewal_that_finds_a_fresh_token_mints_nothing(private_key_pem: str) -> None:
    clock = Clock(EXPIRY - 3600)
    with respx.mock() as router:
        mint = minting(router)
        gateway = GitHubGateway(make_settings(private_key_pem), clock=clock)
        await gateway.tokens.get(7)
        assert await gateway.tokens.renew(7) is False
        assert await gateway.tokens.renew(99) is False  # never minted: nothing to renew
        await gateway.aclose()
    assert mint.call_count == 1
