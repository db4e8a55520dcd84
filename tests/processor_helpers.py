"""Helpers shared by the processor tests: repository config, comment events, write calls."""

from __future__ import annotations

import json
from typing import Any

import httpx
import respx

from tests.conftest import config_url
from tests.deliveries import app_payload, issue_event

REPO = "Codertocat/Hello-World"
ISSUE_URL = f"https://api.github.com/repos/{REPO}/issues"


def use_config(github: respx.MockRouter, text: str, repository: str = REPO) -> respx.Route:
    """Serve ``text`` as the repository's ``.github/auto-issue-processor.yml``."""
    return github.get(config_url(repository)).mock(return_value=httpx.Response(200, text=text))


def api_calls(router: respx.MockRouter) -> list[tuple[str, str, Any]]:
    """(method, path with query, JSON body or None) of every call to GitHub except auth."""
    found = []
    for call in router.calls:
        request = call.request
        if request.url.host == "127.0.0.1" or request.url.path == "/app":
            continue
        if request.url.path.endswith("/access_tokens"):
            continue
        body = json.loads(request.content) if request.content else None
        path = request.url.raw_path.decode()
        found.append((request.method, path, body))
    return found


def writes(router: respx.MockRouter) -> list[tuple[str, str, Any]]:
    return [call for call in api_calls(router) if call[0] != "GET"]


def comment_event(
    body: str,
    *,
    action: str = "created",
    commenter: str = "Codertocat",
    commenter_type: str = "User",
    association: str = "OWNER",
    issue_author: str = "Codertocat",
    labels: list[str] | None = None,
    assignees: list[str] | None = None,
    state: str = "open",
    number: int = 1,
    comment_id: int = 492700400,
    old_body: str | None = None,
) -> dict[str, Any]:
    """GitHub's ``issue_comment.created`` example, varied where a test needs it."""
    payload = app_payload("issue_comment.created")
    payload["action"] = action
    issue = payload["issue"]
    issue["number"] = number
    issue["state"] = state
    issue["user"]["login"] = issue_author
    template = issue["labels"][0]
    issue["labels"] = [{**template, "name": name} for name in (labels or [])]
    issue["assignees"] = [{"login": login, "type": "User"} for login in (assignees or [])]
    comment = payload["comment"]
    comment["id"] = comment_id
    comment["body"] = body
    comment["user"]["login"] = commenter
    comment["user"]["type"] = commenter_type
    comment["author_association"] = association
    payload["sender"]["login"] = commenter
    payload["sender"]["type"] = commenter_type
    if old_body is not None:
        payload["changes"] = {"body": {"from": old_body}}
    return payload


__all__ = ["ISSUE_URL", "REPO", "api_calls", "comment_event", "issue_event", "use_config", "writes"]
