"""The GitHub operations processors use, as one thin adapter over the shared githubkit client.

Each processor's core declares a narrow ``typing.Protocol`` with only the
operations it needs; ``IssueApi`` implements all of them for one repository,
so the cores are tested without HTTP and the adapter is exercised through the
real server with a faked GitHub. Every call goes through the installation's
client (token cache, rate limits, dry run). Responses are read as plain JSON:
no schema model is built for data a processor reads two fields of.

Comments the app posts end with a hidden marker, ``<!-- auto-issue-processor:KIND -->``,
so a redelivered event can see that its comment is already there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from githubkit.exception import RequestFailed

MARKER_PREFIX = "<!-- auto-issue-processor:"


def marker(kind: str) -> str:
    """The hidden line that identifies one kind of comment of this app (``welcome``, ...)."""
    return f"{MARKER_PREFIX}{kind} -->"


def code_span(text: str) -> str:
    """``text`` as a Markdown code span it cannot close, for echoing user text in a comment.

    Inside a code span no link, @mention or HTML renders, so a comment signed
    by the app cannot be made to carry someone else's. The fence is one
    backtick longer than the longest run of backticks in the text (CommonMark),
    padded with spaces when the text starts or ends with a backtick or space;
    line breaks become spaces, and ``<!--`` cannot start one of our markers.
    """
    text = " ".join(text.splitlines()).replace("<!--", "<!- -") or " "
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def has_marker(bodies: Iterable[str], kind: str) -> bool:
    wanted = marker(kind)
    return any(wanted in body for body in bodies)


def is_own_comment(body: str | None) -> bool:
    return bool(body) and MARKER_PREFIX in (body or "")


def label_names(issue: Mapping[str, Any]) -> tuple[str, ...]:
    """Label names of an issue object from a payload (labels may be objects or strings)."""
    names: list[str] = []
    for label in issue.get("labels") or ():
        if isinstance(label, dict) and isinstance(label.get("name"), str):
            names.append(label["name"])
        elif isinstance(label, str):
            names.append(label)
    return tuple(names)


def has_label(names: Iterable[str], label: str) -> bool:
    """GitHub compares label names without regard to case."""
    key = label.lower()
    return any(name.lower() == key for name in names)


class IssueApi:
    """Issue operations on one repository through an installation's githubkit client."""

    def __init__(self, github: Any, owner: str, repo: str) -> None:
        self._github = github
        self._base = f"/repos/{owner}/{repo}"

    async def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._github.arequest(method, self._base + path, **kwargs)
        return response.raw_response.json() if response.raw_response.content else None

    async def add_labels(self, number: int, labels: list[str]) -> None:
        await self._send("POST", f"/issues/{number}/labels", json={"labels": labels})

    async def remove_label(self, number: int, label: str) -> None:
        """Remove one label; a label the issue no longer has (404) is already the wanted state."""
        try:
            await self._send("DELETE", f"/issues/{number}/labels/{quote(label, safe='')}")
        except RequestFailed as exc:
            if exc.response.status_code != 404:
                raise

    async def add_assignees(self, number: int, logins: list[str]) -> None:
        await self._send("POST", f"/issues/{number}/assignees", json={"assignees": logins})

    async def remove_assignees(self, number: int, logins: list[str]) -> None:
        await self._send("DELETE", f"/issues/{number}/assignees", json={"assignees": logins})

    async def set_state(self, number: int, state: str) -> None:
        await self._send("PATCH", f"/issues/{number}", json={"state": state})

    async def comment(self, number: int, body: str) -> None:
        await self._send("POST", f"/issues/{number}/comments", json={"body": body})

    async def comment_bodies(self, number: int, since: str | None = None) -> list[str]:
        """Bodies of the issue's comments (updated at or after ``since``), newest page only.

        Callers pass ``since`` = when the triggering issue or comment was created,
        so the app's own reply, if any, is always on this one page.
        """
        params: dict[str, Any] = {"per_page": 100}
        if since:
            params["since"] = since
        found = await self._send("GET", f"/issues/{number}/comments", params=params)
        return [str(c.get("body") or "") for c in found or () if isinstance(c, dict)]

    async def issues_by(self, login: str, per_page: int = 10) -> list[dict[str, Any]]:
        """The newest issues and pull requests ``login`` opened here, in any state."""
        found = await self._send(
            "GET",
            "/issues",
            params={"creator": login, "state": "all", "per_page": per_page},
        )
        return [item for item in found or () if isinstance(item, dict)]

    async def open_issues_page(self, page: int, per_page: int = 100) -> list[dict[str, Any]]:
        found = await self._send(
            "GET",
            "/issues",
            params={"state": "open", "per_page": per_page, "page": page, "sort": "created"},
        )
        return [item for item in found or () if isinstance(item, dict)]

    async def permission(self, login: str) -> dict[str, Any]:
        """``GET /repos/{owner}/{repo}/collaborators/{login}/permission``; a 404 is no access."""
        try:
            found = await self._send("GET", f"/collaborators/{quote(login, safe='')}/permission")
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                return {"permission": "none", "role_name": "none"}
            raise
        return found if isinstance(found, dict) else {}
