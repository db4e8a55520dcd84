"""processors.commands through the real server (GitHub faked with respx), and its parser."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from processors.commands import (
    CommandsConfig,
    CommandsFacts,
    IssueState,
    decide,
    has_triage_access,
    parse,
    pending,
    plan,
)
from processors.issue_api import code_span, marker
from tests.conftest import APP_SLUG, make_settings, running_app
from tests.deliveries import signed
from tests.processor_helpers import ISSUE_URL, REPO, api_calls, comment_event, use_config, writes

pytestmark = pytest.mark.anyio

CONFIG = "commands:\n"
CONFIG_GET = ("GET", f"/repos/{REPO}/contents/.github/auto-issue-processor.yml", None)
ISSUE = f"/repos/{REPO}/issues/1"
READ_ONLY = {
    "permission": "read",
    "role_name": "read",
    "user": {"login": "reader", "permissions": {"pull": True, "triage": False, "push": False}},
}
TRIAGER = {"permission": "read", "role_name": "triage", "user": {"login": "triager"}}


def fake_github(github: respx.MockRouter, permission: dict[str, Any] | None = None) -> None:
    github.post(f"{ISSUE_URL}/1/labels").mock(return_value=httpx.Response(200, json=[]))
    github.delete(url__regex=rf"{ISSUE_URL}/1/labels/.+").mock(
        return_value=httpx.Response(200, json=[])
    )
    github.post(f"{ISSUE_URL}/1/assignees").mock(return_value=httpx.Response(201, json={}))
    github.delete(f"{ISSUE_URL}/1/assignees").mock(return_value=httpx.Response(200, json={}))
    github.patch(f"{ISSUE_URL}/1").mock(return_value=httpx.Response(200, json={}))
    github.get(f"{ISSUE_URL}/1/comments").mock(return_value=httpx.Response(200, json=[]))
    github.post(f"{ISSUE_URL}/1/comments").mock(return_value=httpx.Response(201, json={}))
    github.get(url__regex=rf"https://api.github.com/repos/{REPO}/collaborators/.+/permission").mock(
        return_value=httpx.Response(200, json=permission or READ_ONLY)
    )


async def deliver(private_key: str, *payloads: dict[str, Any]) -> None:
    async with running_app(make_settings(private_key)) as app:
        for payload in payloads:
            assert (await app.post(signed(payload, "issue_comment"))).status_code == 202
            await app.settle()
        assert app.runtime.runner.stats.failed["commands"] == 0


@pytest.mark.parametrize(
    ("body", "issue", "expected"),
    [
        (
            "/label bug, help wanted",
            {},
            [("POST", f"{ISSUE}/labels", {"labels": ["bug", "help wanted"]})],
        ),
        ("/unlabel bug", {"labels": ["bug", "x"]}, [("DELETE", f"{ISSUE}/labels/bug", None)]),
        (
            "/unlabel good first issue",
            {"labels": ["good first issue"]},
            [("DELETE", f"{ISSUE}/labels/good%20first%20issue", None)],
        ),
        (
            "/assign @octocat",
            {},
            [("POST", f"{ISSUE}/assignees", {"assignees": ["octocat"]})],
        ),
        (
            "/unassign @octocat",
            {"assignees": ["octocat"]},
            [("DELETE", f"{ISSUE}/assignees", {"assignees": ["octocat"]})],
        ),
        ("/close", {}, [("PATCH", ISSUE, {"state": "closed"})]),
        ("/reopen", {"state": "closed"}, [("PATCH", ISSUE, {"state": "open"})]),
        (
            "/priority high",
            {"labels": ["bug", "priority/low"]},
            [
                ("POST", f"{ISSUE}/labels", {"labels": ["priority/high"]}),
                ("DELETE", f"{ISSUE}/labels/priority%2Flow", None),
            ],
        ),
    ],
    ids=["label", "unlabel", "unlabel-spaces", "assign", "unassign", "close", "reopen", "priority"],
)
async def test_each_command_makes_its_api_calls(
    github: respx.MockRouter,
    private_key_pem: str,
    body: str,
    issue: dict[str, Any],
    expected: list[tuple[str, str, Any]],
) -> None:
    use_config(github, CONFIG)
    fake_github(github)
    await deliver(private_key_pem, comment_event(body, **issue))
    # The repository's owner commented: no permission lookup is needed.
    assert api_calls(github) == [CONFIG_GET, *expected]


async def test_several_commands_in_one_comment_are_applied_together(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github, TRIAGER)
    body = "Thanks!\n/label bug\n/assign me\n/priority critical\n/close\n/label needs-info, bug\n"
    event = comment_event(body, commenter="triager", association="MEMBER", labels=["priority/low"])
    await deliver(private_key_pem, event)
    assert api_calls(github) == [
        CONFIG_GET,
        ("GET", f"/repos/{REPO}/collaborators/triager/permission", None),
        ("POST", f"{ISSUE}/labels", {"labels": ["bug", "priority/critical", "needs-info"]}),
        ("DELETE", f"{ISSUE}/labels/priority%2Flow", None),
        ("POST", f"{ISSUE}/assignees", {"assignees": ["triager"]}),
        ("PATCH", ISSUE, {"state": "closed"}),
    ]


async def test_read_only_user_is_refused_with_one_reply_and_nothing_changes(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github, READ_ONLY)
    event = comment_event("/label bug\n/close", commenter="reader", association="CONTRIBUTOR")
    await deliver(private_key_pem, event)
    calls = api_calls(github)
    assert calls[:3] == [
        CONFIG_GET,
        ("GET", f"/repos/{REPO}/collaborators/reader/permission", None),
        ("GET", f"{ISSUE}/comments?per_page=100&since=2019-05-15T15%3A20%3A21Z", None),
    ]
    assert len(writes(github)) == 1
    method, path, reply = writes(github)[0]
    assert (method, path) == ("POST", f"{ISSUE}/comments")
    assert reply["body"].startswith("@reader, not run:")
    assert reply["body"].count("needs triage access") == 2
    assert "<!-- auto-issue-processor:commands:492700400:" in reply["body"]


async def test_triage_role_may_run_commands_and_the_answer_is_cached(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github, TRIAGER)
    first = comment_event("/label bug", commenter="triager", association="MEMBER", comment_id=1)
    second = comment_event("/close", commenter="triager", association="MEMBER", comment_id=2)
    await deliver(private_key_pem, first, second)
    lookups = [c for c in api_calls(github) if c[1].endswith("/permission")]
    assert len(lookups) == 1
    assert writes(github) == [
        ("POST", f"{ISSUE}/labels", {"labels": ["bug"]}),
        ("PATCH", ISSUE, {"state": "closed"}),
    ]


async def test_assign_me_on_ones_own_issue_needs_no_permission(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github, READ_ONLY)
    event = comment_event(
        "/assign me", commenter="reader", association="NONE", issue_author="reader"
    )
    await deliver(private_key_pem, event)
    assert api_calls(github) == [
        CONFIG_GET,
        ("POST", f"{ISSUE}/assignees", {"assignees": ["reader"]}),
    ]


@pytest.mark.parametrize(
    "body",
    [
        "Try this:\n```\n/close\n/label bug\n```\n",
        "~~~sh\n/close\n~~~",
        "> /close\n> /label bug\nI agree with the quote above.",
        "Indented code:\n\n    /close\n",
        "<!--\n/close\n-->",
        "Look in /usr/bin, or /closet, or use `/close`.",
    ],
    ids=["fenced", "tilde-fence", "quote", "indented", "html-comment", "not-commands"],
)
async def test_commands_in_code_blocks_quotes_or_text_are_ignored(
    github: respx.MockRouter, private_key_pem: str, body: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github)
    await deliver(private_key_pem, comment_event(body))
    assert api_calls(github) == [CONFIG_GET]


async def test_malformed_command_gets_a_reply_and_the_valid_ones_still_run(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github)
    await deliver(private_key_pem, comment_event("/priority urgent\n/label\n/close"))
    assert writes(github)[0] == ("PATCH", ISSUE, {"state": "closed"})
    reply = writes(github)[1][2]["body"]
    assert "/priority takes one of critical, high, normal, low" in reply
    assert "/label needs at least one label" in reply
    assert len(writes(github)) == 2


async def test_edited_comment_runs_only_the_commands_it_did_not_have(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github)
    edited = comment_event("/label bug\n/close", action="edited", old_body="/label bug\n")
    unchanged = comment_event("/label bug  ", action="edited", old_body="/label bug", comment_id=9)
    await deliver(private_key_pem, edited, unchanged)
    assert writes(github) == [("PATCH", ISSUE, {"state": "closed"})]


async def test_the_same_comment_delivered_twice_is_run_once(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github)
    payload = comment_event("/label bug")
    await deliver(private_key_pem, payload, payload)  # two deliveries (ids) of one comment
    assert writes(github) == [("POST", f"{ISSUE}/labels", {"labels": ["bug"]})]


async def test_refusal_is_not_replied_twice_after_a_restart(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github, READ_ONLY)
    payload = comment_event("/close", commenter="reader", association="NONE")
    await deliver(private_key_pem, payload)
    reply = writes(github)[0][2]["body"]
    assert marker("commands:492700400:")[:-4] in reply
    github.get(f"{ISSUE_URL}/1/comments").mock(
        return_value=httpx.Response(200, json=[{"body": reply}])
    )
    await deliver(private_key_pem, payload)  # a new app: no memory but the marker
    assert len(writes(github)) == 1


async def test_comments_by_the_app_or_other_bots_are_ignored(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github)
    own = comment_event("/close", commenter=f"{APP_SLUG}[bot]", commenter_type="Bot")
    other = comment_event("/close", commenter="ci-bot[bot]", commenter_type="Bot")
    marked = comment_event(f"/close\n{marker('commands:1:abc')}", commenter="someone-else")
    await deliver(private_key_pem, own, other, marked)
    assert writes(github) == []


async def test_invalid_commands_section_leaves_commands_off_and_lists_the_error(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, "commands:\n  priority_prefix: ''\n")
    fake_github(github)
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(signed(comment_event("/close"), "issue_comment"))).status_code == 202
        await app.settle()
        errors = app.runtime.configs.errors[REPO]
    assert any(e.startswith("commands.priority_prefix:") for e in errors)
    assert writes(github) == []


# --- the pure core --------------------------------------------------------------------------


def test_parse_reads_arguments_and_reasons() -> None:
    commands, problems = parse("/LABEL 'bug' , ,docs\n/assign @a, b me\n/close now\n/assign @-x")
    assert [(c.name, c.args) for c in commands] == [
        ("label", ("bug", "docs")),
        ("assign", ("a", "b", "me")),
    ]
    assert [p.reason for p in problems] == ["/close takes no arguments", "not a GitHub login: `-x`"]


def test_plan_applies_commands_in_order_and_keeps_the_net_effect() -> None:
    issue = IssueState(1, "a", ("Bug",), ("x",), "open")
    commands, _ = parse("/label bug, new\n/unlabel new\n/close\n/reopen\n/unassign x\n/assign x")
    result = plan(commands, issue, "me", CommandsConfig())
    assert result.is_empty()


def test_triage_access_reads_role_name_permission_and_flags() -> None:
    assert has_triage_access({"permission": "read", "role_name": "triage"})
    assert has_triage_access({"permission": "write", "role_name": "custom-role"})
    assert has_triage_access({"role_name": "custom", "user": {"permissions": {"triage": True}}})
    assert not has_triage_access(READ_ONLY)
    assert not has_triage_access({"permission": "none", "role_name": "none"})


# --- the pure decision, no HTTP ---------------------------------------------------------------


def facts_of(body: str, **kwargs: Any) -> CommandsFacts:
    return CommandsFacts.from_payload(comment_event(body, **kwargs), REPO)


def test_pending_of_an_edit_is_only_what_the_edit_added() -> None:
    facts = facts_of(
        "/label bug\n/close\n/priority soon\n/label", old_body="/label bug\n/priority soon"
    )
    commands, problems = pending(facts)
    assert [c.line for c in commands] == ["/close"]
    assert [p.line for p in problems] == ["/label"]


def test_decide_without_triage_access_refuses_all_but_assigning_oneself_on_ones_own_issue() -> None:
    facts = facts_of(
        "/assign me\n/label bug", commenter="newbie", issue_author="newbie", association="NONE"
    )
    commands, problems = pending(facts)
    result, problems = decide(CommandsConfig(), facts, commands, problems, allowed=False)
    assert result.assign == ["newbie"]
    assert result.add_labels == []
    assert [(p.line, p.reason) for p in problems] == [
        ("/label bug", "needs triage access to this repository")
    ]


def test_decide_with_triage_access_plans_the_net_effect() -> None:
    facts = facts_of("/label bug\n/unlabel bug\n/priority high\n/close", labels=["priority/low"])
    commands, problems = pending(facts)
    result, problems = decide(CommandsConfig(), facts, commands, problems, allowed=True)
    assert problems == []
    assert (result.add_labels, result.remove_labels) == (["priority/high"], ["priority/low"])
    assert result.state == "closed"


async def test_a_refused_commands_text_is_echoed_in_a_code_span_it_cannot_close(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github, READ_ONLY)
    hostile = "/close `[prize](https://evil.example) @octo-org/everyone`"
    login = "/assign [x](https://evil.example)"
    event = comment_event(f"{hostile}\n{login}", commenter="reader", association="NONE")
    await deliver(private_key_pem, event)
    [(_, _, reply)] = writes(github)
    body = reply["body"]
    assert f"- `` {hostile} ``: /close takes no arguments" in body
    assert f"- `{login}`: not a GitHub login: `[x](https://evil.example)`" in body


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("/close now", "`/close now`"),
        ("a `b` c", "``a `b` c``"),
        ("ends with `", "`` ends with ` ``"),
        ("``` fence", "```` ``` fence ````"),
        ("two\nlines", "`two lines`"),
        ("<!-- auto-issue-processor:welcome -->", "`<!- - auto-issue-processor:welcome -->`"),
    ],
)
def test_code_span_fence_is_longer_than_any_backtick_run_inside(text: str, span: str) -> None:
    assert code_span(text) == span
