"""The per-installation request path: shared pool, pacing, conditional GETs, 404 race, GHES."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import respx
import uvicorn
from githubkit.exception import GitHubException, RequestFailed
from starlette.types import Receive, Scope, Send

from github_app.control.feedback import Observation, note_work, reporting
from github_app.errors import RetryableGitHubError
from github_app.github.gateway import GitHubGateway, as_github_error, naming_objects
from tests.conftest import API, QuietServer, free_socket, make_settings, wait_for

pytestmark = pytest.mark.anyio

EXPIRES_AT = "2030-01-01T00:00:00Z"
CONFIG = "/repos/o/r/contents/.github/auto-issue-processor.yml"


def any_token(router: respx.MockRouter, api: str = API) -> respx.Route:
    return router.post(url__regex=rf"{api}/app/installations/\d+/access_tokens$").mock(
        side_effect=lambda request: httpx.Response(
            201, json={"token": "ghs_" + request.url.path.split("/")[3], "expires_at": EXPIRES_AT}
        )
    )


class CountingGitHub:
    """A tiny ASGI GitHub: mints tokens, answers GETs, and records each client connection."""

    def __init__(self) -> None:
        self.connections: set[tuple[str, int]] = set()
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.connections.add(tuple(scope["client"]))  # (host, port): one per TCP connection
        self.requests += 1
        while (await receive()).get("more_body"):
            pass
        if scope["method"] == "POST":
            status, body = 201, {"token": "ghs_local", "expires_at": EXPIRES_AT}
        else:
            status, body = 200, {"path": scope["path"]}
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


@asynccontextmanager
async def local_github(app: CountingGitHub) -> AsyncIterator[str]:
    sock = free_socket()
    server = QuietServer(
        uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, timeout_keep_alive=30
        )
    )
    with sock:
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            await wait_for(lambda: server.started, what="the local GitHub to start")
            try:
                yield f"http://127.0.0.1:{sock.getsockname()[1]}"
            finally:
                server.should_exit = True


async def test_200_requests_across_20_installations_reuse_the_pooled_connections(
    private_key_pem: str,
) -> None:
    fake = CountingGitHub()
    pool_size = 8
    async with local_github(fake) as url:
        gateway = GitHubGateway(
            make_settings(private_key_pem, GITHUB_API_URL=url), max_connections=pool_size
        )
        results: list[Any] = []

        async def read(installation: int, number: int) -> None:
            client = gateway.installation(installation)
            response = await client.arequest("GET", f"/repos/o/r{installation}/issues/{number}")
            results.append(response.raw_response.json())

        async with anyio.create_task_group() as group:
            for i in range(200):
                group.start_soon(read, 100 + i % 20, i)
        await gateway.aclose()
    assert len(results) == 200
    assert fake.requests == 220  # 200 reads + 20 token mints
    assert 1 <= len(fake.connections) <= pool_size
    assert gateway.tokens.minted == 20


class FakeTime:
    """A monotonic clock that moves only when told, and a sleep that records each wait.

    The pacer books each write's instant on the clock and sleeps until it, so the
    waits it asks for show the booked instants without any time passing. With
    ``advance`` a sleep moves the clock on by its seconds (one writer at a time);
    with ``hold`` sleepers wait until the test sets ``release``."""

    def __init__(self, now: float = 1000.0, *, advance: bool = False, hold: bool = False) -> None:
        self.now = now
        self.advance = advance
        self.waits: list[float] = []
        self.release = anyio.Event()
        if not hold:
            self.release.set()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.advance:
            self.now += seconds
        await self.release.wait()


async def test_writes_of_one_installation_are_spaced_and_two_installations_do_not_wait(
    private_key_pem: str,
) -> None:
    sent: dict[int, int] = {7: 0, 8: 0}

    def record(request: httpx.Request) -> httpx.Response:
        sent[int(request.url.path.split("/")[3].removeprefix("r"))] += 1
        return httpx.Response(200, json=[])

    interval = 0.25
    frozen = FakeTime()
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        router.post(url__regex=rf"{API}/repos/o/r\d+/issues/\d+/labels").mock(side_effect=record)
        gateway = GitHubGateway(
            make_settings(private_key_pem, GITHUB_WRITE_INTERVAL=str(interval)),
            monotonic=frozen.monotonic,
            sleep=frozen.sleep,
        )
        async with anyio.create_task_group() as group:
            for installation in (7, 8):
                for number in range(3):
                    group.start_soon(
                        gateway.installation(installation).arequest,
                        "POST",
                        f"/repos/o/r{installation}/issues/{number}/labels",
                    )
        stats = gateway.stats()
        await gateway.aclose()
    assert sent == {7: 3, 8: 3}
    # Each installation's writes are booked one interval apart: the first at once, the
    # next two 1 and 2 intervals later. Installation 8 does not queue behind 7 (its
    # writes would then be booked 3, 4 and 5 intervals on). The app's own principal
    # keeps the same spacing: the second token mint waits one interval.
    assert sorted(frozen.waits) == [interval] * 3 + [2 * interval] * 2
    assert stats.installations[7].paced_writes == 2
    assert stats.installations[8].paced_writes == 2
    assert stats.installations[8].calls == {"POST": 3}
    assert stats.app.calls == {"POST": 2}  # the two token mints, on the app's own budget
    assert stats.total.calls["POST"] == 8


async def test_second_read_of_the_same_config_is_a_304_served_from_the_cache(
    private_key_pem: str,
) -> None:
    text = "labeler:\n  rules: []\n"
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)

        def answer(request: httpx.Request) -> httpx.Response:
            if request.headers.get("if-none-match") == '"v1"':
                return httpx.Response(
                    304, headers={"etag": '"v1"', "x-ratelimit-remaining": "4999"}
                )
            return httpx.Response(
                200, text=text, headers={"etag": '"v1"', "content-type": "text/plain"}
            )

        route = router.get(f"{API}{CONFIG}").mock(side_effect=answer)
        gateway = GitHubGateway(make_settings(private_key_pem))
        client = gateway.installation(7)
        headers = {"Accept": "application/vnd.github.raw+json"}
        first = await client.arequest("GET", CONFIG, headers=headers)
        second = await client.arequest("GET", CONFIG, headers=headers)
        stats = gateway.stats().installations[7]
        await gateway.aclose()
    assert first.raw_response.text == second.raw_response.text == text
    assert second.status_code == 200
    assert "if-none-match" not in route.calls[0].request.headers
    assert route.calls[1].request.headers["if-none-match"] == '"v1"'
    assert stats.not_modified == 1
    assert stats.calls == {"GET": 2}


async def test_a_404_on_the_issue_the_event_names_is_retried_but_a_missing_config_is_not(
    private_key_pem: str,
) -> None:
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        issue = router.get(f"{API}/repos/o/r/issues/5").mock(
            side_effect=[httpx.Response(404), httpx.Response(200, json={"number": 5})]
        )
        config = router.get(f"{API}{CONFIG}").mock(return_value=httpx.Response(404))
        gateway = GitHubGateway(make_settings(private_key_pem), not_found_delays=(0.01, 0.01))
        client = gateway.installation(7)
        with naming_objects("o/r", 5):
            found = await client.arequest("GET", "/repos/o/r/issues/5")
            with pytest.raises(RequestFailed, match="404"):
                await client.arequest("GET", CONFIG)
        stats = gateway.stats().installations[7]
        await gateway.aclose()
    assert found.raw_response.json() == {"number": 5}
    assert issue.call_count == 2
    assert config.call_count == 1
    assert stats.not_found_retries == 1


async def test_a_404_race_gives_up_after_the_bounded_retries(private_key_pem: str) -> None:
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        issue = router.get(f"{API}/repos/o/r/issues/5").mock(return_value=httpx.Response(404))
        gateway = GitHubGateway(make_settings(private_key_pem), not_found_delays=(0.01, 0.01))
        with naming_objects("o/r", 5), pytest.raises(RequestFailed, match="404"):
            await gateway.installation(7).arequest("GET", "/repos/o/r/issues/5")
        await gateway.aclose()
    assert issue.call_count == 3


async def test_ghes_base_url_receives_every_call(private_key_pem: str) -> None:
    ghes = "https://ghe.example.com/api/v3"
    with respx.mock(assert_all_mocked=True) as router:
        mint = any_token(router, ghes)
        issue = router.get(f"{ghes}/repos/o/r/issues/5").mock(
            side_effect=[httpx.Response(404), httpx.Response(200, json={"number": 5})]
        )
        gateway = GitHubGateway(
            make_settings(private_key_pem, GITHUB_API_URL=ghes), not_found_delays=(0.01,)
        )
        with naming_objects("o/r", 5):
            response = await gateway.installation(7).arequest("GET", "/repos/o/r/issues/5")
        await gateway.aclose()
        urls = [call.request.url for call in router.calls]
    assert response.raw_response.json() == {"number": 5}
    assert mint.call_count == 1
    assert len(urls) == 3
    assert {url.host for url in urls} == {"ghe.example.com"}
    assert all(url.path.startswith("/api/v3/") for url in urls)
    assert issue.call_count == 2  # the 404 race is recognised under the GHES path prefix


async def test_requests_during_a_secondary_limit_pause_are_refused_without_sending(
    private_key_pem: str,
) -> None:
    now = [1000.0]
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        write = router.post(f"{API}/repos/o/r/issues/1/labels").mock(
            return_value=httpx.Response(
                429, headers={"retry-after": "30"}, json={"message": "slow down"}
            )
        )
        gateway = GitHubGateway(make_settings(private_key_pem), monotonic=lambda: now[0])
        client = gateway.installation(7)
        with pytest.raises(GitHubException) as first:
            await client.arequest("POST", "/repos/o/r/issues/1/labels")
        error = as_github_error(first.value)
        assert isinstance(error, RetryableGitHubError) and error.retry_after == 30
        with pytest.raises(GitHubException) as refused:
            await client.arequest("GET", "/repos/o/r/issues/1")
        refusal = as_github_error(refused.value)
        assert isinstance(refusal, RetryableGitHubError)
        assert refusal.retry_after == pytest.approx(30)
        assert gateway.hold_until(7) == (1030.0, "secondary rate limit pause")
        assert gateway.hold_until(8) is None  # other installations go on
        now[0] += 31
        assert gateway.hold_until(7) is None
        stats = gateway.stats().installations[7]
        await gateway.aclose()
        sent = [c.request.method for c in router.calls if "/repos/" in c.request.url.path]
    assert write.call_count == 1
    assert sent == ["POST"]
    assert stats.secondary_limit_hits == 1


async def test_a_spent_budget_is_a_rate_limit_until_the_reset_on_the_injected_clock(
    private_key_pem: str,
) -> None:
    wall = 1_700_000_000.0
    spent = {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": str(int(wall) + 90),
    }
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        router.get(f"{API}/repos/o/r/issues/1").mock(
            return_value=httpx.Response(403, headers=spent, json={"message": "API rate limit"})
        )
        router.get(f"{API}/repos/o/r/issues/2").mock(
            return_value=httpx.Response(403, json={"message": "Resource not accessible"})
        )
        gateway = GitHubGateway(make_settings(private_key_pem), clock=lambda: wall)
        with pytest.raises(GitHubException) as limited:
            await gateway.installation(7).arequest("GET", "/repos/o/r/issues/1")
        with pytest.raises(GitHubException) as forbidden:  # 7 waits for its reset now
            await gateway.installation(8).arequest("GET", "/repos/o/r/issues/2")
        stats = gateway.stats().installations[7]
        await gateway.aclose()
    error = as_github_error(limited.value)
    assert isinstance(error, RetryableGitHubError) and error.rate_limited
    assert error.retry_after == 90  # reset minus the gateway's clock, not the machine's
    assert stats.primary_limit_hits == 1 and stats.secondary_limit_hits == 0
    refusal = as_github_error(forbidden.value)  # a 403 that is no rate limit is final
    assert not isinstance(refusal, RetryableGitHubError) and refusal.status_code == 403


async def test_a_write_goes_an_interval_after_github_answered_the_previous_one(
    private_key_pem: str,
) -> None:
    clock = FakeTime(advance=True)
    arrived: list[float] = []

    def slow(request: httpx.Request) -> httpx.Response:
        arrived.append(clock.now)
        clock.now += 0.5  # GitHub takes half a second to answer
        return httpx.Response(200, json=[])

    interval = 0.25
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        router.post(f"{API}/repos/o/r/issues/1/labels").mock(side_effect=slow)
        gateway = GitHubGateway(
            make_settings(private_key_pem, GITHUB_WRITE_INTERVAL=str(interval)),
            monotonic=clock.monotonic,
            sleep=clock.sleep,
        )
        for _ in range(3):
            await gateway.installation(7).arequest("POST", "/repos/o/r/issues/1/labels")
        await gateway.aclose()
    # answered 0.5 s after each went, the next goes an interval after that answer
    assert [later - earlier for earlier, later in itertools.pairwise(arrived)] == [0.75, 0.75]
    assert clock.waits == [interval, interval]


async def test_an_installation_with_a_write_waiting_for_its_turn_holds_its_next_events(
    private_key_pem: str,
) -> None:
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        router.post(f"{API}/repos/o/r/issues/1/labels").mock(
            return_value=httpx.Response(200, json=[])
        )
        frozen = FakeTime(hold=True)
        gateway = GitHubGateway(
            make_settings(private_key_pem, GITHUB_WRITE_INTERVAL="0.25"),
            monotonic=frozen.monotonic,
            sleep=frozen.sleep,
        )
        client = gateway.installation(7)
        holds: list[tuple[float, str] | None] = []
        async with anyio.create_task_group() as group:
            for _ in range(2):
                group.start_soon(client.arequest, "POST", "/repos/o/r/issues/1/labels")
            await wait_for(lambda: gateway.stats().installations[7].calls.get("POST") == 1)
            await wait_for(lambda: frozen.waits == [0.25], what="the second write to wait its turn")
            waiting = gateway.hold_until(7)  # the second write now waits for its turn
            holds.append(gateway.hold_until(8))
            frozen.release.set()
        holds.append(gateway.hold_until(7))  # both sent: nothing waits any more
        stats = gateway.stats().installations[7]
        await gateway.aclose()
    other, after = holds
    assert waiting is not None and "waiting for their turn" in waiting[1]
    assert waiting[0] == 1000.25  # until its turn: one interval after the first write
    assert other is None and after is None
    assert stats.waits == 1


async def test_a_write_waiting_for_its_turn_reports_the_wait_to_the_events_feedback(
    private_key_pem: str,
) -> None:
    seen: list[Observation] = []
    interval = 0.25  # a binary fraction: the fake clock's sums are exact
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        router.post(f"{API}/repos/o/r/issues/1/labels").mock(return_value=httpx.Response(200))
        clock = FakeTime(advance=True)  # GitHub answers in no time; only the pacing waits
        gateway = GitHubGateway(
            make_settings(private_key_pem, GITHUB_WRITE_INTERVAL=str(interval)),
            monotonic=clock.monotonic,
            sleep=clock.sleep,
        )
        github = gateway.installation(7)
        with reporting(seen.append, installation=7, clock=clock.monotonic) as report:
            note_work()
            for _ in range(3):  # the second and third wait for their turns
                await github.arequest("POST", "/repos/o/r/issues/1/labels")
            waited = report.waited
        await gateway.aclose()
    assert clock.waits == [interval, interval]
    assert waited == 2 * interval
    assert len(seen) == 1 and seen[0].installation == 7
    assert seen[0].latency == 0.0  # the controller sees GitHub's time, not the pacing


class RecordingMeter:
    """The width controller's side of the transport: requests on the wire, and their latency."""

    def __init__(self) -> None:
        self.on_wire = 0
        self.most_on_wire = 0
        self.latencies: list[float | None] = []
        self.kinds: list[str] = []

    def request_started(self) -> None:
        self.on_wire += 1
        self.most_on_wire = max(self.most_on_wire, self.on_wire)

    def request_finished(self, latency: float | None, kind: str = "request") -> None:
        self.on_wire -= 1
        self.latencies.append(latency)
        self.kinds.append(kind)


async def test_the_meter_hears_every_request_on_the_wire_and_none_of_the_pacing_wait(
    private_key_pem: str,
) -> None:
    meter = RecordingMeter()
    interval = 0.25
    with respx.mock(assert_all_mocked=True) as router:
        mint = any_token(router)
        router.post(f"{API}/repos/o/r/issues/1/labels").mock(return_value=httpx.Response(200))
        clock = FakeTime(advance=True)  # GitHub answers in no time; only the pacing waits
        gateway = GitHubGateway(
            make_settings(private_key_pem, GITHUB_WRITE_INTERVAL=str(interval)),
            monotonic=clock.monotonic,
            sleep=clock.sleep,
            meter=meter,
        )
        github = gateway.installation(7)
        with reporting(None, installation=7, clock=clock.monotonic) as report:
            for _ in range(3):  # the second and third wait for their write turns
                await github.arequest("POST", "/repos/o/r/issues/1/labels")
        await gateway.aclose()
    assert mint.call_count == 1
    assert report.waited == 2 * interval
    # the token mint and the three writes, each once, one at a time, and GitHub's time only
    assert meter.latencies == [0.0, 0.0, 0.0, 0.0]
    assert meter.kinds == ["mint", "write", "write", "write"]  # each kind has its baseline
    assert meter.on_wire == 0 and meter.most_on_wire == 1


async def test_a_request_that_gets_no_answer_leaves_the_wire_without_a_latency(
    private_key_pem: str,
) -> None:
    meter = RecordingMeter()
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        router.get(f"{API}/repos/o/r/issues/1").mock(side_effect=httpx.ConnectError("refused"))
        gateway = GitHubGateway(make_settings(private_key_pem), meter=meter)
        with pytest.raises(GitHubException):
            await gateway.installation(7).arequest("GET", "/repos/o/r/issues/1")
        await gateway.aclose()
    assert meter.on_wire == 0
    assert len(meter.latencies) == 2 and meter.latencies[-1] is None  # mint answered, GET not


async def test_writes_a_dry_run_only_logs_never_reach_the_meter(private_key_pem: str) -> None:
    meter = RecordingMeter()
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        router.get(f"{API}/repos/o/r/issues/1").mock(return_value=httpx.Response(200, json={}))
        gateway = GitHubGateway(make_settings(private_key_pem, DRY_RUN="true"), meter=meter)
        github = gateway.installation(7)
        await github.arequest("GET", "/repos/o/r/issues/1")
        await github.arequest("POST", "/repos/o/r/issues/1/labels")
        writes = list(gateway.dry_run_transport.writes) if gateway.dry_run_transport else []
        await gateway.aclose()
    assert len(writes) == 1
    assert len(meter.latencies) == 2  # the mint and the read went to GitHub; the write did not
    assert meter.kinds == ["mint", "read"]


async def test_after_a_secondary_limit_answer_writes_go_at_half_the_pace_for_the_hour(
    private_key_pem: str,
) -> None:
    answers = iter(
        [
            httpx.Response(
                403,
                headers={"retry-after": "0"},
                json={"message": "You have exceeded a secondary rate limit."},
            ),
            *[httpx.Response(200, json=[]) for _ in range(4)],
        ]
    )
    interval = 0.25
    with respx.mock(assert_all_mocked=True) as router:
        any_token(router)
        router.post(f"{API}/repos/o/r/issues/1/labels").mock(side_effect=lambda _: next(answers))
        clock = FakeTime(advance=True)
        gateway = GitHubGateway(
            make_settings(private_key_pem, GITHUB_WRITE_INTERVAL=str(interval)),
            monotonic=clock.monotonic,
            sleep=clock.sleep,
        )
        github = gateway.installation(7)
        with pytest.raises(RequestFailed):
            await github.arequest("POST", "/repos/o/r/issues/1/labels")
        for _ in range(2):
            await github.arequest("POST", "/repos/o/r/issues/1/labels")
        clock.now += 3600.0  # the hour is over: back to GitHub's pace
        await github.arequest("POST", "/repos/o/r/issues/1/labels")
        await github.arequest("POST", "/repos/o/r/issues/1/labels")
        stats = gateway.stats().installations[7]
        await gateway.aclose()
    # The two writes after the answer each wait twice the interval (not back to the old
    # pace after the pause); an hour later the first goes at once, the next one interval on.
    assert clock.waits == [2 * interval, 2 * interval, interval]
    assert stats.secondary_limit_hits == 1
