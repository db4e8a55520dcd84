"""Rate-limit discipline through the real server: holds in the queue, pauses, retries, removal.

GitHub is faked with respx; the order of the requests it received, and whether
the app still held the installation when one arrived (on the app's own clock), say
what was (not) sent while an installation had to wait. No test reads the wall clock
to judge a duration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import respx

from github_app.dispatch.registry import Registry
from github_app.processor import Context, Processor, ProcessorConfig
from github_app.processor_help import ProcessorHelp
from github_app.runtime import Runtime
from tests.conftest import API, config_url, make_settings, running_app, token_response, wait_for
from tests.deliveries import INSTALLATION_ID, app_payload, fixture, issue_event, signed

pytestmark = pytest.mark.anyio

OTHER_INSTALLATION = 4343
REPO = "Codertocat/Hello-World"
OTHER_REPO = "octo-org/other"


def labels_url(repository: str, number: int) -> str:
    return f"{API}/repos/{repository}/issues/{number}/labels"


def budget(remaining: int, reset_in: float, limit: int = 5000) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-used": str(limit - remaining),
        "x-ratelimit-reset": str(int(time.time() + reset_in)),
        "x-ratelimit-resource": "core",
    }


@dataclass
class Recorder:
    """The order in which named routes received requests (one list shared by several)."""

    order: list[str] = field(default_factory=list)

    def answer(self, name: str, response: httpx.Response) -> Any:
        def respond(request: httpx.Request) -> httpx.Response:
            self.order.append(name)
            return response

        return respond


def no_config(
    github: respx.MockRouter, repository: str, headers: Callable[[], dict[str, str]]
) -> None:
    """404 for the repository's and the org's config, with budget headers made per answer."""
    owner = repository.split("/")[0]
    for repo in (repository, f"{owner}/.github"):
        github.get(config_url(repo)).mock(
            side_effect=lambda request: httpx.Response(404, headers=headers())
        )


def crash(number: int, repository: str = REPO, installation: int = INSTALLATION_ID) -> Any:
    payload = issue_event(
        number=number,
        title="App crashes on start",
        body="Traceback below",
        labels=[],
        repository=repository,
        installation_id=installation,
    )
    return signed(payload, "issues")


async def test_installation_under_its_reserve_waits_for_reset_while_another_goes_on(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.post(f"{API}/app/installations/{OTHER_INSTALLATION}/access_tokens").mock(
        side_effect=lambda request: token_response()
    )
    # Under 5% of 5000: wait for the reset, 2 s after GitHub's answer (the reset's time
    # itself is the ledger's business, tested with injected clocks in test_ratelimit).
    no_config(github, REPO, lambda: budget(remaining=100, reset_in=2))
    no_config(github, OTHER_REPO, lambda: budget(remaining=4000, reset_in=3000))
    sent = Recorder()
    ok = httpx.Response(200, json=[])
    github.post(labels_url(REPO, 1)).mock(side_effect=sent.answer("first", ok))
    github.post(labels_url(REPO, 2)).mock(side_effect=sent.answer("held", ok))
    github.post(labels_url(OTHER_REPO, 1)).mock(side_effect=sent.answer("other", ok))
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(crash(1))).status_code == 202
        await app.settle()
        assert sent.order == ["first"]  # sent with 100 left: work already running may finish
        assert (await app.post(crash(2))).status_code == 202
        await wait_for(lambda: app.runtime.queue.stats().delayed == 1, what="the held event")
        assert (await app.post(crash(1, OTHER_REPO, OTHER_INSTALLATION))).status_code == 202
        await wait_for(lambda: "other" in sent.order, what="the other installation's label")
        assert "held" not in sent.order
        await wait_for(lambda: "held" in sent.order, timeout=6, what="the held event after reset")
        await app.settle()
        stats = app.runtime.gateway.stats()
        queue = app.runtime.queue.stats()
    assert sent.order == ["first", "other", "held"]
    assert stats.installations[INSTALLATION_ID].waits >= 1
    assert stats.installations[OTHER_INSTALLATION].waits == 0
    assert stats.installations[INSTALLATION_ID].remaining == 100
    assert queue.deferred >= 1 and queue.retried == 0  # held, not tried and failed
    assert app.runtime.runner.stats.events_failed == 0


async def test_secondary_limit_pauses_the_installation_and_requeues_without_loss(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    # Each request GitHub receives, with what the app's gateway said at that moment about
    # holding the installation (on the app's own clock; asking counts one more wait).
    sent: list[tuple[str, str | None]] = []
    runtime: list[Runtime] = []

    def note(request: httpx.Request) -> None:
        hold = runtime[0].gateway.hold_until(INSTALLATION_ID) if runtime else None
        sent.append((request.url.path, hold[1] if hold is not None else None))

    normal = budget(remaining=4000, reset_in=3000)
    for repo in (REPO, "Codertocat/.github"):
        github.get(config_url(repo)).mock(
            side_effect=lambda request: note(request) or httpx.Response(404, headers=normal)
        )
    limited = httpx.Response(
        403,
        headers={**normal, "retry-after": "1"},
        json={"message": "You have exceeded a secondary rate limit. Please wait a few minutes."},
    )

    def labels(responses: list[httpx.Response]) -> Any:
        def respond(request: httpx.Request) -> httpx.Response:
            note(request)
            return responses.pop(0) if len(responses) > 1 else responses[0]

        return respond

    first = github.post(labels_url(REPO, 1)).mock(
        side_effect=labels([limited, httpx.Response(200, json=[])])
    )
    second = github.post(labels_url(REPO, 2)).mock(
        side_effect=labels([httpx.Response(200, json=[])])
    )
    async with running_app(make_settings(private_key_pem)) as app:
        runtime.append(app.runtime)
        assert (await app.post(crash(1))).status_code == 202
        await wait_for(lambda: first.call_count == 1, what="the limited write")
        limited_at = len(sent)
        assert (await app.post(crash(2))).status_code == 202  # arrives during the pause
        await app.settle(timeout=8)
        stats = app.runtime.gateway.stats().installations[INSTALLATION_ID]
        queue = app.runtime.queue.stats()
    assert first.call_count == 2 and second.call_count == 1  # nothing lost
    after = sent[limited_at:]
    assert "/repos/Codertocat/Hello-World/issues/1/labels" in [path for path, _ in after]
    paused = [path for path, hold in after if hold == "secondary rate limit pause"]
    assert paused == []  # nothing sent while the installation was paused
    assert json.loads(first.calls.last.request.content) == {"labels": ["bug"]}
    assert stats.secondary_limit_hits == 1
    assert queue.dead_lettered_by_reason == {}
    assert queue.retried == 1
    assert app.runtime.runner.stats.events_failed == 0


@dataclass(frozen=True)
class WelcomeConfig(ProcessorConfig):
    message: str = "Thanks!"


MARKER = "<!-- auto-issue-processor:welcome -->"


async def welcome(context: Context[WelcomeConfig]) -> None:
    """Comments once per issue: looks for its own marker before writing (idempotency check)."""
    number = context.payload["issue"]["number"]
    comments = await context.github.rest.issues.async_list_comments(
        context.owner, context.repo, number
    )
    if any(MARKER in (comment.body or "") for comment in comments.parsed_data):
        return
    await context.github.rest.issues.async_create_comment(
        context.owner, context.repo, number, data={"body": f"{context.config.message}\n{MARKER}"}
    )


WELCOME = Processor("welcome", ProcessorHelp("test"), ("issues.opened",), WelcomeConfig, welcome)


def comment_json(body: str) -> dict[str, Any]:
    user = app_payload("issues.opened")["sender"]
    return {
        "id": 1,
        "node_id": "IC_1",
        "url": f"{API}/repos/{REPO}/issues/comments/1",
        "html_url": f"https://github.com/{REPO}/issues/1#issuecomment-1",
        "body": body,
        "user": user,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "issue_url": f"{API}/repos/{REPO}/issues/1",
        "author_association": "NONE",
    }


async def test_502_on_a_post_is_retried_through_the_queue_and_never_comments_twice(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    no_config(github, REPO, dict)
    created: list[dict[str, Any]] = []

    def create(request: httpx.Request) -> httpx.Response:
        # GitHub created the comment but the answer was lost: a blind re-send would double it.
        created.append(comment_json(json.loads(request.content)["body"]))
        return httpx.Response(502, json={"message": "Bad gateway"})

    comments_url = f"{API}/repos/{REPO}/issues/1/comments"
    listed = github.get(comments_url).mock(
        side_effect=lambda request: httpx.Response(200, json=created)
    )
    posted = github.post(comments_url).mock(side_effect=create)
    async with running_app(make_settings(private_key_pem), registry=Registry([WELCOME])) as app:
        assert (await app.post(signed(app_payload("issues.opened"), "issues"))).status_code == 202
        await app.settle(timeout=8)
        runner = app.runtime.runner.stats
        retried = app.runtime.queue.stats().retried
    assert posted.call_count == 1  # not re-sent by the HTTP layer, not re-posted by the retry
    assert listed.call_count == 2  # the event ran twice: the second run found the comment
    assert len(created) == 1
    assert retried == 1 and runner.ok["welcome"] == 1


async def test_installation_deleted_drops_it_and_its_queued_events_are_dead_lettered(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    no_config(github, REPO, dict)
    labels = github.post(labels_url(REPO, 1)).mock(return_value=httpx.Response(200, json=[]))
    deleted = fixture("installation.created")  # an installation event's full installation
    deleted["action"] = "deleted"
    deleted["installation"]["id"] = INSTALLATION_ID
    async with running_app(make_settings(private_key_pem)) as app:
        gateway = app.runtime.gateway
        assert (await app.post(crash(1))).status_code == 202
        await app.settle()
        assert labels.call_count == 1
        assert len(gateway.tokens) == 1
        assert INSTALLATION_ID in gateway.stats().installations
        # Deleted on GitHub: a token mint (the app's confirmation) answers 404 from now on.
        github.routes["token"].mock(side_effect=None, return_value=httpx.Response(404))
        assert (await app.post(signed(deleted, "installation"))).status_code == 202
        await app.settle()
        assert len(gateway.tokens) == 0
        assert INSTALLATION_ID not in gateway.stats().installations
        mints = github.routes["token"].call_count
        assert (await app.post(crash(3))).status_code == 202
        await app.settle()
        dead = app.runtime.queue.list_dead_letters()
    assert github.routes["token"].call_count == mints  # no token minted for a gone installation
    assert [(d.reason, d.issue_number) for d in dead] == [("installation_gone", 3)]
    assert labels.call_count == 1


async def test_at_a_zero_write_interval_a_burst_of_one_installation_is_never_deferred(
    github: respx.MockRouter, private_key_pem: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Writes still take turns (one on the wire at a time), but with nothing to wait for an
    event is not held: before, each waiting writer made the next events of the installation
    deferred for 0 s, taken again at once and deferred again, 10-20 times each."""
    no_config(github, REPO, lambda: budget(remaining=4000, reset_in=3000))
    running: list[Runtime] = []

    async def first_answer_when_writers_wait(request: httpx.Request) -> httpx.Response:
        # GitHub answers the first write once other events of the installation came to write
        # behind it (or, as before, were deferred instead).
        if labelled.call_count == 1:
            dispatcher, queue = running[0].dispatcher, running[0].queue
            await wait_for(
                lambda: dispatcher.in_flight >= 4 or queue.stats().deferred > 0,
                timeout=30,
                what="more events of the installation to be taken",
            )
        return httpx.Response(200, json=[])

    labelled = github.post(url__regex=rf"{API}/repos/{REPO}/issues/\d+/labels$").mock(
        side_effect=first_answer_when_writers_wait
    )
    events = 40
    settings = make_settings(private_key_pem, GITHUB_WRITE_INTERVAL="0", WORKERS_MIN="8")
    with caplog.at_level("INFO", logger="github_app"):
        async with running_app(settings) as app:
            running.append(app.runtime)
            for number in range(1, events + 1):
                assert (await app.post(crash(number))).status_code == 202
            await app.settle(timeout=60)  # a guard against a hang only
            queue = app.runtime.queue.stats()
            stats = app.runtime.gateway.stats().installations[INSTALLATION_ID]
    assert labelled.call_count == events
    assert (queue.deferred, stats.waits) == (0, 0)
    assert not [r for r in caplog.records if "deferred" in r.getMessage()]


async def test_a_burst_of_one_installation_at_a_positive_interval_is_deferred_about_once_each(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    """The events held while writers wait for their turn come back one interval apart, in
    line: before, every held event came back at the same instant, a few found a turn and the
    rest were held again, so a burst of N was deferred about N²/2 times."""
    no_config(github, REPO, lambda: budget(remaining=4000, reset_in=3000))
    labelled: list[int] = []

    def label(request: httpx.Request) -> httpx.Response:
        labelled.append(int(request.url.path.split("/")[-2]))
        return httpx.Response(200, json=[])

    github.post(url__regex=rf"{API}/repos/{REPO}/issues/\d+/labels$").mock(side_effect=label)
    events = 30
    settings = make_settings(private_key_pem, GITHUB_WRITE_INTERVAL="0.05", WORKERS_MIN="8")
    async with running_app(settings, paused=True) as app:
        for number in range(1, events + 1):
            assert (await app.post(crash(number))).status_code == 202
        app.runtime.dispatcher.resume()  # the whole burst is queued: it goes at once
        await app.settle(timeout=120)  # a guard against a hang only
        deferred = app.runtime.dispatcher.stats().deferred
        queue = app.runtime.queue.stats()
    assert sorted(labelled) == list(range(1, events + 1))  # every event processed once
    assert queue.dead_lettered_by_reason == {} and queue.retried == 0
    assert 0 < deferred <= 2 * events
