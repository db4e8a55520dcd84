"""processors.welcome through the real server, GitHub faked with respx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from processors.issue_api import marker
from processors.welcome import WelcomeConfig, WelcomeFacts, decide, render
from tests.conftest import APP_SLUG, make_settings, running_app
from tests.deliveries import issue_event, signed
from tests.processor_helpers import ISSUE_URL, REPO, api_calls, use_config, writes

pytestmark = pytest.mark.anyio

CONFIG = "labeler: false\nwelcome:\n  message: 'Welcome {user}, thanks!'\n"
CREATED = "2019-05-15T15:20:18Z"
CONFIG_GET = ("GET", f"/repos/{REPO}/contents/.github/auto-issue-processor.yml", None)
ISSUES_GET = ("GET", f"/repos/{REPO}/issues?creator=newbie&state=all&per_page=10", None)
COMMENTS_GET = (
    "GET",
    f"/repos/{REPO}/issues/1/comments?per_page=100&since=2019-05-15T15%3A20%3A18Z",
    None,
)


def opened(association: str = "NONE", author: str = "newbie", **kwargs: Any) -> dict[str, Any]:
    payload = issue_event(labels=[], sender=kwargs.pop("sender", author), **kwargs)
    payload["issue"]["user"]["login"] = author
    payload["issue"]["author_association"] = association
    payload["issue"]["created_at"] = CREATED
    return payload


def fake_github(
    github: respx.MockRouter,
    *,
    their_issues: list[dict[str, Any]] | None = None,
    comments: list[str] | None = None,
) -> respx.Route:
    github.get(ISSUE_URL).mock(
        return_value=httpx.Response(200, json=their_issues or [{"number": 1}])
    )
    github.get(f"{ISSUE_URL}/1/comments").mock(
        return_value=httpx.Response(200, json=[{"body": body} for body in comments or []])
    )
    return github.post(f"{ISSUE_URL}/1/comments").mock(
        return_value=httpx.Response(201, json={"id": 1})
    )


async def deliver(private_key: str, *payloads: dict[str, Any]) -> None:
    async with running_app(make_settings(private_key)) as app:
        for payload in payloads:
            assert (await app.post(signed(payload, "issues"))).status_code == 202
            await app.settle()
        assert app.runtime.runner.stats.failed["welcome"] == 0


@pytest.mark.parametrize("association", ["NONE", "FIRST_TIMER", "FIRST_TIME_CONTRIBUTOR"])
async def test_first_issue_of_a_newcomer_gets_one_marked_welcome(
    github: respx.MockRouter, private_key_pem: str, association: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github)
    await deliver(private_key_pem, opened(association))
    body = f"Welcome @newbie, thanks!\n\n{marker('welcome')}"
    assert api_calls(github) == [
        CONFIG_GET,
        ISSUES_GET,
        COMMENTS_GET,
        ("POST", f"/repos/{REPO}/issues/1/comments", {"body": body}),
    ]


async def test_pull_requests_by_the_author_do_not_count_as_earlier_issues(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    pr = {"number": 7, "pull_request": {"url": "x"}}
    post = fake_github(github, their_issues=[{"number": 1}, pr])
    await deliver(private_key_pem, opened())
    assert post.call_count == 1


@pytest.mark.parametrize("association", ["OWNER", "MEMBER", "COLLABORATOR", "CONTRIBUTOR"])
async def test_known_people_are_not_greeted_and_no_api_call_is_made(
    github: respx.MockRouter, private_key_pem: str, association: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github)
    await deliver(private_key_pem, opened(association))
    assert api_calls(github) == [CONFIG_GET]


async def test_someone_with_an_earlier_issue_is_not_greeted(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github, their_issues=[{"number": 1}, {"number": 0}])
    await deliver(private_key_pem, opened())
    assert api_calls(github) == [CONFIG_GET, ISSUES_GET]


async def test_redelivery_does_not_post_a_second_welcome(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    # After a restart the app has no memory of the first delivery: the marker in the
    # comment it posted then is what it recognises.
    use_config(github, CONFIG)
    post = fake_github(github, comments=["Nice!", f"Welcome @newbie\n\n{marker('welcome')}"])
    await deliver(private_key_pem, opened())
    assert post.call_count == 0
    assert writes(github) == []


async def test_issues_opened_by_the_app_or_another_bot_are_ignored(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github)
    own = opened(author=f"{APP_SLUG}[bot]")
    other_bot = opened(author="dependabot[bot]", sender="newbie")
    other_bot["issue"]["user"]["type"] = "Bot"
    await deliver(private_key_pem, own, other_bot)
    assert api_calls(github) == [CONFIG_GET]  # only for the other bot's issue


async def test_invalid_welcome_section_leaves_welcome_off_and_lists_the_error(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, "labeler: false\nwelcome:\n  message: ''\n  enabled: sometimes\n")
    fake_github(github)
    # An invalid file is not half-applied: defaults everywhere, so the labeler (on by default)
    # runs and welcome (opt-in) does not.
    github.post(f"{ISSUE_URL}/1/labels").mock(return_value=httpx.Response(200, json=[]))
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(signed(opened(), "issues"))).status_code == 202
        await app.settle()
        errors = app.runtime.configs.errors[REPO]
    assert any(e.startswith("welcome.message:") for e in errors)
    assert any(e.startswith("welcome.enabled:") for e in errors)
    assert [call for call in writes(github) if "/comments" in call[1]] == []


# --- the pure decision, no HTTP ---------------------------------------------------------------


def test_facts_come_from_the_payload() -> None:
    facts = WelcomeFacts.from_payload(opened("FIRST_TIMER", author="newbie"))
    assert (facts.number, facts.author, facts.author_type) == (1, "newbie", "User")
    assert (facts.association, facts.created_at) == ("FIRST_TIMER", CREATED)


@pytest.mark.parametrize(
    ("association", "author_type", "first"),
    [
        ("NONE", "User", True),
        ("FIRST_TIMER", "User", True),
        ("FIRST_TIME_CONTRIBUTOR", "User", True),
        ("CONTRIBUTOR", "User", False),
        ("MEMBER", "User", False),
        ("OWNER", "User", False),
        ("NONE", "Bot", False),
    ],
)
def test_decide_rules_out_members_and_bots_from_the_payload(
    association: str, author_type: str, first: bool
) -> None:
    facts = WelcomeFacts(1, "someone", author_type, association, CREATED)
    assert decide(facts, [{"number": 1}]) is first


def test_decide_counts_earlier_issues_but_not_pull_requests_or_this_issue() -> None:
    facts = WelcomeFacts(5, "someone", "User", "NONE", CREATED)
    assert decide(facts, []) is True
    assert decide(facts, [{"number": 5}, {"number": 3, "pull_request": {}}]) is True
    assert decide(facts, [{"number": 5}, {"number": 3}]) is False


def test_render_mentions_the_author_and_ends_with_the_hidden_marker() -> None:
    facts = WelcomeFacts(5, "someone", "User", "NONE", CREATED)
    body = render(WelcomeConfig(message="Hi {user}!"), facts)
    assert body == f"Hi @someone!\n\n{marker('welcome')}"
