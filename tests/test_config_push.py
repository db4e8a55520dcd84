"""A push that changes .github/auto-issue-processor.yml takes effect without a restart."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from github_app.dispatch.repo_config import CONFIG_PATH, pushed_config
from tests.conftest import config_url, make_settings, running_app
from tests.deliveries import app_payload, issue_event, signed
from tests.processor_helpers import ISSUE_URL, REPO, writes

pytestmark = pytest.mark.anyio

OTHER = "Codertocat/Other-Repo"
OFF = "labeler: false\n"
ON = "labeler:\n  rules:\n    - label: typo\n      keywords: [spelling]\n"


def push(
    repository: str = REPO, *, ref: str = "refs/heads/master", **commit: Any
) -> dict[str, Any]:
    payload = app_payload("push")
    payload["ref"] = ref
    payload["repository"]["full_name"] = repository
    payload["repository"]["name"] = repository.split("/", 1)[1]
    payload["commits"] = [{"id": "abc", "added": [], "removed": [], "modified": [], **commit}]
    return payload


def serve_configs(github: respx.MockRouter, files: dict[str, list[str]]) -> dict[str, respx.Route]:
    """Each repository's config file answers with the next text of its list (404 when empty)."""
    routes = {}
    for repository, texts in files.items():
        answers = [httpx.Response(200, text=t) if t else httpx.Response(404) for t in texts]
        routes[repository] = github.get(config_url(repository)).mock(side_effect=answers)
    github.post(url__regex=rf"{ISSUE_URL}/\d+/labels").mock(
        return_value=httpx.Response(200, json=[])
    )
    return routes


async def post_all(app: Any, *deliveries: tuple[dict[str, Any], str]) -> None:
    for payload, event in deliveries:
        assert (await app.post(signed(payload, event))).status_code == 202
        await app.settle()


async def test_push_touching_the_file_drops_the_cached_config(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    routes = serve_configs(github, {REPO: [OFF, ON]})
    async with running_app(make_settings(private_key_pem)) as app:
        await post_all(
            app,
            (issue_event(number=1), "issues"),
            (push(modified=[CONFIG_PATH]), "push"),
            (issue_event(number=2), "issues"),
        )
        assert app.runtime.configs.invalidations == 1
    assert routes[REPO].call_count == 2
    assert writes(github) == [("POST", f"/repos/{REPO}/issues/2/labels", {"labels": ["typo"]})]


@pytest.mark.parametrize(
    "payload",
    [
        push(modified=["README.md"]),
        push(ref="refs/heads/feature", modified=[CONFIG_PATH]),
        push(OTHER, modified=[CONFIG_PATH]),
        app_payload("push"),  # GitHub's example: a tag
    ],
    ids=["other-file", "other-branch", "other-repository", "tag"],
)
async def test_push_that_cannot_change_the_config_keeps_the_cache(
    github: respx.MockRouter, private_key_pem: str, payload: dict[str, Any]
) -> None:
    routes = serve_configs(github, {REPO: [OFF, ON]})
    async with running_app(make_settings(private_key_pem)) as app:
        await post_all(
            app,
            (issue_event(number=1), "issues"),
            (payload, "push"),
            (issue_event(number=2), "issues"),
        )
    assert routes[REPO].call_count == 1
    assert writes(github) == []


async def test_push_to_the_org_github_repository_drops_every_repository_using_it(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    routes = serve_configs(
        github,
        {REPO: ["", ""], OTHER: [OFF, OFF], "Codertocat/.github": [OFF, ON]},
    )
    async with running_app(make_settings(private_key_pem)) as app:
        await post_all(
            app,
            (issue_event(number=1), "issues"),
            (issue_event(number=1, repository=OTHER), "issues"),
            (push("Codertocat/.github", added=[CONFIG_PATH]), "push"),
            (issue_event(number=2), "issues"),
            (issue_event(number=2, repository=OTHER), "issues"),
        )
    assert routes[REPO].call_count == 2
    assert routes[OTHER].call_count == 2  # all repositories of the owner
    assert writes(github) == [("POST", f"/repos/{REPO}/issues/2/labels", {"labels": ["typo"]})]


async def test_push_to_an_extends_base_drops_the_repositories_extending_it(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    base = "octo-org/shared"
    routes = serve_configs(github, {REPO: [f"_extends: {base}\n"] * 2, base: [OFF, ON]})
    async with running_app(make_settings(private_key_pem)) as app:
        await post_all(
            app,
            (issue_event(number=1), "issues"),
            (push(base, removed=[CONFIG_PATH]), "push"),
            (issue_event(number=2), "issues"),
        )
    assert routes[REPO].call_count == 2
    assert routes[base].call_count == 2
    assert writes(github) == [("POST", f"/repos/{REPO}/issues/2/labels", {"labels": ["typo"]})]


def test_pushed_config_is_careful_with_truncated_forced_and_malformed_pushes() -> None:
    many = push()
    many["commits"] = [{"modified": []}] * 20  # GitHub lists at most 20 commits
    assert pushed_config(many) == REPO
    forced = push(modified=["x"])
    forced["forced"] = True
    assert pushed_config(forced) == REPO
    assert pushed_config(push(modified="not-a-list")) is None
    assert pushed_config({"repository": "nope"}) is None
    assert pushed_config({}) is None
